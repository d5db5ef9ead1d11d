"""#16 point 5: a sniff or a capture beside the running agent never disturbs its link.

The real simulator on ptys (a thread here), the real agent (`xiaodian edge run`, a process)
and a real broker. The sniff goes through the agent's tap; the old way, opening the port a
second time, is refused and names the agent. The agent's link counters (CRC errors, missed
frames, reconnects) are the same after as before, and no door alert appears.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.testkit.edge import (
    edge_config,
    events,
    query,
    quiet_fridge_sim,
    start_edge,
    stop_child,
)
from devstack.testkit.wait import wait
from firmware_bridge import codec, pcapng
from firmware_bridge.tap import tap_path
from xiaodian.mqtt import MqttSettings

STORE = "store-001"
LUA = Path(__file__).resolve().parents[2] / "firmware_bridge" / "wireshark" / "xiaodian_serial.lua"
COUNTERS = ("crc_errors", "cobs_errors", "missed_frames", "seq_gaps", "reconnects",
            "bytes_discarded")


def link_status(db: Path, device: str) -> dict[str, Any]:
    rows = query(db, "SELECT status FROM device_status WHERE device=?", device)
    return json.loads(rows[0][0]) if rows else {}


@pytest.fixture
def store(tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings]) -> Iterator[
        tuple[Path, Path, Path]]:
    """(edge TOML, edge database, fridge-1's port) with the simulator and agent running."""
    with quiet_fridge_sim(tmp_path) as port:
        cfg = edge_config(tmp_path / "edge", mqtt_settings(STORE), fridges=[("fridge-1", port)],
                          publish_interval_s=0.1, readings_interval_s=0.1)
        toml = tmp_path / "edge.toml"
        agent = start_edge(cfg, toml, tmp_path / "agent.log")
        try:
            yield toml, cfg.edge.db_path, port
        finally:
            stop_child(agent)


def xiaodian(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xiaodian", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_a_sniff_beside_the_agent_leaves_its_link_alone(store: tuple[Path, Path, Path],
                                                        tmp_path: Path) -> None:
    toml, db, port = store
    # Settled: the agent has reported a link with a HELLO and some frames.
    before = wait(lambda: (s := link_status(db, "fridge-1")).get("frames_ok", 0) >= 5
                  and s.get("hello") and s, 30, "the agent's link is up")

    # The old way, opening the port itself: refused, and the holder is named.
    direct = xiaodian("serial", "sniff", str(port), "--seconds", "2")
    assert direct.returncode == 2, direct.stderr
    assert "refusing to open it" in direct.stderr and "edge run" in direct.stderr
    standalone = subprocess.run(
        [sys.executable, "-m", "firmware_bridge.cli", "serial", "sniff", str(port),
         "--seconds", "2"], capture_output=True, text=True, timeout=30, check=False)
    assert standalone.returncode == 2 and "refusing" in standalone.stderr

    # Through the agent: by device id and by port, both directions.
    sniffed = xiaodian("serial", "sniff", "--config", str(toml), "fridge-1", "--json",
                       "--seconds", "4")
    assert sniffed.returncode == 0, sniffed.stderr
    lines = [json.loads(x) for x in sniffed.stdout.splitlines()]
    frames = [x for x in lines if "type" in x]
    assert {"temp", "heartbeat"} <= {f["type"] for f in frames if f["dir"] == "in"}
    assert "receipt" in {f["type"] for f in frames if f["dir"] == "out"}
    assert lines[-1]["counters"]["crc_errors"] == 0
    assert lines[-1]["counters"]["last_hello"]["device_id"] == "fridge-1"  # the agent's
    by_port = xiaodian("serial", "sniff", "--config", str(toml), str(port), "--seconds", "2")
    assert by_port.returncode == 0 and "<- #" in by_port.stdout, by_port.stderr

    # A capture at the same time: pcapng, a frame per packet, directions marked.
    out = tmp_path / "cap.pcapng"
    cap = xiaodian("serial", "capture", "--config", str(toml), "--out", str(out),
                   "--seconds", "3")
    assert cap.returncode == 0, cap.stderr
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    interfaces, packets = pcapng.read(out.read_bytes())
    assert [(i.name, i.linktype) for i in interfaces] == [("fridge-1", 147)]
    assert {p.direction for p in packets} == {pcapng.INBOUND, pcapng.OUTBOUND}
    decoder = codec.FrameDecoder()
    decoded = [f for p in packets for f in decoder.feed(p.data)]
    assert len(decoded) == len(packets) and decoder.stats()["crc_errors"] == 0
    if shutil.which("tshark"):  # the dissector reads a live capture as the codec does
        shown = subprocess.run(
            ["tshark", "-X", f"lua_script:{LUA}", "-r", str(out), "-T", "fields",
             "-e", "xiaodian.type_name", "-e", "xiaodian.error"],
            capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
        assert shown == [f"{codec.TYPE_NAMES[f.type]}\t" for f in decoded]

    # The agent's own counters: a report made after all that, and nothing moved.
    seen = link_status(db, "fridge-1")["frames_ok"]
    after = wait(lambda: (s := link_status(db, "fridge-1"))["frames_ok"] > seen and s, 20,
                 "a status report after the sniffs")
    assert {k: after[k] for k in COUNTERS} == {k: before[k] for k in COUNTERS}
    assert not after["stalled"]
    assert [e for e in events(db, "alert")] == []
    assert [e for e in events(db, "link") if e.get("state") == "down"] == []


def test_the_tap_is_private_to_the_agents_user(store: tuple[Path, Path, Path]) -> None:
    toml, db, _ = store
    wait(lambda: link_status(db, "fridge-1").get("hello"), 30, "the agent's link is up")
    sock = tap_path(db.parent)
    assert oct(sock.parent.stat().st_mode & 0o777) == "0o700"
    assert oct(sock.stat().st_mode & 0o777) == "0o600"
    # An unknown device is refused with the known ones named.
    bad = xiaodian("serial", "capture", "--config", str(toml), "fridge-9", "--out", "/dev/null",
                   "--seconds", "1")
    assert bad.returncode == 2 and "fridge-1" in bad.stderr
