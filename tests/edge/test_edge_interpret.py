"""Frames and scanner bytes become records; nothing in between can raise on bad input."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge import interpret
from edge.store import NewEvent, NewReading
from firmware_bridge import codec


def _frame(msg_type: int, seq: int, payload: bytes, flags: int = 0) -> codec.Frame:
    frames = codec.FrameDecoder().feed(codec.encode_frame(msg_type, seq, payload, flags))
    assert len(frames) == 1
    return frames[0]


def test_temp_frame_becomes_a_reading_with_its_sequence_number() -> None:
    frame = _frame(
        codec.TEMP, 41, codec.pack_temp(123_000, [(0, "ok", 3.0625), (1, "missing", None)])
    )
    items, msg = interpret.from_frame("fridge-1", frame, 1.7e9, True)
    assert msg is not None and msg["type"] == "temp"
    assert items == [
        NewReading("fridge-1", 41, 123_000, 1.7e9, True, [(0, "ok", 3.0625), (1, "missing", None)])
    ]


def test_door_frame_becomes_an_event_and_heartbeat_a_status() -> None:
    door = _frame(codec.DOOR, 3, codec.pack_door(9_000, True, 60_000))
    items, _ = interpret.from_frame("fridge-1", door, 1.0, False, dev_boot=4)
    assert items == [
        NewEvent("fridge-1", "door", 3, 9_000, 1.0, False, {"open": True, "duration_ms": 60_000}, 4)
    ]
    # The same frame flagged REPLY is the state on attach, not an opening.
    report = _frame(codec.DOOR, 3, codec.pack_door(9_000, True, 60_000), codec.REPLY)
    (event,), _ = interpret.from_frame("fridge-1", report, 1.0, False, dev_boot=4)
    assert isinstance(event, NewEvent) and event.data["state_report"] is True
    hb = _frame(codec.HEARTBEAT, 4, codec.pack_heartbeat(10_000, 50_000, 1, 2, 3))
    items, _ = interpret.from_frame("fridge-1", hb, 2.0, False)
    assert len(items) == 1 and isinstance(items[0], interpret.DeviceStatus)


def test_malformed_payload_is_reported_not_raised() -> None:
    frame = _frame(codec.TEMP, 1, b"\x01\x02")
    assert interpret.from_frame("fridge-1", frame, 1.0, True) == ([], None)


def test_scanner_lines_split_on_cr_lf_and_keep_the_aim_identifier() -> None:
    splitter = interpret.LineSplitter()
    lines = splitter.feed(b"]E06901234567892\r\n]C1010690") + splitter.feed(
        b"1234567892\r\nno-prefix\n"
    )
    assert lines == [b"]E06901234567892", b"]C10106901234567892", b"no-prefix"]
    ev = interpret.from_scan_line("scanner-1", lines[0], 1.0, True)
    assert ev.data == {"line": "]E06901234567892", "symbology": "E0", "data": "6901234567892"}
    assert "error" in interpret.from_scan_line("scanner-1", lines[2], 1.0, True).data


def test_overlong_scanner_line_is_counted_and_dropped() -> None:
    splitter = interpret.LineSplitter(max_line=16)
    assert splitter.feed(b"x" * 40 + b"\r\n]E01\r\n") == [b"]E01"]
    assert splitter.overlong == 1


@given(st.lists(st.binary(max_size=64), max_size=20))
def test_line_splitter_never_returns_long_or_broken_lines(chunks: list[bytes]) -> None:
    splitter = interpret.LineSplitter(max_line=32)
    for chunk in chunks:
        for line in splitter.feed(chunk):
            assert 0 < len(line) <= 32
            assert b"\r" not in line and b"\n" not in line
