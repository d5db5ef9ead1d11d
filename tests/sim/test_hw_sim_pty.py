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
    if frame.flags & codec.REPLY and frame.type in codec.LOGGED_TYPES:
        msg["state_report"] = True  # ground truth tells state reports from records
    return {"kind": kind, "fseq": frame.seq, **msg}


LOGGED = {codec.TYPE_NAMES[t] for t in codec.LOGGED_TYPES}


def record_key(m: dict[str, Any]) -> tuple[str, int, int]:
    return (m["kind"], m["fseq"], m["dev_ms"])


def drain(
    ser: serial.Serial, decoder: codec.FrameDecoder, receipt: bool = True, once: bool = False
) -> list[dict[str, Any]]:
    """Everything the host can read now (the pty hands bytes over asynchronously), with a
    RECEIPT for every record, as the edge agent sends once they are stored. `once`: a
    single short read, for a device that never stops talking."""
    ser.timeout = 0.01 if once else 0.2
    out: list[dict[str, Any]] = []
    while chunk := ser.read(4096 if once else 65536):
        frames = decoder.feed(chunk)
        out += [{**as_truth(f), "flags": f.flags} for f in frames]
        seqs = [f.seq for f in frames if f.type in codec.LOGGED_TYPES]
        for i in range(0, len(seqs), codec.MAX_RECEIPT_SEQS) if receipt else ():
            body = codec.pack_receipt(1, seqs[i : i + codec.MAX_RECEIPT_SEQS])
            ser.write(codec.encode_frame(codec.RECEIPT, 0, body))
        if once:
            break
    return out


def records(messages: list[dict[str, Any]]) -> set[tuple[str, int, int]]:
    return {record_key(m) for m in messages if m["kind"] in LOGGED}


def open_and_hello(path: Path, seq: int) -> serial.Serial:
    ser = serial.Serial(str(path), 115200, timeout=0.2)
    ser.write(codec.encode_frame(codec.GET_HELLO, seq, b"", codec.ACK_REQUESTED))
    return ser


def test_streams_after_get_hello_and_delivers_every_record_across_reopen(
    runner: Runner,
) -> None:
    link = runner.scenario.sim.link_dir / "fridge-1"
    assert link.is_symlink() and os.readlink(link).startswith("/dev/pts/")
    device = runner.devices[0]

    ser = open_and_hello(link, seq=100)
    runner.run(0.4)  # 240 simulated seconds with the host attached
    dec = codec.FrameDecoder()
    first = drain(ser, dec)
    runner.run(0.05)  # the device takes the receipts
    assert [m["kind"] for m in first[:2]] == ["ack", "hello"]
    assert first[0]["acked_seq"] == 100
    assert sum(m["kind"] == "temp" for m in first) >= 15
    # Live frames match ground truth exactly, values included.
    truth = {record_key(t): t for t in truth_of(runner, "fridge-1") if t["kind"] in LOGGED}
    for m in first:
        if m["kind"] in LOGGED:
            assert {k: v for k, v in m.items() if k != "flags"} == truth[record_key(m)]

    ser.close()
    runner.run(0.3)  # 180 simulated seconds with the port closed: records are only logged
    closed = records(truth_of(runner, "fridge-1")) - records(first)
    assert sum(k[0] == "temp" for k in closed) >= 15

    ser = open_and_hello(link, seq=200)
    runner.run(0.3)
    dec2 = codec.FrameDecoder()
    second: list[dict[str, Any]] = []
    for _ in range(6):  # host and device take turns: read + receipt, then the device runs
        second += drain(ser, dec2)
        runner.run(0.05)
    ser.close()
    assert [m["kind"] for m in second[:2]] == ["ack", "hello"]
    assert second[0]["acked_seq"] == 200
    # What was logged while nobody listened came as retransmissions after the HELLO.
    resent = {record_key(m) for m in second if m["flags"] & codec.RETRANSMISSION}
    assert closed <= resent
    # Nothing lost: every record ground truth holds reached the host or is still logged.
    assert records(truth_of(runner, "fridge-1")) <= records(first) | records(second) | {
        (codec.TYPE_NAMES[e.msg_type], seq, e.fields["dev_ms"])
        for seq, e in device.sim.controller.log.items()
    }
    # Receipted records leave the log; what remains was made after the host's last read.
    last_seen = max(k[2] for k in records(first) | records(second))
    assert all(e.fields["dev_ms"] > last_seen for e in device.sim.controller.log.values())
    assert second[0]["fseq"] > first[-1]["fseq"]  # same boot: the sequence carries on


