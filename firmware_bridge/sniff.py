"""`xiaodian serial sniff PORT`: a technician's live view of a fridge's serial line.

`Sniffer` is the pure part (bytes and a time in, one display record per frame out, plus the
counters); `sniff()` wraps it around a pyserial port that it reopens when it vanishes (a
USB adapter pulled, a simulator's pty replaced). Read-only unless asked for `--hello`: a
second talker on the line would confuse the edge agent's sequence numbers and receipts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import IO, Any

import serial

from firmware_bridge import codec

READ_TIMEOUT_S = 0.1
REOPEN_MAX_S = 2.0


class Sniffer:
    """Decodes the stream and keeps what a technician asks first: is the line clean, is the
    device rebooting, which firmware is it."""

    def __init__(self) -> None:
        self.decoder = codec.FrameDecoder()
        self.reopens = 0
        self.last_hello: dict[str, Any] | None = None

    def feed(self, data: bytes, t_s: float) -> list[dict[str, Any]]:
        """One record per accepted frame: `{"t", "seq", "type", "flags", "fields"}`."""
        out: list[dict[str, Any]] = []
        for frame in self.decoder.feed(data):
            name = codec.TYPE_NAMES.get(frame.type, f"0x{frame.type:02x}")
            record: dict[str, Any] = {
                "t": round(t_s, 3),
                "seq": frame.seq,
                "type": name,
                "flags": codec.flag_names(frame.flags),
            }
            fields = codec.decode_message(frame.type, frame.payload)
            if fields is None:
                record["payload_hex"] = frame.payload.hex()
            else:
                fields = dict(fields)
                del fields["type"]
                record["fields"] = fields
                if frame.type == codec.HELLO:
                    self.last_hello = fields
            out.append(record)
        return out

    def reopened(self) -> None:
        self.reopens += 1
        # Frames lost while the port was gone are not a gap the device made.
        self.decoder.reset_sequence()

    def counters(self) -> dict[str, Any]:
        s = self.decoder.stats()
        bad = ("cobs_errors", "crc_errors", "length_errors", "oversize", "version_errors")
        hello = self.last_hello
        return {
            **s,
            "resyncs": sum(s[k] for k in bad),  # bad frames skipped to the next 0x00
            "reopens": self.reopens,
            "last_hello": None
            if hello is None
            else {
                "firmware": ".".join(str(v) for v in hello.get("firmware", ())),
                "reset_cause": hello.get("reset_cause"),
                "boot_count": hello.get("boot_count"),
                "device_id": hello.get("device_id"),
            },
        }


def _value(v: Any) -> str:
    if isinstance(v, list | tuple):
        return ",".join(_value(x) for x in v)
    return str(v)


def format_line(record: dict[str, Any]) -> str:
    """`  12.345 #    5 temp          dev_ms=120000 probes=0,ok,3.0625 1,ok,3.5`"""
    fields = record.get("fields", {})
    if record["type"] == "temp":
        parts = [f"dev_ms={fields['dev_ms']}"] + [
            f"p{i}={status}" + ("" if c is None else f":{c:.2f}")
            for i, status, c in fields["probes"]
        ]
    else:
        parts = [f"{k}={_value(v)}" for k, v in fields.items()]
    if "payload_hex" in record:
        parts.append(f"payload={record['payload_hex']}")
    flags = "|".join(record["flags"])
    head = f"{record['t']:9.3f} #{record['seq']:5d} {record['type']:<11}"
    return f"{head} {flags + ' ' if flags else ''}{' '.join(parts)}"


def format_counters(c: dict[str, Any]) -> str:
    hello = c["last_hello"]
    who = (
        "no HELLO yet"
        if hello is None
        else f"HELLO {hello['device_id']} fw {hello['firmware']} boot {hello['boot_count']} "
        f"reset {hello['reset_cause']}"
    )
    return (
        f"frames ok {c['frames_ok']}, crc {c['crc_errors']}, cobs {c['cobs_errors']}, "
        f"resyncs {c['resyncs']} ({c['bytes_discarded']} bytes discarded), "
        f"seq gaps {c['seq_gaps']} ({c['missed_frames']} frames), reopens {c['reopens']}; {who}"
    )


def sniff(
    port: str,
    out: IO[str],
    baud: int = 115200,
    seconds: float | None = None,
    hello: bool = False,
    as_json: bool = False,
    clock: Callable[[], float] = time.monotonic,
    counters_every_s: float = 10.0,
) -> Sniffer:
    """Show frames from `port` until `seconds` pass (or forever); returns the sniffer."""
    sniffer = Sniffer()
    start = clock()
    deadline = None if seconds is None else start + seconds
    delay = 0.05
    opened = 0
    last_counters = start

    def emit_counters() -> None:
        c = sniffer.counters()
        out.write((json.dumps({"counters": c}) if as_json else "-- " + format_counters(c)) + "\n")

    while deadline is None or clock() < deadline:
        try:
            ser = serial.Serial(port, baud, timeout=READ_TIMEOUT_S)
        except (serial.SerialException, OSError):
            # Not there (yet): try again with a bounded back-off.
            left = REOPEN_MAX_S if deadline is None else max(0.0, deadline - clock())
            time.sleep(min(delay, left))
            delay = min(delay * 2, REOPEN_MAX_S)
            continue
        delay = 0.05
        opened += 1
        if opened > 1:
            sniffer.reopened()
        try:
            with ser:
                if hello:
                    # A lone 0x00 first ends any half frame the device holds.
                    ser.write(b"\x00" + codec.encode_frame(codec.GET_HELLO, opened))
                while deadline is None or clock() < deadline:
                    data = ser.read(ser.in_waiting or 1)
                    now = clock()
                    for record in sniffer.feed(data, now - start) if data else []:
                        out.write((json.dumps(record) if as_json else format_line(record)) + "\n")
                    if now - last_counters >= counters_every_s:
                        last_counters = now
                        emit_counters()
                    out.flush()
        except (serial.SerialException, OSError):
            continue  # the port vanished under us: reopen
    emit_counters()
    out.flush()
    return sniffer
