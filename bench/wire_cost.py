"""Wire cost: bytes per reading on the store's 4G line, batched format vs one message per
reading, and megabytes per month for a store with 4 fridges.

Payloads are the real ones: readings written with EdgeStore.add, read back with
EdgeStore.next_batch and encoded with payloads.batch_payload, as the agent does. MQTT sizes
are computed from them (formula below); a short run of the real Uplink through a
byte-counting loopback relay in front of a real TLS Mosquitto checks the formula and the
TLS assumption against what actually crosses the socket.

MQTT 5 PUBLISH, QoS 1, no properties (what Uplink sends):
    remaining = 2 + len(topic) + 2 (packet id) + 1 (property length 0) + len(payload)
    PUBLISH   = 1 (fixed header) + varint_len(remaining) + remaining
    PUBACK    = 5 (Mosquitto 2.0 sends the reason code byte even for success; the
                 spec allows 4, the relay measured 5)
TLS 1.3 (AES-GCM): every record adds 5 (header) + 1 (inner type) + 16 (tag) = 22 bytes;
paho writes each packet separately, so one record per packet (and per 16 KiB of it).
TCP/IP (shown separately, for lines billed on IP bytes): 52 bytes per segment (IPv4 20 +
TCP 20 + timestamps 12) at an MSS of 1448; every PUBLISH segment and every PUBACK is
assumed to travel in its own segment with the ACKs piggybacked (a lower bound).
Keepalive: paho sends PINGREQ only after `keepalive` (30 s) without traffic, so a PING
pair (2+2 bytes MQTT, one TLS record and one segment each) is counted only for publish
intervals of 30 s or more. One reconnect a day (TLS handshake with client certificate,
CONNECT, birth state) is added from the measured handshake bytes.
"""

from __future__ import annotations

import argparse
import logging
import math
import ssl
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack.broker import Broker
from edge.store import EdgeStore, RecordKey
from edge.uplink import Uplink
from xiaodian import __version__
from xiaodian.wire import payloads

from .common import (
    STORE,
    ByteRelay,
    Table,
    build_outbox,
    check_figures,
    make_pki,
    mqtt_settings,
    note,
    synthetic_readings,
    wait_for,
)

TLS_RECORD_OVERHEAD = 22
TLS_RECORD_MAX = 16384
TCPIP_HEADER = 52
MSS = 1448
PUBACK = 5  # Mosquitto 2.0 sends the reason code (0) even on success
PING = 2  # PINGREQ and PINGRESP are 2 bytes each
KEEPALIVE_S = 30.0  # MqttSettings default
MONTH_S = 30 * 86400
MB = 1_000_000
FRIDGES = 4


def varint_len(n: int) -> int:
    return 1 if n < 128 else 2 if n < 16_384 else 3 if n < 2_097_152 else 4


def publish_size(topic: str, payload: bytes) -> int:
    remaining = 2 + len(topic.encode()) + 2 + 1 + len(payload)
    return 1 + varint_len(remaining) + remaining


def tls_size(packet: int) -> int:
    return packet + TLS_RECORD_OVERHEAD * max(1, math.ceil(packet / TLS_RECORD_MAX))


def tcpip_size(tls_bytes: int) -> int:
    return tls_bytes + TCPIP_HEADER * max(1, math.ceil(tls_bytes / MSS))


@dataclass(frozen=True)
class Messages:
    """The real encoded messages of one batch size, over the same readings."""

    label: str
    per_message: int
    readings: int
    payload: int  # payload bytes, all messages
    mqtt: int  # PUBLISH + PUBACK
    tls: int
    tcpip: int
    messages: int

    def per_reading(self, total: int) -> float:
        return total / self.readings if self.readings else math.nan


def encode(store_path: Path, per_message: int, label: str) -> Messages:
    """Walk the outbox like the agent (next_batch per fridge, 500 at a time) and cut each
    batch into messages of `per_message` records, encoding every one."""
    store = EdgeStore.open_readonly(store_path)
    topic = payloads.topic(STORE, "telemetry")
    n = payload = mqtt = tls = tcpip = messages = 0
    try:
        for kind, device in store.pending_streams():
            after = (0, 0)
            while (batch := store.next_batch(kind, device, after, 500)) is not None:
                after = (batch.boot, batch.records[-1]["seq"])
                for i in range(0, len(batch.records), per_message):
                    chunk = batch.records[i : i + per_message]
                    body = payloads.batch_payload(kind, STORE, device, batch.boot, chunk)
                    pub = publish_size(topic, body)
                    n += len(chunk)
                    messages += 1
                    payload += len(body)
                    mqtt += pub + PUBACK
                    tls += tls_size(pub) + tls_size(PUBACK)
                    tcpip += tcpip_size(tls_size(pub)) + tcpip_size(tls_size(PUBACK))
    finally:
        store.close()
    return Messages(label, per_message, n, payload, mqtt, tls, tcpip, messages)


