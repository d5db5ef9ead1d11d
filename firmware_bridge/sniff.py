"""`xiaodian serial sniff`: a technician's live view of a fridge's serial line.

`Sniffer` is the pure part (bytes and a time in, one display record per frame out, plus the
counters). Two ways to get the bytes:

- `sniff_agent()`: through the running edge agent's tap (`firmware_bridge/tap.py`), both
  directions, without touching the port; the only way while the agent runs;
- `sniff()`: the port itself, when no agent runs (a bench, a controller on a laptop). It
  refuses a port another process holds (a second reader steals bytes from the first: the
  agent would count CRC errors and lost frames and raise false alerts), opens it
  exclusively, and reopens it when it vanishes. Read-only unless asked for `--hello`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import serial

from firmware_bridge import codec
from firmware_bridge import tap as tap_proto
from firmware_bridge.port_holders import describe_holders

READ_TIMEOUT_S = 0.1
REOPEN_MAX_S = 2.0


class PortBusy(Exception):
    """Another process has the port open: opening it too would disturb that process."""


class Sniffer:
    """Decodes the stream and keeps what a technician asks first: is the line clean, is the
    device rebooting, which firmware is it."""

    def __init__(self) -> None:
        self.decoder = codec.FrameDecoder()
        self.reopens = 0
        self.last_hello: dict[str, Any] | None = None

    def feed(self, data: bytes, t_s: float, direction: str = "") -> list[dict[str, Any]]:
        """One record per accepted frame: `{"t", "seq", "type", "flags", "fields"}`, and
        `"dir"` ("in" from the device, "out" to it) when `direction` is given."""
        out: list[dict[str, Any]] = []
        for frame in self.decoder.feed(data):
            name = codec.TYPE_NAMES.get(frame.type, f"0x{frame.type:02x}")
            record: dict[str, Any] = {
                "t": round(t_s, 3),
                "seq": frame.seq,
                "type": name,
                "flags": codec.flag_names(frame.flags),
            }
            if direction:
                record["dir"] = direction
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
    arrow = {"in": "<- ", "out": "-> "}.get(record.get("dir", ""), "")
    head = f"{record['t']:9.3f} {arrow}#{record['seq']:5d} {record['type']:<11}"
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
    held = describe_holders(port)
    if held:
        raise PortBusy(f"{port} is open in {held}")
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
            ser = serial.Serial(port, baud, timeout=READ_TIMEOUT_S, exclusive=True)
        except (serial.SerialException, OSError):
            held = describe_holders(port)
            if held:  # someone took it while it was gone: leave it to them
                raise PortBusy(f"{port} is open in {held}") from None
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


def _sniff_lines(records: Any, out: IO[str], as_json: bool, clock: Callable[[], float],
                 sniffer: Sniffer) -> Sniffer:
    """A scanner speaks lines, not frames: one output line per line it sent."""
    start = clock()
    pending = b""
    for rec in records:
        if rec.direction != tap_proto.IN:
            continue
        pending += rec.data
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            text = raw.rstrip(b"\r").decode("ascii", "replace")
            t = round(clock() - start, 3)
            out.write((json.dumps({"t": t, "dir": "in", "line": text}) if as_json
                       else f"{t:9.3f} <- {text}") + "\n")
        out.flush()
    return sniffer


def sniff_agent(
    socket_path: Path,
    device: str,
    out: IO[str],
    seconds: float | None = None,
    as_json: bool = False,
    clock: Callable[[], float] = time.monotonic,
    counters_every_s: float = 10.0,
) -> Sniffer:
    """Show `device`'s frames, both ways, through the running agent's tap until `seconds`
    pass (or the agent stops); returns the sniffer of the device's frames. TapError if
    there is no agent to ask."""
    inbound, outbound = Sniffer(), Sniffer()
    answer, records = tap_proto.open_tap(socket_path, [device], seconds, clock=clock)
    info = answer.get("devices", {}).get(device, {})
    hello = info.get("hello")
    if isinstance(hello, dict):  # the agent's, from before the sniff began
        inbound.last_hello = hello
    if info.get("kind") == "scanner":
        return _sniff_lines(records, out, as_json, clock, inbound)
    start = clock()
    last_counters = start
    lost = 0

    def emit_counters() -> None:
        c = {**inbound.counters(), "lost_by_sniff": lost}
        out.write((json.dumps({"counters": c}) if as_json else "-- " + format_counters(c))
                  + "\n")

    for rec in records:
        now = clock()
        if rec.direction == tap_proto.LOST:
            lost += rec.lost
            continue
        sniffer, name = (inbound, "in") if rec.direction == tap_proto.IN else (outbound, "out")
        for record in sniffer.feed(rec.data, now - start, name):
            out.write((json.dumps(record) if as_json else format_line(record)) + "\n")
        if now - last_counters >= counters_every_s:
            last_counters = now
            emit_counters()
        out.flush()
    emit_counters()
    out.flush()
    return inbound
