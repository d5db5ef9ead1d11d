"""`xiaodian serial sniff`: the pure sniffer on bytes, and the command against the simulator
on a real pty, with the cable pulled once while it listens."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

from firmware_bridge import codec
from firmware_bridge.sniff import Sniffer, format_counters, format_line
from hw_sim.runner import Runner
from hw_sim.scenario import FaultSpec, FridgeSpec, Scenario, SimSettings


def test_sniffer_counts_noise_and_remembers_hello() -> None:
    hello = codec.encode_frame(
        codec.HELLO, 0, codec.pack_hello(5, (1, 2, 3), "watchdog", 0, 2, 0, 7, "fridge-9")
    )
    temp = codec.encode_frame(
        codec.TEMP, 1, codec.pack_temp(1000, [(0, "ok", 3.5), (1, "missing", None)])
    )
    bad = bytearray(codec.encode_frame(codec.HEARTBEAT, 2, codec.pack_heartbeat(2000, 1, 0, 0, 0)))
    bad[3] ^= 0xFF  # a spoilt byte: CRC fails, the decoder skips to the next 0x00
    late = codec.encode_frame(codec.DOOR, 5, codec.pack_door(3000, True, 0))
    s = Sniffer()
    records = s.feed(hello + temp + bytes(bad) + b"\x11\x22\x00" + late, 1.5)
    assert [r["type"] for r in records] == ["hello", "temp", "door"]
    c = s.counters()
    assert c["frames_ok"] == 3 and c["resyncs"] >= 1 and c["bytes_discarded"] > 0
    assert c["seq_gaps"] == 1 and c["missed_frames"] == 3
    assert c["last_hello"] == {
        "firmware": "1.2.3",
        "reset_cause": "watchdog",
        "boot_count": 7,
        "device_id": "fridge-9",
    }
    line = format_line(records[1])
    assert "#    1 temp" in line and "p0=ok:3.50" in line and "p1=missing" in line
    assert "fw 1.2.3 boot 7 reset watchdog" in format_counters(c)


def test_sniff_the_simulator_on_a_pty(tmp_path: Path) -> None:
    # The cable is pulled 60 simulated s in (1 s real at speed 60) for 30 s.
    spec = FridgeSpec(
        id="f1",
        sample_interval_s=10,
        heartbeat_interval_s=10,
        faults=(FaultSpec("unplug", at_s=60, for_s=30),),
    )
    scenario = Scenario(
        SimSettings(link_dir=tmp_path / "run", truth=tmp_path / "t.jsonl", speed=60.0),
        fridges=(spec,),
    )
    runner = Runner(scenario)
    sim = threading.Thread(target=runner.run, args=(4.0,))
    sim.start()
    try:
        cmd = [sys.executable, "-m", "firmware_bridge.cli", "serial", "sniff"]
        cmd += [str(tmp_path / "run" / "f1"), "--hello", "--json", "--seconds", "3"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=True)
    finally:
        sim.join(10)
        runner.close()
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    frames = [x for x in lines if "type" in x]
    counters = lines[-1]["counters"]
    kinds = {f["type"] for f in frames}
    assert {"ack", "hello", "temp", "heartbeat"} <= kinds
    hellos = [f for f in frames if f["type"] == "hello"]
    assert len(hellos) >= 2  # one per session: it reopened the new pty and asked again
    assert counters["reopens"] >= 1
    assert counters["last_hello"]["device_id"] == "f1"
    assert counters["last_hello"]["reset_cause"] == "power_on"
    assert counters["crc_errors"] == 0 and counters["frames_ok"] == len(frames)
    assert all(f["t"] <= 3.5 for f in frames)
