"""pcapng files of serial frames, for Wireshark and tshark (docs/protocol.md, "Captures").

One interface per device: a fridge's frames use the user link type DLT_USER0 (147), which
the dissector `firmware_bridge/wireshark/xiaodian_serial.lua` decodes; a scanner's lines
DLT_USER1 (148). Each Enhanced Packet Block is one frame as it was on the wire (COBS bytes
and the 0x00 delimiter) with the direction in its `epb_flags` option (bits 0-1: 1 inbound,
from the device; 2 outbound, to it) and a nanosecond timestamp (`if_tsresol` 9).
Little-endian throughout; the reader below reads only what this writer writes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

LINKTYPE_FRIDGE = 147  # DLT_USER0
LINKTYPE_SCANNER = 148  # DLT_USER1
INBOUND = 1
OUTBOUND = 2

_SHB = 0x0A0D0D0A
_IDB = 0x00000001
_EPB = 0x00000006
_MAGIC = 0x1A2B3C4D
_OPT_END = 0
_OPT_SHB_USERAPPL = 4
_OPT_IF_NAME = 2
_OPT_IF_DESCRIPTION = 3
_OPT_IF_TSRESOL = 9
_OPT_EPB_FLAGS = 2
SNAPLEN = 65535


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad(value)


def _block(block_type: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)


class PcapngWriter:
    """Writes a section header at once, then interfaces and packets as they come."""

    def __init__(self, out: BinaryIO, application: str = "xiaodian") -> None:
        self.out = out
        self.bytes_written = 0
        self.packets = 0
        options = _option(_OPT_SHB_USERAPPL, application.encode()) + _option(_OPT_END, b"")
        # Section length -1: not known in advance (we write as we go).
        self._write(_block(_SHB, struct.pack("<IHHq", _MAGIC, 1, 0, -1) + options))
        self._interfaces: dict[str, int] = {}

    def _write(self, block: bytes) -> None:
        self.out.write(block)
        self.bytes_written += len(block)

    def interface(self, name: str, linktype: int, description: str = "") -> int:
        """The interface id for `name`, described once on first use."""
        if name in self._interfaces:
            return self._interfaces[name]
        options = _option(_OPT_IF_NAME, name.encode())
        if description:
            options += _option(_OPT_IF_DESCRIPTION, description.encode())
        options += _option(_OPT_IF_TSRESOL, b"\x09") + _option(_OPT_END, b"")
        self._write(_block(_IDB, struct.pack("<HHI", linktype, 0, SNAPLEN) + options))
        self._interfaces[name] = len(self._interfaces)
        return self._interfaces[name]

    def packet(self, interface: int, t_ns: int, data: bytes, direction: int) -> None:
        head = struct.pack("<IIIII", interface, (t_ns >> 32) & 0xFFFFFFFF, t_ns & 0xFFFFFFFF,
                           len(data), len(data))
        options = _option(_OPT_EPB_FLAGS, struct.pack("<I", direction & 3))
        self._write(_block(_EPB, head + _pad(data) + options + _option(_OPT_END, b"")))
        self.packets += 1


@dataclass(frozen=True)
class Interface:
    name: str
    linktype: int


@dataclass(frozen=True)
class Packet:
    interface: int
    t_ns: int
    data: bytes
    direction: int  # INBOUND, OUTBOUND or 0 (not said)


class PcapngError(ValueError):
    pass


def _options(raw: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    i = 0
    while i + 4 <= len(raw):
        code, length = struct.unpack_from("<HH", raw, i)
        if code == _OPT_END:
            break
        out[code] = raw[i + 4 : i + 4 + length]
        i += 4 + length + (-length % 4)
    return out


def read(data: bytes) -> tuple[list[Interface], list[Packet]]:
    """Interfaces and packets of a little-endian pcapng file with one section."""
    interfaces: list[Interface] = []
    packets: list[Packet] = []
    i = 0
    while i < len(data):
        if i + 12 > len(data):
            raise PcapngError(f"truncated block at {i}")
        block_type, length = struct.unpack_from("<II", data, i)
        if length < 12 or length % 4 or i + length > len(data):
            raise PcapngError(f"bad block length {length} at {i}")
        body = data[i + 8 : i + length - 4]
        if block_type == _SHB:
            if struct.unpack_from("<I", body, 0)[0] != _MAGIC:
                raise PcapngError("not a little-endian pcapng section")
        elif block_type == _IDB:
            linktype = struct.unpack_from("<H", body, 0)[0]
            name = _options(body[8:]).get(_OPT_IF_NAME, b"").decode()
            interfaces.append(Interface(name, linktype))
        elif block_type == _EPB:
            iface, hi, lo, caplen, _ = struct.unpack_from("<IIIII", body, 0)
            payload = body[20 : 20 + caplen]
            opts = _options(body[20 + caplen + (-caplen % 4) :])
            flags = struct.unpack("<I", opts[_OPT_EPB_FLAGS])[0] if _OPT_EPB_FLAGS in opts else 0
            packets.append(Packet(iface, (hi << 32) | lo, payload, flags & 3))
        i += length
    return interfaces, packets
