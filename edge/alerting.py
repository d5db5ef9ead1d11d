"""Feed what the agent stores to the cold-chain rule engine, on the fridges' own timeline.

The engine judges event time. A fridge's records carry device time (`dev_ms`), which is
monotonic but starts at zero on each controller boot; the terminal's clock can jump. So
each (fridge, device boot) gets an anchor, the terminal's wall time when its first record
arrived, and event time = anchor + device time since that record. Backfilled records
(resent after an outage) then fall in the past where they belong, and a terminal clock
jump moves nothing. The present for time-based rules (door left open, link lost) is the
newest event time extrapolated by the real time elapsed since it arrived.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from edge.rules.alerts import Alert, AlertChange
from edge.rules.engine import RuleEngine
from edge.store import NewEvent, NewReading
from xiaodian.wire.payloads import ALERTS_DEVICE

log = logging.getLogger(__name__)

# Event fields the engine understands, by event type.
_STATE_FIELD = {"door": "open", "compressor": "on", "power": "mains", "defrost": "active"}


class Alerting:
    def __init__(self, engine: RuleEngine, monotonic: Callable[[], float] = time.monotonic):
        self.engine = engine
        self.monotonic = monotonic
        self._anchors: dict[tuple[str, int], tuple[float, int]] = {}
        self._newest: tuple[float, float] | None = None  # (event time, monotonic at arrival)

    def anchor(self, device: str, dev_boot: int, wall: float, dev_ms: int) -> None:
        """Set a (fridge, device boot)'s anchor: a replay must use the one the live run took
        (its first record to arrive, often a HELLO the replay does not feed), or event times
        shift and an alert comes back under another id."""
        self._anchors[(device, dev_boot)] = (wall, dev_ms)

    def event_time(self, device: str, dev_boot: int, dev_ms: int, wall: float) -> float:
        anchor = self._anchors.setdefault((device, dev_boot), (wall, dev_ms))
        t = anchor[0] + (dev_ms - anchor[1]) / 1000.0
        if self._newest is None or t > self._newest[0]:
            self._newest = (t, self.monotonic())
        return t

    def feed(self, records: Iterable[NewReading | NewEvent]) -> list[AlertChange]:
        changes: list[AlertChange] = []
        for r in records:
            if r.dev_ms is None:
                continue  # agent-made events (link, scan): no device time
            dev_boot = r.dev_boot or 0
            t = self.event_time(r.device, dev_boot, r.dev_ms, r.wall)
            try:
                if isinstance(r, NewReading):
                    probes = {i: (s, c) for i, s, c in r.probes}
                    air_status, air = probes.get(0, (None, None))
                    product_status, product = probes.get(1, (None, None))
                    changes += self.engine.on_reading(
                        r.device, t, air, product, air_status, product_status
                    )
                elif r.type in _STATE_FIELD and _STATE_FIELD[r.type] in r.data:
                    changes += self.engine.on_event(r.device, t, r.type, r.data)
            except ValueError as exc:  # a record the engine cannot judge: say so, go on
                log.warning("rules: skipped a %s record of %s: %s", type(r).__name__,
                            r.device, exc)
        return changes

    def tick(self) -> list[AlertChange]:
        if self._newest is None:
            return []
        t, at = self._newest
        return self.engine.tick(t + (self.monotonic() - at))

    def active(self) -> list[Alert]:
        return self.engine.active()


def as_event(change: AlertChange, wall: float, synced: bool) -> NewEvent:
    """An alert change as an outbox event of the `alerts` stream, which is published on its
    own topic ahead of every other stream (the data names the fridge)."""
    return NewEvent(ALERTS_DEVICE, "alert", None, None, wall, synced, change.to_dict())
