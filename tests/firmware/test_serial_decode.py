"""`serial decode`: a captured byte stream becomes JSON lines and a counters line."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge import cli, codec


def capture() -> bytes:
    """What a fridge says after GET_HELLO, with line noise in the middle."""
    return b"".join(
        [
            b"\x00\x00",  # wake preamble
            codec.encode_frame(codec.ACK, 0, codec.pack_ack(1), codec.REPLY),
            codec.encode_frame(
                codec.HELLO,
                1,
                codec.pack_hello(250, (1, 2, 3), "watchdog", 0x0F, 2, 0, 7, "fridge-1"),
                codec.REPLY,
            ),
            codec.encode_frame(codec.TEMP, 2, codec.pack_temp(60000, [(0, "ok", 3.0625)])),
            b"\x13\x37noise\x00",
            codec.encode_frame(codec.DOOR, 4, codec.pack_door(61000, True, 3_600_000)),
            codec.encode_frame(0x55, 5, b"\xab\xcd"),  # a type this decoder does not know
            codec.encode_frame(codec.COMPRESSOR, 6, b"\x01"),  # too short for its type
        ]
    )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="xiaodian")
    cli.register(top.add_subparsers(dest="command", required=True))
    return top


def run_decode(path: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict[str, Any]]]:
    args = parser().parse_args(["serial", "decode", path])
    code = args.func(args)
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines()]


def test_decode_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "capture.bin"
    path.write_bytes(capture())
    code, lines = run_decode(str(path), capsys)
    assert code == 0
    assert lines[0] == {
        "seq": 0,
        "type": "ack",
        "version": "1.0",
        "flags": ["reply"],
        "fields": {"acked_seq": 1, "status": "ok"},
    }
    assert lines[1]["type"] == "hello"
    assert lines[1]["fields"]["device_id"] == "fridge-1"
    assert lines[1]["fields"]["reset_cause"] == "watchdog"
    assert lines[2] == {
        "seq": 2,
        "type": "temp",
        "version": "1.0",
        "flags": [],
        "fields": {"dev_ms": 60000, "probes": [[0, "ok", 3.0625]]},
    }
    assert lines[3]["fields"] == {"dev_ms": 61000, "open": True, "duration_ms": 3_600_000}
    assert lines[4] == {
        "seq": 5,
        "type": "0x55",
        "version": "1.0",
        "flags": [],
        "payload_hex": "abcd",
    }
    assert lines[5]["type"] == "compressor" and lines[5]["payload_hex"] == "01"
    counters = lines[6]["counters"]
    assert len(lines) == 7
    assert counters["frames_ok"] == 6
    assert counters["cobs_errors"] == 1
    assert counters["bytes_discarded"] == len(b"\x13\x37noise\x00")
    assert (counters["seq_gaps"], counters["missed_frames"]) == (1, 1)  # seq 3 was the noise


def test_decode_stdin_as_binary() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "firmware_bridge.cli", "serial", "decode", "-"],
        input=capture(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.decode().splitlines()]
    assert [line.get("type") for line in lines[:-1]] == [
        "ack",
        "hello",
        "temp",
        "door",
        "0x55",
        "compressor",
    ]
    assert lines[-1]["counters"]["frames_ok"] == 6


def test_decode_garbage_and_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    code, lines = run_decode(str(empty), capsys)
    assert code == 0 and len(lines) == 1 and lines[0]["counters"]["frames_ok"] == 0

    garbage = tmp_path / "garbage.bin"
    # 10 kB crossing read chunks: 00 starts an empty frame, then 39 complete 255-byte
    # candidates (each happens to be valid COBS) and an unterminated last one.
    garbage.write_bytes(bytes(range(256)) * 40)
    code, lines = run_decode(str(garbage), capsys)
    assert code == 0 and len(lines) == 1
    counters = lines[0]["counters"]
    assert counters["frames_ok"] == 0
    rejected = ("cobs_errors", "crc_errors", "length_errors", "oversize", "version_errors")
    assert sum(counters[name] for name in rejected) == 39
    assert counters["bytes_discarded"] == 39 * 256


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(["serial", "decode", str(tmp_path / "nope.bin")])
    assert args.func(args) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "nope.bin" in captured.err


def test_serial_requires_a_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["serial"])
    capsys.readouterr()
