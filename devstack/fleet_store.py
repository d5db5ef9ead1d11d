"""One simulated store of the fleet load generator: what it sends, and its outbox.

Pure (no socket, time given by the caller). A store has 4 fridges sampling every 10 s; every
`readings_interval_s` (the agent's 240 s) it sends what accumulated as ONE compact bundle
(xiaodian.wire.compact, the agent's default format) on `xd/v1/{store}/bundle`: per fridge
its 24 readings (air and product probe, 1/16 °C values) and one door event (a fridge door
opens or closes about every 4 minutes: hundreds a day, as edge/agent.py says). Records stay
in the outbox until the cloud's receipt names them, exactly as the agent's rows do; a
bundle not confirmed within `confirm_timeout_s` is published again (the agent's
republish_unconfirmed), so "lost" is what the cloud never confirmed, not what the broker
took.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from xiaodian.wire import compact, payloads
from xiaodian.wire.payloads import ReceiptEntry

FRIDGES = 4
SAMPLE_S = 10.0  # the fridges' sampling interval
READINGS_INTERVAL_S = 240.0  # edge.config.EdgeSettings.readings_interval_s
KEEPALIVE_S = 270  # EdgeSettings.keepalive_s: longer than the interval, no PINGREQ at rest
CONFIRM_TIMEOUT_S = 30.0  # EdgeSettings.confirm_timeout_s
AGENT_VERSION = "fleet-sim"
BOOT = 1

RecordKey = tuple[str, str, int, int]  # (kind, device, boot, seq), as in receipts


@dataclass
class Bundle:
    """One published message and the records it carries."""

    number: int
    payload: bytes
    keys: set[RecordKey]
    readings: int
    events: int
    first_published: float  # wall clock of the first publish (latency is measured from it)
    last_published: float
    publishes: int = 1
    confirmed_at: float | None = None


@dataclass
class SimStore:
    store: str
    readings_interval_s: float = READINGS_INTERVAL_S
    confirm_timeout_s: float = CONFIRM_TIMEOUT_S
    rng: random.Random = field(default_factory=random.Random)
    _seq: dict[str, int] = field(default_factory=dict)
    _event_seq: dict[str, int] = field(default_factory=dict)
    _door_open: dict[str, bool] = field(default_factory=dict)
    _temp16: dict[str, int] = field(default_factory=dict)
    _dev_ms: int = 0
    outbox: dict[int, Bundle] = field(default_factory=dict)  # number -> unconfirmed bundle
    _owner: dict[RecordKey, int] = field(default_factory=dict)  # record -> bundle number
    confirmed: list[Bundle] = field(default_factory=list)
    made = 0  # bundles built
    duplicate_receipts = 0  # receipt entries naming records already confirmed

    @property
    def devices(self) -> list[str]:
        return [f"fridge-{n}" for n in range(1, FRIDGES + 1)]

    def state(self, online: bool, wall: float) -> bytes:
        """The retained state message the agent sends at connect (and as its Will)."""
        return payloads.state_payload(self.store, online, BOOT, wall, AGENT_VERSION,
                                      self.devices)

    def next_bundle(self, wall: float) -> Bundle:
        """The records of one readings interval ending at `wall`, as the agent sends them.

        The samples are those of a real interval of 10-s sampling (24 per fridge at 240 s)
        whatever the interval (a faster run sends the same payloads more often)."""
        per_fridge = round(READINGS_INTERVAL_S / SAMPLE_S)
        streams: list[tuple[payloads.Kind, str, int, list[dict[str, Any]]]] = []
        keys: set[RecordKey] = set()
        start_ms = self._dev_ms
        for device in self.devices:
            first = self._seq.get(device, 0) + 1
            t16 = self._temp16.get(device, 64)  # 4 °C
            records = []
            for i in range(per_fridge):
                t16 = max(16, min(128, t16 + self.rng.choice((-1, 0, 0, 1))))
                dev_ms = start_ms + (i + 1) * int(SAMPLE_S * 1000)
                sample_wall = wall - (per_fridge - 1 - i) * SAMPLE_S
                records.append(payloads.reading_record(
                    first + i, (first + i) % 0x10000, dev_ms, sample_wall, True,
                    [(0, "ok", t16 / 16), (1, "ok", (t16 + 8) / 16)]))
            self._temp16[device] = t16
            self._seq[device] = first + per_fridge - 1
            streams.append(("readings", device, BOOT, records))
            keys.update(("readings", device, BOOT, s) for s in range(first, first + per_fridge))
            door = not self._door_open.get(device, False)
            self._door_open[device] = door
            eseq = self._event_seq.get(device, 0) + 1
            self._event_seq[device] = eseq
            event = payloads.event_record(
                eseq, "door", None, start_ms + int(READINGS_INTERVAL_S * 500), wall - 120.0,
                True, {"open": door, "duration_ms": int(READINGS_INTERVAL_S * 1000)})
            streams.append(("events", device, BOOT, [event]))
            keys.add(("events", device, BOOT, eseq))
        self._dev_ms = start_ms + int(READINGS_INTERVAL_S * 1000)
        self.made += 1
        bundle = Bundle(self.made, compact.bundle_payload(self.store, streams), keys,
                        readings=FRIDGES * per_fridge, events=FRIDGES,
                        first_published=wall, last_published=wall)
        self.outbox[bundle.number] = bundle
        for key in keys:
            self._owner[key] = bundle.number
        return bundle

    def confirm(self, entries: Iterable[ReceiptEntry], wall: float) -> list[Bundle]:
        """Apply a receipt: records it names leave the outbox; the bundles now wholly
        confirmed (their latency measured to `wall`)."""
        done: list[Bundle] = []
        for entry in entries:
            for first, last in entry.ranges:
                for seq in range(first, last + 1):
                    key: RecordKey = (entry.kind, entry.device, entry.boot, seq)
                    number = self._owner.pop(key, None)
                    if number is None:
                        self.duplicate_receipts += 1
                        continue
                    bundle = self.outbox.get(number)
                    if bundle is None:
                        continue
                    bundle.keys.discard(key)
                    if not bundle.keys:
                        bundle.confirmed_at = wall
                        del self.outbox[number]
                        self.confirmed.append(bundle)
                        done.append(bundle)
        return done

    def overdue(self, wall: float) -> list[Bundle]:
        """Bundles published but not confirmed within confirm_timeout_s: to publish again."""
        return [b for b in self.outbox.values()
                if wall - b.last_published >= self.confirm_timeout_s]

    @property
    def pending_records(self) -> int:
        return sum(len(b.keys) for b in self.outbox.values())
