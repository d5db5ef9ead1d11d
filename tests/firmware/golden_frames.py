"""The golden capture: one frame of every type of docs/protocol.md, both directions, and
the rejects a receiver counts (CRC, COBS, short, version, length), at fixed times.

`python -m tests.firmware.golden_frames` rewrites tests/firmware/golden/all_frames.pcapng;
the dissector test checks the committed file is still what this builds.
"""

from __future__ import annotations

import io
from pathlib import Path

from firmware_bridge import codec, fwmsg, pcapng

GOLDEN = Path(__file__).parent / "golden" / "all_frames.pcapng"
T0_NS = 1_780_000_000_000_000_000  # 2026-05-28, a fixed wall time
IN, OUT = pcapng.INBOUND, pcapng.OUTBOUND
SHA = bytes(range(0xA0, 0xC0))  # an image hash: 32 distinct bytes


def _frame(t: int, seq: int, body: bytes, flags: int = 0) -> bytes:
    return codec.encode_frame(t, seq, body, flags)


def frames() -> list[tuple[int, bytes]]:
    """(direction, wire bytes) in capture order."""
    good = [
        (OUT, _frame(codec.GET_HELLO, 1, codec.pack_get_hello(), codec.ACK_REQUESTED)),
        (IN, _frame(codec.ACK, 0, codec.pack_ack(1, "ok"), codec.REPLY)),
        (IN, _frame(codec.HELLO, 1, codec.pack_hello(250, (1, 2, 3), "watchdog", 0x3F, 2, 2, 7,
                                                     "fridge-1"), codec.REPLY)),
        (IN, _frame(codec.HEARTBEAT, 2, codec.pack_heartbeat(60_000, 81_920, 3, 1, 0))),
        (IN, _frame(codec.TEMP, 3, codec.pack_temp(120_000, [(0, "ok", 3.0625),
                                                            (1, "suspect", 85.0),
                                                            (2, "missing", None)]))),
        (IN, _frame(codec.DOOR, 4, codec.pack_door(121_000, True, 600_000))),
        (IN, _frame(codec.COMPRESSOR, 5, codec.pack_compressor(122_000, True, "thermostat"))),
        (IN, _frame(codec.POWER, 6, codec.pack_power(123_000, False, 11_800))),
        (IN, _frame(codec.DEFROST, 7, codec.pack_defrost(124_000, False, "timeout"))),
        (IN, _frame(codec.LANES, 8, codec.pack_lanes(125_000, [(1234, True), (-3, False)]))),
        (IN, _frame(codec.LOCK, 9, codec.pack_lock(126_000, False, "command"),
                    codec.RETRANSMISSION)),
        (OUT, _frame(codec.RECEIPT, 2, codec.pack_receipt(7, [3, 4, 5]))),
        (OUT, _frame(codec.SET_POINT, 3, codec.pack_set_point(-25), codec.ACK_REQUESTED)),
        (OUT, _frame(codec.DEFROST_NOW, 4, codec.pack_defrost_now(20), codec.ACK_REQUESTED)),
        (OUT, _frame(codec.UNLOCK, 5, codec.pack_unlock(30), codec.ACK_REQUESTED)),
        (OUT, _frame(codec.REBOOT, 6, codec.pack_reboot(), codec.ACK_REQUESTED)),
        (OUT, _frame(codec.TARE, 7, codec.pack_tare(1), codec.ACK_REQUESTED)),
        (OUT, _frame(codec.CALIBRATE, 8, codec.pack_calibrate(0, 500), codec.ACK_REQUESTED)),
        (IN, _frame(codec.ACK, 10, codec.pack_ack(8, "busy"), codec.REPLY)),
        # the firmware update (protocol §4.10): one of each, with a hash that shows its ends
        (OUT, _frame(fwmsg.FW_OFFER, 9, fwmsg.pack_offer(SHA, 61_494, (1, 2, 3), "xd-fridge-1"))),
        (IN, _frame(fwmsg.FW_STATUS, 11, fwmsg.pack_status(130_000, "receiving", SHA, 480,
                                                           61_494))),
        (OUT, _frame(fwmsg.FW_CHUNK, 10, fwmsg.pack_chunk(480, SHA, bytes(range(240))))),
        (OUT, _frame(fwmsg.FW_COMMIT, 11, fwmsg.pack_commit(SHA, "confirm"))),
        (IN, _frame(fwmsg.FW_RESULT, 12, fwmsg.pack_result(131_000, SHA, "rolled_back"))),
    ]
    crc = bytearray(_frame(codec.HEARTBEAT, 11, codec.pack_heartbeat(61_000, 1, 0, 0, 0)))
    crc[4] ^= 0x40  # a spoilt bit: still valid COBS, wrong CRC
    body = codec.encode_body(codec.DOOR, 12, codec.pack_door(1, False, 5))
    bad_version = bytearray(body)
    bad_version[0] = 0x20
    bad_version[-4:] = codec.crc32(bytes(bad_version[:-4])).to_bytes(4, "little")
    bad_length = bytearray(body)
    bad_length[5] += 1
    bad_length[-4:] = codec.crc32(bytes(bad_length[:-4])).to_bytes(4, "little")
    rejects = [
        (IN, bytes(crc)),
        (IN, b"\x05\x11\x22\x00"),  # COBS: the code promises more bytes than there are
        (IN, b"\x03\x10\x10\x00"),  # decodes to 3 bytes: shorter than any body
        (IN, codec.cobs_encode(bytes(bad_version)) + b"\x00"),
        (IN, codec.cobs_encode(bytes(bad_length)) + b"\x00"),
    ]
    return good + rejects


def build() -> bytes:
    out = io.BytesIO()
    writer = pcapng.PcapngWriter(out)
    iface = writer.interface("fridge-1", pcapng.LINKTYPE_FRIDGE, "golden frames")
    scanner = writer.interface("scanner-1", pcapng.LINKTYPE_SCANNER, "golden scan")
    for i, (direction, wire) in enumerate(frames()):
        writer.packet(iface, T0_NS + i * 1_000_000, wire, direction)
    writer.packet(scanner, T0_NS + 99_000_000, b"]E006901234567892\r\n", IN)
    return out.getvalue()


if __name__ == "__main__":
    GOLDEN.write_bytes(build())
    print(f"wrote {GOLDEN}")