# ---------------------------------------------------------------- measured check


@dataclass(frozen=True)
class Measured:
    label: str
    messages: int
    predicted: int  # TLS-level bytes, both directions, by the formula
    measured: int  # bytes through the relay, both directions
    handshake: int  # TLS handshake + CONNECT/CONNACK + birth state + its PUBACK
    tls: str


def measure(workdir: Path, store_path: Path, per_message: int, limit: int,
            cap_s: float = 60.0) -> Measured:
    """Publish the first `limit` readings of fridge-1 with the real Uplink through the relay."""
    pki = make_pki(workdir)
    store = EdgeStore.open_readonly(store_path)
    batch = store.next_batch("readings", "fridge-1", (0, 0), limit)
    store.close()
    assert batch is not None
    topic = payloads.topic(STORE, "telemetry")
    with Broker(workdir / "broker", pki) as broker, ByteRelay(broker.host, broker.port) as relay:
        uplink = Uplink(mqtt_settings("127.0.0.1", relay.port, pki, STORE), STORE, 1,
                        ["fridge-1"], __version__)
        deadline = time.monotonic() + 10

        def connected() -> bool:
            uplink.poll(0.05)
            return uplink.connected and time.monotonic() > deadline - 9.5

        wait_for(connected, 10, "uplink connect through the relay", 0)
        for _ in range(10):  # let the birth message's PUBACK and session tickets settle
            uplink.poll(0.05)
        hs = sum(relay.snapshot())
        sock = uplink.client.socket() if uplink.client else None
        cipher = sock.cipher() if isinstance(sock, ssl.SSLSocket) else None
        version = f"{cipher[1]} {cipher[0]}" if cipher else "?"
        predicted = sent = 0
        chunks = [batch.records[i : i + per_message]
                  for i in range(0, len(batch.records), per_message)]
        end = time.monotonic() + cap_s
        while (sent < len(chunks) or uplink.inflight) and time.monotonic() < end:
            while sent < len(chunks) and uplink.can_publish():
                body = payloads.batch_payload("readings", STORE, "fridge-1", batch.boot,
                                              chunks[sent])
                keys: list[RecordKey] = [
                    ("readings", "fridge-1", batch.boot, r["seq"]) for r in chunks[sent]
                ]
                if not uplink.publish(topic, body, keys):
                    break
                predicted += tls_size(publish_size(topic, body)) + tls_size(PUBACK)
                sent += 1
            uplink.poll(0.05)
        time.sleep(0.2)  # the relay's threads forward the last PUBACK
        total = sum(relay.snapshot()) - hs
        uplink.close()
    return Measured(f"{per_message} reading(s)/message", sent, predicted, total, hs, version)


# ---------------------------------------------------------------- monthly


