"""The simulator on real pseudo-terminals, read by a real pyserial client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import serial

from firmware_bridge import codec
from hw_sim.runner import Runner
from hw_sim.scenario import Scenario
from hw_sim.truth import read_truth
from xiaodian.config import build


def scenario(tmp_path: Path, speed: float = 600.0, **fridge: Any) -> Scenario:
    raw = {
        "sim": {"seed": 3, "speed": speed, "link_dir": "run", "truth": "run/truth.jsonl"},
        "fridges": [{"id": "fridge-1", "door_openings_per_hour": 30, **fridge}],
        "scanners": [{"id": "scanner-1", "scans_per_hour": 600}],
    }
    return build(raw, Scenario, tmp_path / "scenario.toml")


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Runner]:
    r = Runner(scenario(tmp_path))
    yield r
    r.close()


def truth_of(r: Runner, device: str) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in rec.items() if k != "device"}
        for rec in read_truth(r.scenario.sim.truth)
        if rec["device"] == device
    ]


def as_truth(frame: codec.Frame) -> dict[str, Any]:
    msg = codec.decode_message(frame.type, frame.payload)
    assert msg is not None
    kind = msg.pop("type")
    if kind == "temp":
        msg["probes"] = [list(p) for p in msg["probes"]]
    return {"kind": kind, "fseq": frame.seq, **msg}


def drain(ser: serial.Serial, decoder: codec.FrameDecoder) -> list[dict[str, Any]]:
    """Everything the host can read now (the pty hands bytes over asynchronously)."""
    ser.timeout = 0.2
    out: list[dict[str, Any]] = []
    while chunk := ser.read(65536):
        out += [as_truth(f) for f in decoder.feed(chunk)]
    return out


def open_and_hello(path: Path, seq: int) -> serial.Serial:
    ser = serial.Serial(str(path), 115200, timeout=0.2)
    ser.write(codec.encode_frame(codec.GET_HELLO, seq, b"", codec.ACK_REQUESTED))
    return ser


def test_streams_after_get_hello_and_matches_ground_truth_across_reopen(runner: Runner) -> None:
    link = runner.scenario.sim.link_dir / "fridge-1"
    assert link.is_symlink() and os.readlink(link).startswith("/dev/pts/")

    runner.run(0.2)  # nobody attached: the fridge stays silent
    assert truth_of(runner, "fridge-1") == []

    ser = open_and_hello(link, seq=100)
    runner.run(0.4)  # 240 simulated seconds with the host attached
    dec = codec.FrameDecoder()
    first = drain(ser, dec)
    assert [m["kind"] for m in first[:2]] == ["ack", "hello"]
    assert first[0]["acked_seq"] == 100
    assert sum(m["kind"] == "temp" for m in first) >= 15
    assert first == truth_of(runner, "fridge-1")  # exactly what ground truth says, in order
    assert [m["fseq"] for m in first] == list(range(len(first)))

    ser.close()
    runner.run(0.3)  # 180 simulated seconds with the port closed
    assert truth_of(runner, "fridge-1") == first  # nothing counted while nobody listened

    ser = open_and_hello(link, seq=200)
    runner.run(0.3)
    dec2 = codec.FrameDecoder()
    second = drain(ser, dec2)
    ser.close()
    assert [m["kind"] for m in second[:2]] == ["ack", "hello"]
    assert second[0]["acked_seq"] == 200
    assert first + second == truth_of(runner, "fridge-1")
    # Same boot: sequence numbers carry on; device time jumped over the closed period.
    assert second[0]["fseq"] == first[-1]["fseq"] + 1
    assert [m["fseq"] for m in second] == list(
        range(second[0]["fseq"], second[0]["fseq"] + len(second))
    )
    last_before = max(m["dev_ms"] for m in first if "dev_ms" in m)
    assert second[1]["dev_ms"] - last_before >= 150_000
    for d in (dec, dec2):
        s = d.stats()
        assert s["frames_ok"] > 0 and s["seq_gaps"] == 0 and s["crc_errors"] == 0
    temps = [m for m in second if m["kind"] == "temp"]
    assert temps and all(p[2] * 16 == int(p[2] * 16) for m in temps for p in m["probes"])


def test_a_host_that_stops_reading_causes_counted_drops_not_lies(tmp_path: Path) -> None:
    # 1 s samples at 20 000× speed: ~40 000 frames/s, far more than the pty holds.
    r = Runner(scenario(tmp_path, speed=20_000.0, sample_interval_s=1, heartbeat_interval_s=1))
    try:
        ser = open_and_hello(r.scenario.sim.link_dir / "fridge-1", seq=1)
        r.run(0.3)  # the host is not reading: pty full, then the device's tx buffer
        port = r.devices[0].port
        assert port.stats.tx_overflow_drops > 0
        dec = codec.FrameDecoder()
        received = drain(ser, dec)
        r.run(0.05)  # the host reads again: frames resume after a gap
        received += drain(ser, dec)
        ser.close()
        # Every frame ground truth claims was delivered really was, and no other.
        assert received == truth_of(r, "fridge-1")
        # The gap the host sees is made of frames the device counted as dropped.
        missed = dec.stats()["missed_frames"]
        assert 0 < missed <= port.stats.tx_overflow_drops
        beats = [m for m in received if m["kind"] == "heartbeat"]
        assert beats[-1]["tx_dropped"] > 0  # and the device owns up in its heartbeat
    finally:
        r.close()


def test_cli_run_prints_links_streams_scans_and_cleans_up_on_sigterm(tmp_path: Path) -> None:
    toml = tmp_path / "scenario.toml"
    toml.write_text(
        '[sim]\nseed = 9\nspeed = 1.0\nlink_dir = "ignored"\ntruth = "ignored.jsonl"\n'
        '[[fridges]]\nid = "fridge-1"\n'
        '[[scanners]]\nid = "scanner-1"\nscans_per_hour = 120\n'
    )
    links, truth = tmp_path / "links", tmp_path / "t.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "xiaodian",
        "sim",
        "run",
        str(toml),
        "--speed",
        "600",
        "--for",
        "30",
        "--link-dir",
        str(links),
        "--truth",
        str(truth),
    ]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            lines = [proc.stdout.readline().strip() for _ in range(2)]
            assert lines[0].startswith(f"fridge-1 {links / 'fridge-1'} -> /dev/pts/")
            assert lines[1].startswith(f"scanner-1 {links / 'scanner-1'} -> /dev/pts/")

            fridge = open_and_hello(links / "fridge-1", seq=1)
            fridge.timeout = 0.01
            scanner = serial.Serial(str(links / "scanner-1"), timeout=0.01)
            dec = codec.FrameDecoder()
            got: list[dict[str, Any]] = []
            scans = b""
            deadline = time.monotonic() + 1.5  # 15 simulated minutes: ~30 scans expected
            while time.monotonic() < deadline:
                got += [as_truth(f) for f in dec.feed(fridge.read(4096))]
                scans += scanner.read(4096)
            # Hang up before SIGTERM: closing the master at exit would cut off unread bytes.
            scans += scanner.read(65536)
            scanner.close()
            got += [as_truth(f) for f in dec.feed(fridge.read(65536))]
            fridge.close()
            time.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=10)
            assert proc.returncode == 0, err
        finally:
            if proc.poll() is None:
                proc.kill()

    assert not (links / "fridge-1").exists() and not (links / "scanner-1").is_symlink()
    records = read_truth(truth)
    fridge_truth = [
        {k: v for k, v in r.items() if k != "device"} for r in records if r["device"] == "fridge-1"
    ]
    assert [m["kind"] for m in got[:2]] == ["ack", "hello"]
    assert sum(m["kind"] == "temp" for m in got) >= 50
    # What arrived matches ground truth frame for frame; at most a frame written in the
    # instant between the last read and close() went unread.
    assert got == fridge_truth[: len(got)]
    assert len(fridge_truth) - len(got) <= 2

    assert scans.endswith(b"\r\n")
    scan_lines = scans.decode("ascii").split("\r\n")[:-1]
    assert len(scan_lines) >= 12
    assert all(line[:3] in ("]E0", "]C1", "]Q1") for line in scan_lines)
    scan_truth = [r["line"] for r in records if r["device"] == "scanner-1"]
    # A scan written in the instant between the last read and close() is lost to us.
    assert scan_lines == scan_truth[: len(scan_lines)] and len(scan_truth) - len(scan_lines) <= 1


def test_a_stale_link_is_replaced_and_a_real_file_is_not(tmp_path: Path) -> None:
    links = tmp_path / "run"
    links.mkdir()
    (links / "fridge-1").symlink_to("/dev/pts/9999")  # left by a simulator that was killed
    r = Runner(scenario(tmp_path))
    try:
        assert os.readlink(links / "fridge-1") == r.devices[0].port.slave_name
    finally:
        r.close()
    assert not (links / "fridge-1").is_symlink()  # close() removes what it made

    (links / "scanner-1").write_text("not a link")
    with pytest.raises(FileExistsError, match="not a symlink"):
        Runner(scenario(tmp_path))
    assert (links / "scanner-1").read_text() == "not a link"
    assert not (links / "fridge-1").is_symlink()  # the partly built runner cleaned up