def test_a_host_that_stops_reading_loses_no_record(tmp_path: Path) -> None:
    # 1 s samples at 2 000x speed: far more than a pty holds while the host does not read.
    r = Runner(scenario(tmp_path, speed=2_000.0, sample_interval_s=1, heartbeat_interval_s=1))
    try:
        ser = open_and_hello(r.scenario.sim.link_dir / "fridge-1", seq=1)
        r.run(0.3)  # the host is not reading: pty full, then the device's tx buffer
        port = r.devices[0].port
        assert port.stats.tx_overflow_drops > 0
        dec = codec.FrameDecoder()
        received: list[dict[str, Any]] = []
        for _ in range(10):  # the host reads and receipts again
            received += drain(ser, dec)
            r.run(0.05)
        ser.close()
        r.run(0.05)
        controller = r.devices[0].sim.controller
        truth = truth_of(r, "fridge-1")
        made = {record_key(t) for t in truth if t["kind"] in LOGGED}
        lost = {(t["lost"], t["fseq"], t["dev_ms"]) for t in truth if t["kind"] == "log_overflow"}
        still = {
            (codec.TYPE_NAMES[e.msg_type], seq, e.fields["dev_ms"])
            for seq, e in controller.log.items()
        }
        # Every record is accounted for: delivered, in the device log, or reported lost.
        assert made == records(received) | lost | still
        assert not records(received) & lost
        assert len(records(received)) > 500
        beats = [m for m in received if m["kind"] == "heartbeat"]
        assert beats[-1]["tx_dropped"] > 0  # heartbeats are dropped, and the device owns up
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
            scanner = serial.Serial(str(links / "scanner-1"), timeout=0.01)
            dec = codec.FrameDecoder()
            got: list[dict[str, Any]] = []
            scans = b""
            deadline = time.monotonic() + 1.5  # 15 simulated minutes: ~30 scans expected
            while time.monotonic() < deadline:
                got += drain(fridge, dec, once=True)
                scans += scanner.read(4096)
            # Hang up before SIGTERM: closing the master at exit would cut off unread bytes.
            scans += scanner.read(65536)
            scanner.close()
            got += drain(fridge, dec, once=True)
            fridge.close()
            time.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=10)
            assert proc.returncode == 0, err
        finally:
            if proc.poll() is None:
                proc.kill()

    assert not (links / "fridge-1").exists() and not (links / "scanner-1").is_symlink()
    all_truth = read_truth(truth)
    fridge_truth = [
        {k: v for k, v in r.items() if k != "device"}
        for r in all_truth
        if r["device"] == "fridge-1"
    ]
    assert [m["kind"] for m in got[:2]] == ["ack", "hello"]
    assert sum(m["kind"] == "temp" for m in got) >= 50
    # Every record arrived but those made after the host's last read (still in the log of
    # a device that was then stopped).
    assert records(got) <= records(fridge_truth)
    last_seen = max(k[2] for k in records(got))
    assert all(k[2] > last_seen for k in records(fridge_truth) - records(got))

    assert scans.endswith(b"\r\n")
    scan_lines = scans.decode("ascii").split("\r\n")[:-1]
    assert len(scan_lines) >= 12
    assert all(line[:3] in ("]E0", "]C1", "]Q1") for line in scan_lines)
    scan_truth = [r["line"] for r in all_truth if r["device"] == "scanner-1"]
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
