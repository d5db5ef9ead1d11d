"""A bounded capture: the agent's tap records in, a pcapng file of frames out.

The tap hands over bytes as the port delivered them (half a frame, three frames); a capture
cuts each device's stream, per direction, into what the dissector reads as one packet: a
fridge's bytes up to and including each 0x00 delimiter, a scanner's up to each line end.
Bytes that never reach a delimiter within a frame's largest size (line noise) become a
packet of their own, so nothing the line carried is left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from firmware_bridge import codec, pcapng
from firmware_bridge import tap as proto

MAX_SECONDS = 3600.0
MAX_BYTES = 64 * 1024 * 1024
DEFAULT_SECONDS = 60.0
DEFAULT_BYTES = 4 * 1024 * 1024
MAX_LINE = 512  # a scanner line longer than this is cut

_DIRECTION = {proto.IN: pcapng.INBOUND, proto.OUT: pcapng.OUTBOUND}


def check_bounds(seconds: float, max_bytes: int) -> None:
    """ValueError unless a capture's limits are within what a terminal can afford."""
    if not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"seconds: between 0 and {MAX_SECONDS:g}")
    if not 1024 <= max_bytes <= MAX_BYTES:
        raise ValueError(f"max_bytes: between 1024 and {MAX_BYTES}")


class Cutter:
    """One direction of one device: bytes in, whole frames (or lines) out."""

    def __init__(self, delimiter: bytes, limit: int) -> None:
        self.delimiter = delimiter
        self.limit = limit
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        for b in data:
            self._buf.append(b)
            if b == self.delimiter[0] or len(self._buf) >= self.limit:
                out.append(bytes(self._buf))
                self._buf.clear()
        return out

    def flush(self) -> bytes:
        rest, self._buf = bytes(self._buf), bytearray()
        return rest


@dataclass
class CaptureSummary:
    packets: int = 0
    bytes: int = 0
    lost: int = 0  # bytes the agent dropped for this capture (it fell behind)
    truncated: bool = False  # stopped at the size limit
    per_device: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"packets": self.packets, "bytes": self.bytes, "lost_bytes": self.lost,
                "truncated": self.truncated, "per_device": dict(self.per_device)}


class Capture:
    """Writes packets until the size limit; `devices` maps each id to "fridge" or "scanner"."""

    def __init__(self, out: BinaryIO, devices: Mapping[str, str], max_bytes: int) -> None:
        self.writer = pcapng.PcapngWriter(out)
        self.devices = dict(devices)
        self.max_bytes = max_bytes
        self.summary = CaptureSummary()
        self._cutters: dict[tuple[str, int], Cutter] = {}
        self._last_ns = 0

    @property
    def full(self) -> bool:
        return self.summary.truncated

    def _cutter(self, device: str, direction: int) -> Cutter:
        key = (device, direction)
        if key not in self._cutters:
            if self.devices.get(device) == "scanner":
                self._cutters[key] = Cutter(b"\n", MAX_LINE)
            else:
                self._cutters[key] = Cutter(b"\x00", codec.MAX_FRAME)
        return self._cutters[key]

    def _write(self, device: str, direction: int, t_ns: int, data: bytes) -> None:
        if self.full:
            return
        if self.writer.bytes_written + len(data) + 64 > self.max_bytes:
            self.summary.truncated = True
            return
        scanner = self.devices.get(device) == "scanner"
        iface = self.writer.interface(
            device, pcapng.LINKTYPE_SCANNER if scanner else pcapng.LINKTYPE_FRIDGE,
            "barcode scanner" if scanner else "fridge controller (xiaodian serial 1.0)")
        self.writer.packet(iface, t_ns, data, _DIRECTION[direction])
        self.summary.packets += 1
        self.summary.per_device[device] = self.summary.per_device.get(device, 0) + 1
        self.summary.bytes = self.writer.bytes_written

    def add(self, record: proto.TapRecord) -> None:
        if record.direction == proto.LOST:
            self.summary.lost += record.lost
            return
        self._last_ns = record.t_ns
        for piece in self._cutter(record.device, record.direction).feed(record.data):
            self._write(record.device, record.direction, record.t_ns, piece)

    def add_all(self, records: Iterable[proto.TapRecord]) -> None:
        for record in records:
            self.add(record)
            if self.full:
                return

    def close(self) -> CaptureSummary:
        """Half frames still waiting go out as they are."""
        for (device, direction), cutter in sorted(self._cutters.items()):
            rest = cutter.flush()
            if rest:
                self._write(device, direction, self._last_ns, rest)
        self.summary.bytes = self.writer.bytes_written
        return self.summary