def monthly_mb(m: Messages, sample_s: float, interval_s: float, handshake: int) -> float:
    """MB/month (TLS level: what a 4G modem's data counter sees above IP) for 4 fridges."""
    readings = FRIDGES * MONTH_S / sample_s
    data = readings * m.per_reading(m.tls)
    pings_per_interval = max(0, math.ceil(interval_s / KEEPALIVE_S) - 1)
    # One connection carries all fridges: pings are per connection, not per fridge.
    pings = MONTH_S / interval_s * pings_per_interval * 2 * tls_size(PING)
    reconnects = 30 * handshake
    return (data + pings + reconnects) / MB


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.wire_cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hours", type=float, default=6.0,
                   help="hours of 4-fridge, 10 s readings to encode (default 6)")
    p.add_argument("--smoke", action="store_true",
                   help="quick check (~10 s): 1 hour; exits 1 unless every figure is there")
    args = p.parse_args(argv)
    if args.smoke:
        args.hours = 1.0
    if not 1 <= args.hours <= 48:
        p.error("--hours must be 1..48")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    with tempfile.TemporaryDirectory(prefix="xd-bench-wire-") as tmp:
        root = Path(tmp)
        path = root / "edge" / "edge.sqlite3"
        build_outbox(path, synthetic_readings(FRIDGES, 10.0, args.hours))
        # Batch sizes the agent produces: its outbox publisher sends what each fridge has pending
        # every publish_interval_s, so at steady state a message holds
        # max(1, publish_interval_s / sample_interval) readings; a backlog goes out in
        # max_batch (500) per message.
        sets = [
            encode(path, 1, "1 reading/message (naive; also the agent at steady state with "
                   "publish_interval_s=1)"),
            encode(path, 6, "6/message (publish_interval_s=60 at 10 s sampling)"),
            encode(path, 60, "60/message (publish_interval_s=60 at 1 Hz)"),
            encode(path, 500, "500/message (backlog drain, max_batch=500)"),
        ]
        cap = 20.0 if args.smoke else 60.0  # seconds each check may publish
        checks = [measure(root / "m1", path, 1, 400, cap),
                  measure(root / "m500", path, 500, 1000, cap)]

    base = sets[0]
    handshake = max(c.handshake for c in checks)
    Table(
        "Bytes per reading (both directions; PUBACK included), computed from the real messages",
        ["readings per message", "payload", "+MQTT", "+TLS", "+TCP/IP", "x fewer than naive (TLS)"],
        [
            [m.label, m.per_reading(m.payload), m.per_reading(m.mqtt), m.per_reading(m.tls),
             m.per_reading(m.tcpip), f"{base.per_reading(base.tls) / m.per_reading(m.tls):.1f}x"]
            for m in sets
        ],
    ).print()
    Table(
        "Check: real Uplink through a byte-counting relay (TLS level, after the handshake)",
        ["run", "messages", "predicted B", "measured B", "measured/predicted", "handshake B"],
        [[c.label, c.messages, c.predicted, c.measured,
          f"{c.measured / c.predicted:.3f}" if c.predicted else "-", c.handshake]
         for c in checks],
    ).print()
    note(f"negotiated: {checks[0].tls}")
    plans = [  # label, messages at 10 s sampling, at 1 Hz, publish interval (s)
        ("1 reading/message (naive = agent default at steady state)", sets[0], sets[0], 1.0),
        ("agent with publish_interval_s=60", sets[1], sets[2], 60.0),
        ("500/message (a month sent as backlog: the floor)", sets[3], sets[3], 1.0),
    ]
    rows: list[Sequence[object]] = []
    figures: list[tuple[str, float | None]] = [
        *((f"{m.per_message}/message TLS B/reading", m.per_reading(m.tls)) for m in sets),
        ("500/message x fewer than naive (TLS)",
         base.per_reading(base.tls) / sets[-1].per_reading(sets[-1].tls)),
        *((f"{c.label} measured/predicted", c.measured / c.predicted if c.predicted else 0.0)
          for c in checks),
        ("handshake B", handshake),
    ]
    naive10, naive1 = (monthly_mb(base, s, 1.0, handshake) for s in (10.0, 1.0))
    for label, at10, at1, interval in plans:
        mb10, mb1 = monthly_mb(at10, 10.0, interval, handshake), monthly_mb(at1, 1.0, interval,
                                                                            handshake)
        rows.append([label, mb10, f"{naive10 / mb10:.1f}x", mb1, f"{naive1 / mb1:.1f}x"])
        figures.append((f"{label.split(' (')[0]}: MB/month every 10 s", mb10))
    Table(
        f"MB per month, {FRIDGES} fridges, 30 days (TLS level; + PINGs when idle >= 30 s;"
        f" + 1 reconnect/day of {handshake:,} B)",
        ["format", "every 10 s", "x less", "every 1 s", "x less"],
        rows,
    ).print()
    overhead = 100 * (base.per_reading(base.tcpip) / base.per_reading(base.tls) - 1)
    note(f"If the operator bills IP bytes add TCP/IP headers: +{overhead:.0f}% for 1 reading/"
         "message (see the +TCP/IP column). Readings only: events, alerts and the state "
         "messages are extra.")
    if not args.smoke:
        return 0
    code = check_figures(figures)
    for c in checks:  # the formula is what this benchmark stands on
        if c.predicted and not 0.95 <= c.measured / c.predicted <= 1.05:
            note(f"FAILED {c.label}: measured/predicted {c.measured / c.predicted:.3f}, "
                 "not within 5 %")
            code = 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())
