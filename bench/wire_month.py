"""A store's mobile data per month, compact format vs version-1 JSON:
`python -m bench.wire_month [--json-hours H]`.

Everything a store sends and receives: readings of 4 fridges every 10 s, their door,
compressor and defrost events, hourly vitals, a few alerts, the cloud's receipts, PUBACKs
both ways, pure TCP ACKs, keep-alives and one reconnect a day. Measured, not computed: the
real `Uplink` publishes through a byte-counting relay (`bench.common.ByteRelay`) in front of
a real TLS Mosquitto, and a real ingest worker commits every message and sends its
receipts. TLS bytes are what crosses the relay; IP bytes add 52 bytes (IPv4 20 + TCP 20 +
timestamps 12) per TCP segment, the segments counted by the kernel on the relay's socket
(TCP_INFO), pure ACKs included.

A simulated day, fast-forwarded: each publish interval's records are published as the
agent would at that moment, one interval after the other without the idle wait between
them. Nothing is lost by skipping the wait: at the compact cadence (240 s) the traffic of
each interval keeps the connection busier than the keep-alive (270 s), so no PINGREQ would
fall in it; for the JSON agent (30 s keep-alive, readings every 60 s) the PINGs it would
send are added by arithmetic. The JSON baseline runs `--json-hours` (2) of the day and is
scaled to 24 h (the arithmetic is printed); the compact one runs the whole day.

1/10 target: bytes per reading at the TLS level in a one-minute compact bundle (4 fridges,
6 readings each) against one JSON reading per message, both with their PUBACK and receipt
(and its PUBACK), computed from the real messages with `bench.wire_cost`'s formula.
"""

from __future__ import annotations

import argparse
import logging
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_gateway.config import CloudSettings
from cloud_gateway.ingest import IngestWorker
from devstack.broker import Broker
from edge.store import RecordKey
from edge.uplink import Uplink
from xiaodian import __version__
from xiaodian.mqtt import MqttSettings
from xiaodian.wire import compact, payloads
from xiaodian.wire.payloads import ReceiptEntry

from .common import (
    CLOUD_WORKER,
    STORE,
    ByteRelay,
    Table,
    check_figures,
    make_pki,
    mqtt_settings,
    note,
    wait_for,
)
from .wire_cost import PUBACK, publish_size, tls_size

FRIDGES = 4
SAMPLE_S = 10.0
DAY_S = 86_400
MONTH_DAYS = 30
MB = 1_000_000
IP_HEADER = 52
DOORS_PER_FRIDGE_DAY = 150  # a busy convenience store's fridge
CYCLES_PER_HOUR = 4  # compressor starts
DEFROSTS_PER_DAY = 4
ALERTS_PER_DAY = 2  # raised + cleared of one excursion
T0 = 1_780_000_000.0
DEVICES = [f"fridge-{f}" for f in range(1, FRIDGES + 1)]
Record = dict[str, Any]


def day_records(seed: int = 7) -> list[tuple[float, payloads.Kind, str, Record]]:
    """A day of a 4-fridge store: (time in the day, kind, device, record), in time order."""
    rng = random.Random(seed)
    out: list[tuple[float, payloads.Kind, str, Record]] = []
    seqs: dict[tuple[str, str], int] = {}

    def seq(kind: str, device: str) -> int:
        seqs[(kind, device)] = seqs.get((kind, device), 0) + 1
        return seqs[(kind, device)]

    for f, device in enumerate(DEVICES):
        air = 3.0 + f
        for i in range(int(DAY_S / SAMPLE_S)):
            t = i * SAMPLE_S
            air += rng.choice((-0.0625, 0.0, 0.0, 0.0625))
            out.append((t, "readings", device, payloads.reading_record(
                seq("readings", device), (i + 1) & 0xFFFF, 3_600_000 + int(t * 1000),
                T0 + t + rng.random() * 0.05, True,
                [(0, "ok", air), (1, "ok", round((air + 0.5) * 16) / 16)])))
        events: list[tuple[float, str, Record]] = []
        for _ in range(DOORS_PER_FRIDGE_DAY):
            t, held = rng.uniform(0, DAY_S - 60), rng.uniform(3, 40)
            events += [(t, "door", {"open": True, "duration_ms": 0}),
                       (t + held, "door", {"open": False, "duration_ms": int(held * 1000)})]
        for h in range(24 * CYCLES_PER_HOUR):
            t = h * 3600 / CYCLES_PER_HOUR + rng.uniform(0, 60)
            events += [(t, "compressor", {"on": True, "reason": "thermostat"}),
                       (t + 400, "compressor", {"on": False, "reason": "thermostat"})]
        for d in range(DEFROSTS_PER_DAY):
            t = d * DAY_S / DEFROSTS_PER_DAY + 1800
            events += [(t, "defrost", {"active": True, "reason": "schedule"}),
                       (t + 1500, "defrost", {"active": False, "reason": "temperature"})]
        for t, type_, data in sorted(events, key=lambda e: e[0]):
            out.append((t, "events", device, payloads.event_record(
                seq("events", device), type_, 1, 3_600_000 + int(t * 1000), T0 + t, True,
                data)))
        for hour in range(24):
            out.append((hour * 3600 + 1860.0, "events", "health", payloads.event_record(
                seq("events", "health"), "vitals", None, None, T0 + hour * 3600 + 1860, True,
                _vitals(device, hour, rng))))
    for n in range(ALERTS_PER_DAY):
        t = 30_000.0 + n * 900
        out.append((t, "events", payloads.ALERTS_DEVICE, payloads.event_record(
            seq("events", payloads.ALERTS_DEVICE), "alert", None, None, T0 + t, True,
            {"change": "raised" if n == 0 else "cleared", "id": "fridge-2/warm/1780030000000",
             "fridge": "fridge-2", "rule": "warm", "severity": "warning",
             "audience": "owner", "started_at": T0 + 30_000, "at": T0 + t,
             "duration_s": t - 30_000, "peak_c": 5.4, "message": "Fridge alert: too warm",
             "late": False, "data": {"reason": "warm", "value_c": 5.4, "limit_c": 5.0}})))
    out.sort(key=lambda r: r[0])
    return out


