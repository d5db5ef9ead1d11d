"""The agent's tap (edge/tap.py with the protocol of firmware_bridge/tap.py) on a real Unix
socket: listeners get every byte with its direction, a listener that does not read loses
its own copy (told as LOST) while `tee` never waits, the socket is private, and a second
agent on the same data directory is refused."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.testkit.wait import wait
from edge.tap import BUFFER_BYTES, Tap
from firmware_bridge import codec
from firmware_bridge import tap as proto
from firmware_bridge.capture import Capture, Cutter, check_bounds
from firmware_bridge.port_holders import holders
from firmware_bridge.sniff import sniff_agent


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Short: a Unix socket path has at most 107 bytes.
    with tempfile.TemporaryDirectory(prefix="tap") as d:
        yield Path(d)


@pytest.fixture
def tap(data_dir: Path) -> Iterator[Tap]:
    t = Tap(proto.tap_path(data_dir), {"fridge-1": {"kind": "fridge"},
                                       "scanner-1": {"kind": "scanner"}})
    assert t.start()
    yield t
    t.close()


def test_listeners_get_each_byte_with_its_direction(tap: Tap, data_dir: Path) -> None:
    answer, records = proto.open_tap(proto.tap_path(data_dir), ["fridge-1"], 3.0)
    assert answer["pid"] == os.getpid() and set(answer["devices"]) == {"fridge-1", "scanner-1"}
    tap.tee("fridge-1", proto.IN, b"\x03\x10\x10\x00")
    tap.tee("scanner-1", proto.IN, b"]E0123\r\n")  # not asked for
    tap.tee("fridge-1", proto.OUT, b"\x05\x10\x20\x01")
    got = []
    for rec in records:
        got.append((rec.device, rec.direction, rec.data))
        if len(got) == 2:
            break
    assert got == [("fridge-1", proto.IN, b"\x03\x10\x10\x00"),
                   ("fridge-1", proto.OUT, b"\x05\x10\x20\x01")]
    assert proto.status(proto.tap_path(data_dir))["ok"]


def test_a_listener_that_does_not_read_loses_only_its_own_copy(tap: Tap,
                                                                data_dir: Path) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(proto.tap_path(data_dir)))
    sock.sendall(json.dumps({"op": "tap", "devices": []}).encode() + b"\n")
    line = b""
    while not line.endswith(b"\n"):
        line += sock.recv(1)
    assert json.loads(line)["ok"]
    chunk = b"\x55" * 4096
    total = 4 * BUFFER_BYTES
    # The reader's side: tee must return however full the listener is.
    teeing = threading.Thread(target=lambda: [tap.tee("fridge-1", proto.IN, chunk)
                                              for _ in range(total // len(chunk))])
    teeing.start()
    teeing.join(30)
    assert not teeing.is_alive(), "tee waited for a listener"
    # Now read everything that was kept; what was not is counted in LOST records.
    reader = proto.RecordReader()
    received = lost = 0
    sock.settimeout(2.0)
    while received + lost < total:
        data = sock.recv(65536)
        assert data, "the agent closed the tap"
        for rec in reader.feed(data):
            if rec.direction == proto.LOST:
                lost += rec.lost
            else:
                received += len(rec.data)
    sock.close()
    assert received + lost == total and lost > 0 and received >= BUFFER_BYTES // 2


def test_the_socket_is_private_and_refuses_bad_requests(tap: Tap, data_dir: Path) -> None:
    path = proto.tap_path(data_dir)
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(proto.TapError, match="unknown device fridge-9"):
        proto.open_tap(path, ["fridge-9"], 1.0)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    sock.sendall(b"not json\n")
    assert json.loads(sock.makefile("rb").readline())["ok"] is False
    sock.close()


def test_one_agent_per_data_dir_and_a_stale_socket_is_replaced(tap: Tap,
                                                               data_dir: Path) -> None:
    second = Tap(proto.tap_path(data_dir), {})
    assert not second.start()  # the first one answers: this one must not steal its path
    tap.close()
    # A socket file left by an agent that died: nobody answers, so it is replaced.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(proto.tap_path(data_dir)))
    stale.close()
    third = Tap(proto.tap_path(data_dir), {})
    assert third.start()
    third.close()
    with pytest.raises(proto.TapError, match="no agent tap"):
        proto.status(proto.tap_path(data_dir))


def test_cutter_and_capture_bounds() -> None:
    cut = Cutter(b"\x00", 8)
    assert cut.feed(b"\x01\x02\x00\x03") == [b"\x01\x02\x00"]
    assert cut.feed(b"\x04" * 9) == [b"\x03" + b"\x04" * 7]  # noise cut at the limit
    assert cut.flush() == b"\x04\x04"
    with pytest.raises(ValueError):
        check_bounds(0, 10_000)
    with pytest.raises(ValueError):
        check_bounds(10, 100)
    out = open(os.devnull, "wb")  # noqa: SIM115
    with out:
        cap = Capture(out, {"fridge-1": "fridge"}, 1024)
        for i in range(200):
            cap.add(proto.TapRecord(i, proto.IN, "fridge-1", b"\x03\x10\x10\x00"))
        summary = cap.close()
    assert summary.truncated and summary.bytes <= 1024 and 0 < summary.packets < 200


def test_port_holders_names_another_process(tmp_path: Path) -> None:
    port = tmp_path / "port"
    port.write_bytes(b"")
    assert holders(str(port)) == []
    with port.open("rb"):
        assert holders(str(port)) == []  # this process is never its own obstacle
    child = subprocess.Popen([sys.executable, "-c", "import sys, time; f = open(sys.argv[1]);"
                              " print('open', flush=True); time.sleep(60)", str(port)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "open\n"
        (found,) = holders(str(port))
        assert found.pid == child.pid and "time.sleep" in found.command
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_a_sniff_through_the_tap_shows_frames_both_ways_and_scanner_lines(
        tap: Tap, data_dir: Path) -> None:
    path = proto.tap_path(data_dir)
    outs = {"fridge-1": io.StringIO(), "scanner-1": io.StringIO()}
    threads = [threading.Thread(target=sniff_agent, args=(path, d, out, 2.0, True))
               for d, out in outs.items()]
    for t in threads:
        t.start()
    wait(lambda: len(tap._listeners) == 2, 5, "both sniffs listening")
    tap.tee("fridge-1", proto.IN, codec.encode_frame(codec.DOOR, 4,
                                                     codec.pack_door(1000, True, 5)))
    tap.tee("fridge-1", proto.OUT, codec.encode_frame(codec.RECEIPT, 9,
                                                      codec.pack_receipt(1, [4])))
    tap.tee("scanner-1", proto.IN, b"]E0069012")
    tap.tee("scanner-1", proto.IN, b"34567892\r\n")
    for t in threads:
        t.join(10)
    fridge = [json.loads(x) for x in outs["fridge-1"].getvalue().splitlines()]
    assert [(r["dir"], r["type"]) for r in fridge if "type" in r] == [
        ("in", "door"), ("out", "receipt")]
    scan = [json.loads(x) for x in outs["scanner-1"].getvalue().splitlines()]
    assert [(r["dir"], r["line"]) for r in scan] == [("in", "]E006901234567892")]
