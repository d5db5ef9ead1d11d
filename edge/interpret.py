"""Turn decoded serial frames and scanner lines into records for the edge store (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge.store import NewEvent, NewReading
from firmware_bridge import codec

# Frame message types that become events, with the payload fields we keep.
_EVENT_TYPES = {"door", "compressor", "power", "defrost", "hello"}
# Bound on a scan line: real barcodes (even GS1 DataMatrix) are far shorter.
MAX_SCAN_LINE = 512


@dataclass(frozen=True)
class DeviceStatus:
    """Link health of one device, kept as the latest value rather than as history."""

    device: str
    status: dict[str, Any]


Item = NewReading | NewEvent | DeviceStatus


def from_frame(
    device: str, frame: codec.Frame, wall: float, synced: bool, dev_boot: int = 0
) -> tuple[list[Item], dict[str, Any] | None]:
    """Records for one frame, and the decoded message (None if malformed for its type).

    `dev_boot` is the device's boot count from its HELLO: with the frame's sequence number
    and device time it identifies a record at the source, so a resent one is stored once.
    """
    msg = codec.decode_message(frame.type, frame.payload)
    if msg is None:
        return [], None
    kind = msg["type"]
    if kind == "temp":
        probes = [(int(i), str(s), None if c is None else float(c)) for i, s, c in msg["probes"]]
        reading = NewReading(device, frame.seq, int(msg["dev_ms"]), wall, synced, probes, dev_boot)
        return [reading], msg
    if kind in ("lanes", "lock"):
        # Fixed shapes other parts build on (pickup handover): exactly these keys, plus
        # state_report on the state the controller reports when the host attaches.
        if kind == "lanes":
            lanes = [
                {"lane": int(x["lane"]), "grams": int(x["grams"]), "stable": bool(x["stable"])}
                for x in msg["lanes"]
            ]
            data: dict[str, Any] = {"lanes": lanes}
        else:
            data = {"locked": bool(msg["locked"]), "reason": str(msg["reason"])}
        if frame.flags & codec.REPLY:
            data["state_report"] = True  # as for doors: the state on attaching, no change
        event = NewEvent(
            device, kind, frame.seq, int(msg["dev_ms"]), wall, synced, data, dev_boot
        )
        return [event], msg
    if kind in _EVENT_TYPES:
        data = {k: v for k, v in msg.items() if k not in ("type", "dev_ms")}
        if frame.flags & codec.REPLY and kind != "hello":
            # The device's state when we attached, not a change: a door reported open here
            # is not a new opening.
            data["state_report"] = True
        dev_ms = msg.get("dev_ms")
        event = NewEvent(
            device,
            kind,
            frame.seq,
            None if dev_ms is None else int(dev_ms),
            wall,
            synced,
            data,
            dev_boot,
        )
        return [event], msg
    if kind == "heartbeat":
        status = {k: v for k, v in msg.items() if k != "type"}
        return [DeviceStatus(device, {"heartbeat": status, "heartbeat_wall": wall})], msg
    return [], msg


def link_event(device: str, state: str, wall: float, synced: bool, **data: Any) -> NewEvent:
    """The agent's own view of a serial link: up, down (with the error)."""
    return NewEvent(device, "link", None, None, wall, synced, {"state": state, **data})


class LineSplitter:
    """Split a scanner's byte stream into lines at CR, LF or CR LF, bounding line length."""

    def __init__(self, max_line: int = MAX_SCAN_LINE) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._skipping = False
        self.overlong = 0

    def feed(self, data: bytes) -> list[bytes]:
        lines: list[bytes] = []
        for b in data:
            if b in (0x0D, 0x0A):
                if self._buf and not self._skipping:
                    lines.append(bytes(self._buf))
                self._buf.clear()
                self._skipping = False
            elif not self._skipping:
                self._buf.append(b)
                if len(self._buf) > self.max_line:
                    self.overlong += 1
                    self._buf.clear()
                    self._skipping = True
        return lines


PICKUP_PREFIX = "PK1:"


def from_scan_line(device: str, raw: bytes, wall: float, synced: bool) -> NewEvent:
    """A scan as an event: AIM symbology identifier split off; meaning comes later
    (edge/retail). A pickup code is a bearer token for someone's order, so the stored
    event says only that one was scanned; the code itself rides along in memory."""
    text = raw.decode("utf-8", errors="replace")
    secret = None
    at = text.upper().find(PICKUP_PREFIX)
    if at >= 0:
        secret, text = text, text[:at] + PICKUP_PREFIX + "(withheld)"
    data: dict[str, Any] = {"line": text}
    if secret is not None:
        data["pickup_code"] = True
    if len(text) >= 3 and text[0] == "]":
        data["symbology"] = text[1:3]
        data["data"] = text[3:]
    else:
        data["error"] = "no AIM symbology identifier"
    return NewEvent(device, "scan", None, None, wall, synced, data, transient=secret)