def _vitals(device: str, hour: int, rng: random.Random) -> Record:
    return {"fridge": device, "hour": int(T0 // 3600) + hour, "readings": 360,
            "compressor_known_s": 3600.0, "compressor_on_s": 1600.0, "duty": 0.4444,
            "compressor_starts": CYCLES_PER_HOUR,
            "defrosts": [], "defrost_s": 0.0, "door_openings": rng.randint(2, 12),
            "door_open_s": round(rng.uniform(10, 120), 1), "pulldowns_s": [120.0, 90.0],
            "pulldown_unrecovered": 0, "reboots": [],
            "probes": [{"index": 0, "ok": 360, "crc": 0, "missing": 0, "suspect": 0},
                       {"index": 1, "ok": 360, "crc": 0, "missing": 0, "suspect": 0}],
            "mains_lost": 0, "mains_off_s": 0.0, "firmware": "0.1.0",
            "link": {"frames": 1100, "errors": 0, "missed": 0, "reconnects": 0,
                     "per_10k": 0.0}}


# ---------------------------------------------------------------- what the agent publishes


@dataclass(frozen=True)
class Publish:
    topic: str
    payload: bytes
    keys: list[RecordKey]
    content_type: str | None


def _stream_groups(records: Sequence[tuple[float, payloads.Kind, str, Record]]
                   ) -> list[tuple[payloads.Kind, str, list[Record]]]:
    groups: dict[tuple[payloads.Kind, str], list[Record]] = {}
    for _, kind, device, rec in records:
        groups.setdefault((kind, device), []).append(rec)
    return [(k, d, recs) for (k, d), recs in groups.items()]


def compact_plan(day: list[tuple[float, payloads.Kind, str, Record]], interval_s: float
                 ) -> list[Publish]:
    """The compact agent: alerts at once (a bundle of their own), everything else in one
    bundle per store per `interval_s`."""
    out: list[Publish] = []
    topic = payloads.topic(STORE, compact.LEAF)
    slots: dict[int, list[tuple[float, payloads.Kind, str, Record]]] = {}
    for r in day:
        if r[2] == payloads.ALERTS_DEVICE:
            out.append(_bundle(topic, [r]))
        else:
            slots.setdefault(int(r[0] // interval_s), []).append(r)
    out += [_bundle(topic, slots[k]) for k in sorted(slots)]
    return out


def _bundle(topic: str, records: Sequence[tuple[float, payloads.Kind, str, Record]]) -> Publish:
    groups = _stream_groups(records)
    body = compact.bundle_payload(STORE, [(k, d, 1, recs) for k, d, recs in groups])
    keys = [(k, d, 1, r["seq"]) for k, d, recs in groups for r in recs]
    return Publish(topic, body, keys, compact.CONTENT_TYPE)


def json_plan(day: list[tuple[float, payloads.Kind, str, Record]], readings_s: float,
              events_s: float) -> list[Publish]:
    """The version-1 agent: per stream one JSON message per interval (readings every
    `readings_s`, events every `events_s`, alerts at once)."""
    slots: dict[tuple[payloads.Kind, str, int], list[Record]] = {}
    for t, kind, device, rec in day:
        step = readings_s if kind == "readings" else events_s
        slots.setdefault((kind, device, int(t // step)), []).append(rec)
    out = []
    for (kind, device, _), recs in sorted(slots.items(), key=lambda s: (s[0][2] * (
            readings_s if s[0][0] == "readings" else events_s))):
        out.append(Publish(payloads.topic(STORE, payloads.leaf_for(kind, device)),
                           payloads.batch_payload(kind, STORE, device, 1, recs),
                           [(kind, device, 1, r["seq"]) for r in recs], None))
    return out


# ---------------------------------------------------------------- measured through the relay


@dataclass(frozen=True)
class Measured:
    messages: int
    readings: int
    records: int
    tls: int  # both directions, after the connection set-up
    segments: int
    setup_tls: int  # TLS handshake, CONNECT, birth, subscriptions
    setup_segments: int

    @property
    def ip(self) -> int:
        return self.tls + IP_HEADER * self.segments


def measure(workdir: Path, plan: list[Publish], keepalive: int, cap_s: float) -> Measured:
    pki = make_pki(workdir)
    with Broker(workdir / "broker", pki) as broker, ByteRelay(broker.host, broker.port) as relay:
        cloud = MqttSettings(host=broker.host, port=broker.port,
                             tls=pki.client(CLOUD_WORKER))
        worker = IngestWorker(cloud, CloudSettings(db=workdir / "cloud.sqlite3",
                                                   worker_id=CLOUD_WORKER))
        worker.start()
        try:
            if not worker.wait_subscribed(20):
                raise RuntimeError("the ingest worker did not subscribe")
            settings = mqtt_settings("127.0.0.1", relay.port, pki, STORE)
            settings = MqttSettings(settings.host, settings.port, settings.tls,
                                    keepalive=keepalive)
            uplink = Uplink(settings, STORE, 1, DEVICES, __version__, retail=True)
            def connected() -> bool:
                uplink.poll(0.05)
                return uplink.connected

            wait_for(connected, 20, "uplink connect", 0)
            # Let the birth message's PUBACK and the SUBACKs pass before counting.
            settle = time.monotonic() + 0.5
            while time.monotonic() < settle:
                uplink.poll(0.05)
            setup_tls, setup_segments = sum(relay.snapshot()), relay.segments()
            deadline = time.monotonic() + cap_s
            confirmed: set[tuple[str, str, int]] = set()
            for message in plan:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not done in {cap_s:g} s")
                wait_for(lambda: _poll(uplink) and uplink.can_publish(), 30, "window", 0)
                if not uplink.publish(message.topic, message.payload, message.keys,
                                      content_type=message.content_type):
                    raise RuntimeError("the uplink refused a message")
                want: set[tuple[str, str, int]] = {(k[0], k[1], k[3]) for k in message.keys}

                def receipted(want: set[tuple[str, str, int]] = want) -> bool:
                    uplink.poll(0.01)
                    for entry in uplink.take_confirmed():
                        confirmed.update(_seqs(entry))
                    return not uplink.inflight and want <= confirmed

                wait_for(receipted, 30, "PUBACK and receipt", 0)
            end = time.monotonic() + 0.3  # the last receipt's PUBACK and the TCP ACKs
            while time.monotonic() < end:
                uplink.poll(0.05)
            tls, segments = sum(relay.snapshot()) - setup_tls, relay.segments() - setup_segments
            uplink.close()
        finally:
            worker.stop()
    readings = sum(1 for m in plan for k in m.keys if k[0] == "readings")
    return Measured(len(plan), readings, sum(len(m.keys) for m in plan), tls, segments,
                    setup_tls, setup_segments)


def _poll(uplink: Uplink) -> bool:
    uplink.poll(0.01)
    return True


def _seqs(entry: ReceiptEntry) -> set[tuple[str, str, int]]:
    return {(entry.kind, entry.device, s) for s in entry.seqs()}


# ---------------------------------------------------------------- bytes per reading


def per_reading_tls(messages: Sequence[tuple[str, bytes, str | None]], receipt: tuple[str, bytes,
                    str | None], readings: int) -> float:
    """TLS bytes per reading: each message + PUBACK, its receipt + PUBACK."""
    def pub(topic: str, body: bytes, content_type: str | None) -> int:
        props = 3 + len(content_type.encode()) if content_type else 0
        return tls_size(publish_size(topic, body) + props) + tls_size(PUBACK)

    total = sum(pub(*m) for m in messages) + len(messages) * pub(*receipt)
    return total / readings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.wire_month", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json-hours", type=float, default=2.0,
                    help="hours of the day the JSON baseline runs (scaled to 24)")
    ap.add_argument("--interval", type=float, default=240.0, help="compact cadence, s")
    ap.add_argument("--smoke", action="store_true",
                    help="quick check: 1 h of compact, 0.25 h of JSON, scaled")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    compact_hours = 1.0 if args.smoke else 24.0
    json_hours = 0.25 if args.smoke else args.json_hours
    day = day_records()

    # -- bytes per reading, from the real messages
    minute = [r for r in day if r[1] == "readings" and r[0] < 60]
    json_one = [(payloads.topic(STORE, "telemetry"),
                 payloads.batch_payload("readings", STORE, r[2], 1, [r[3]]), None)
                for r in minute]
    receipt_json = (payloads.topic(STORE, "receipts"), payloads.receipts_payload(
        STORE, [ReceiptEntry("readings", "fridge-1", 1, ((1, 1),))]), None)
    bundle = _bundle(payloads.topic(STORE, compact.LEAF), minute)
    receipt_compact = (payloads.topic(STORE, "receipts"), compact.receipts_payload(
        STORE, [ReceiptEntry("readings", d, 1, ((1, 6),)) for d in DEVICES]),
        compact.CONTENT_TYPE)
    base = per_reading_tls(json_one, receipt_json, len(json_one))
    one_minute = per_reading_tls([(bundle.topic, bundle.payload, bundle.content_type)],
                                 receipt_compact, len(minute))
    Table("TLS bytes per reading, PUBLISH + PUBACK + receipt + its PUBACK (real messages)",
          ["format", "readings/message", "payload B", "TLS B/reading", "x fewer"],
          [["JSON, 1 reading per message (baseline)", 1, len(json_one[0][1]), base, "1.0x"],
           ["compact, one-minute bundle of 4 fridges", len(minute), len(bundle.payload),
            one_minute, f"{base / one_minute:.1f}x"]]).print()

    # -- a day through the relay
    with tempfile.TemporaryDirectory(prefix="xd-bench-month-") as tmp:
        root = Path(tmp)
        c_day = [r for r in day if r[0] < compact_hours * 3600]
        j_day = [r for r in day if r[0] < json_hours * 3600]
        c = measure(root / "compact", compact_plan(c_day, args.interval), 270, 600)
        j = measure(root / "json", json_plan(j_day, 60.0, 1.0), 30, 900)
    c_scale, j_scale = 24 / compact_hours, 24 / json_hours
    # JSON agent's idle pings: paho pings after 30 s without traffic; its readings go every
    # 60 s, events as they come, so at most one PING pair in each 60-s interval without an
    # event message: counted as one per minute (an upper bound; 2 x (2 + 22 TLS) + 3
    # segments' headers).
    ping_ip = 2 * tls_size(2) + 3 * IP_HEADER
    j_pings = DAY_S / 60 * ping_ip
    rows = []
    month: dict[str, float] = {}
    for name, m, scale, pings in (("JSON (v1 agent: readings 60 s, events 1 s)", j, j_scale,
                                   j_pings), (f"compact (bundle every {args.interval:g} s)", c,
                                              c_scale, 0.0)):
        setup = m.setup_tls + IP_HEADER * m.setup_segments
        day_ip = m.ip * scale + pings + setup
        month[name] = day_ip * MONTH_DAYS / MB
        rows.append([name, f"{m.messages * scale:,.0f}", f"{m.tls * scale / 1000:,.1f}",
                     f"{m.segments * scale:,.0f}", f"{m.ip * scale / 1000:,.1f}",
                     f"{pings / 1000:,.1f}", f"{setup / 1000:,.1f}",
                     f"{day_ip / 1000:,.1f}", month[name]])
    json_name, compact_name = list(month)
    Table(f"A day of 4 fridges at 10 s through the relay (compact: {compact_hours:g} h measured"
          f" x {c_scale:g}; JSON: {json_hours:g} h measured x {j_scale:g})",
          ["agent", "messages/day", "TLS kB/day", "segments/day", "IP kB/day",
           "+ pings kB", "+ 1 reconnect kB", "IP kB/day total", "MB/month (30 d)"],
          rows).print()
    note(f"compact: {c.readings:,} readings and {c.records - c.readings:,} events/vitals/alerts"
         f" in {c.messages:,} messages; JSON: {j.readings:,} readings, "
         f"{j.records - j.readings:,} other records in {j.messages:,} messages (measured part).")
    note(f"month = (IP bytes of the measured part x scale + pings + one reconnect) x 30; "
         f"compact {month[compact_name]:.1f} MB vs JSON {month[json_name]:.1f} MB: "
         f"{month[json_name] / month[compact_name]:.1f}x less. Targets (#18): <= 20 MB/month; "
         "one-minute bundle <= 1/10 of JSON per reading.")
    figures: list[tuple[str, float | None]] = [
        ("JSON 1/message TLS B/reading", base), ("compact one-minute TLS B/reading", one_minute),
        ("compact one-minute x fewer than JSON", base / one_minute),
        ("compact MB/month IP", month[compact_name]), ("JSON MB/month IP", month[json_name]),
    ]
    code = check_figures(figures)
    return code if args.smoke else 0


if __name__ == "__main__":
    raise SystemExit(main())
