"""The MicroPython firmware running in-process under CPython against the hardware fakes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import serial

from devstack.testkit.wait import wait
from firmware_bridge import codec
from hw_sim.controller import OutFrame
from hw_sim.fakes.simboard import PROBE_CRC, PROBE_MISSING, PROBE_POWER_ON
from hw_sim.firmware_host import FirmwareController
from hw_sim.fridge import SimFridge
from hw_sim.runner import Runner
from hw_sim.scenario import FridgeSpec, Scenario
from xiaodian.config import build

SETTINGS: dict[str, Any] = {
    "device_id": "fridge-1",
    "sample_interval_s": 10,
    "heartbeat_interval_s": 10,
    "defrost_every_min": 0,
    "power_monitor": True,
}
C = 16  # raw counts per °C


class Bench:
    """One firmware board on a 1-s clock, with the host's side of the wire decoded."""

    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        self.flash = tmp_path / "flash"
        self.c = FirmwareController("fridge-1", {**SETTINGS, **settings}, self.flash)
        self.ms = 0
        self.air, self.product, self.door, self.mains = 3 * C, 3 * C, False, True
        self.seq = 100
        self.frames: list[OutFrame] = self.c.tick(0, self.air, self.product, False)

    def run(self, seconds: float) -> list[OutFrame]:
        out = []
        for _ in range(round(seconds)):
            self.ms += 1000
            out += self.c.tick(self.ms, self.air, self.product, self.door, self.mains)
        self.frames += out
        return out

    def send(self, msg_type: int, payload: bytes = b"", seq: int | None = None) -> list[OutFrame]:
        if seq is None:
            self.seq += 1
            seq = self.seq
        out = self.c.receive(codec.encode_frame(msg_type, seq, payload, codec.ACK_REQUESTED))
        self.frames += out
        return out

    def attach(self) -> list[OutFrame]:
        return self.send(codec.GET_HELLO)

    def receipt_all(self, frames: list[OutFrame]) -> None:
        seqs = sorted({f.seq for f in frames if f.logged})
        for i in range(0, len(seqs), 100):
            payload = codec.pack_receipt(self.c.boot_count, seqs[i : i + 100])
            self.c.receive(codec.encode_frame(codec.RECEIPT, 1, payload))


def kinds(frames: list[OutFrame]) -> list[str]:
    return [f.kind for f in frames]


def acks(frames: list[OutFrame]) -> list[tuple[int, str]]:
    return [(f.fields["acked_seq"], f.fields["status"]) for f in frames if f.kind == "ack"]


def test_boot_hello_then_session(tmp_path: Path) -> None:
    b = Bench(tmp_path)
    assert kinds(b.frames) == ["hello"]  # nothing else before a host says GET_HELLO
    hello = b.frames[0]
    assert hello.seq == 0 and hello.fields["reset_cause"] == "power_on"
    assert hello.fields["boot_count"] == 1 and hello.fields["capabilities"] == 0x0F
    b.run(15)
    out = b.attach()
    assert kinds(out)[:5] == ["ack", "hello", "door", "compressor", "defrost"]
    assert [f.state_report for f in out[2:5]] == [True] * 3
    # Then every record made so far, flagged as a retransmission.
    records = out[5:]
    assert {"power", "temp"} <= set(kinds(records)) and all(f.logged for f in records)
    assert all(codec.FrameDecoder().feed(f.data)[0].flags & codec.RETRANSMISSION for f in records)
    temp = next(f for f in records if f.kind == "temp")
    assert temp.fields["dev_ms"] == 10750  # conversion finished 750 ms after the start
    assert temp.fields["probes"] == [[0, "ok", 3.0], [1, "ok", 3.0]]


def test_records_resent_until_receipted(tmp_path: Path) -> None:
    b = Bench(tmp_path)
    b.attach()
    out = b.run(12)
    temp = [f for f in out if f.kind == "temp"]
    assert len(temp) == 1 and temp[0].logged
    assert any(f.kind == "heartbeat" for f in out)
    again = b.run(30)
    assert temp[0].seq in {f.seq for f in again if f.kind == "temp"}  # not receipted: resent
    b.receipt_all(b.frames)
    assert len(b.c.log) == 0
    later = b.run(31)
    assert temp[0].seq not in {f.seq for f in later}


def test_command_acked_and_executed_once(tmp_path: Path) -> None:
    b = Bench(tmp_path)
    b.attach()
    first = b.send(codec.SET_POINT, codec.pack_set_point(55), seq=7)
    retry = b.send(codec.SET_POINT, codec.pack_set_point(55), seq=7)
    assert acks(first) == [(7, "ok")] and acks(retry) == [(7, "duplicate")]
    assert acks(b.send(codec.SET_POINT, codec.pack_set_point(999))) == [(b.seq, "bad_payload")]
    assert acks(b.send(codec.UNLOCK, codec.pack_unlock(5))) == [(b.seq, "failed")]  # no lock
    assert acks(b.send(codec.TARE, codec.pack_tare(0))) == [(b.seq, "bad_payload")]  # no lanes
    assert acks(b.send(0x5A)) == [(b.seq, "unknown_type")]
    assert json.loads((b.flash / "config.json").read_text())["set_point_tenths"] == 55


def test_defrost_now_and_busy(tmp_path: Path) -> None:
    b = Bench(tmp_path)
    b.attach()
    b.air = 6 * C
    out = b.run(4)  # the next probe conversion (every 2 s) sees it
    assert [f.fields["reason"] for f in out if f.kind == "compressor"] == ["thermostat"]
    out = b.send(codec.DEFROST_NOW, codec.pack_defrost_now(1))
    assert acks(out) == [(b.seq, "ok")]
    assert [(f.kind, f.fields.get("reason")) for f in out if f.logged] == [
        ("defrost", "command"),
        ("compressor", "defrost_start"),
    ]
    assert not b.c.compressor_on
    assert acks(b.send(codec.DEFROST_NOW, codec.pack_defrost_now(0))) == [(b.seq, "busy")]
    out = b.run(61)
    assert ("defrost", "timeout") in [(f.kind, f.fields.get("reason")) for f in out]


def test_reboot_command_keeps_config_and_counts_boots(tmp_path: Path) -> None:
    b = Bench(tmp_path)
    b.attach()
    b.send(codec.SET_POINT, codec.pack_set_point(-20))
    b.run(12)  # a TEMP record, never receipted
    out = b.send(codec.REBOOT)
    assert acks(out) == [(b.seq, "ok")]
    out += b.run(1)
    hello = [f for f in out if f.kind == "hello"]
    assert hello and hello[-1].seq == 0 and hello[-1].fields["reset_cause"] == "soft"
    assert hello[-1].fields["boot_count"] == 2
    assert b.c.host.ctl.thermostat.set_c == -2.0  # persisted set point survived
    _, lost = b.c.take_new_records()
    assert lost and all(f.fields["cause"] == "reboot" for f in lost)  # RAM log is gone


def test_watchdog_resets_when_a_task_dies(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    b = Bench(tmp_path)
    b.c.board.bus_error = RuntimeError("1-Wire driver crashed")
    out = b.run(5)
    assert not [f for f in out if f.kind == "hello"]  # dead task: the supervisor still waits
    b.c.board.bus_error = None
    out = b.run(30)
    hello = [f for f in out if f.kind == "hello"]
    assert len(hello) == 1 and hello[0].fields["reset_cause"] == "watchdog"
    assert b.c.host.task_deaths == ["probes"]
    assert "'probes' starved" in caplog.text


def test_probe_faults_reach_the_temp_record(tmp_path: Path) -> None:
    b = Bench(tmp_path)
    b.attach()
    b.c.board.probe_fault = [PROBE_POWER_ON, PROBE_CRC]
    out = b.run(11)  # TEMP at 10.75 s
    temp = [f for f in out if f.kind == "temp"][-1]
    assert temp.fields["probes"] == [[0, "suspect", 85.0], [1, "crc", None]]
    b.c.board.probe_fault = [None, PROBE_MISSING]
    out = b.run(10)
    temp = [f for f in out if f.kind == "temp"][-1]
    assert temp.fields["probes"] == [[0, "ok", 3.0], [1, "missing", None]]
    beat = [f for f in out if f.kind == "heartbeat"][-1]
    assert beat.fields["probe_errors"] >= 2


def test_door_and_mains_events(tmp_path: Path) -> None:
    b = Bench(tmp_path)
    b.attach()
    b.air = 6 * C
    b.run(4)
    b.door = True
    b.run(3)
    b.door, b.mains = False, False
    out = b.run(2)
    rec = [(f.kind, f.fields) for f in b.frames if f.logged and f.kind in ("door", "power")]
    doors = [r[1] for r in rec if r[0] == "door"]
    assert [d["open"] for d in doors] == [True, False]
    assert 2500 <= doors[1]["duration_ms"] <= 3500
    powers = [r[1] for r in rec if r[0] == "power"]
    assert powers[-1]["mains"] is False and powers[-1]["backup_mv"] == 3700
    assert [f.fields["reason"] for f in out if f.kind == "compressor"] == ["power"]
    assert not b.c.compressor_on


def test_lock_and_load_cells(tmp_path: Path) -> None:
    b = Bench(tmp_path, lock=True, lanes=1)
    pins = b.c.host.fw["pins"]
    assert b.c.board.pins[pins.LOCK] == 1
    assert b.frames[0].fields["capabilities"] & (codec.CAP_LOCK | codec.CAP_LOAD_CELLS) == 0x30
    b.attach()
    assert acks(b.send(codec.UNLOCK, codec.pack_unlock(30))) == [(b.seq, "ok")]
    assert b.c.board.pins[pins.LOCK] == 0
    b.door = True
    b.run(2)
    b.door = False
    b.run(2)
    assert b.c.board.pins[pins.LOCK] == 1  # re-locked when the door closed
    b.c.board.lane_raw = [1000]
    b.run(2)
    assert acks(b.send(codec.TARE, codec.pack_tare(0))) == [(b.seq, "ok")]
    b.c.board.lane_raw = [5000]
    b.run(2)
    assert acks(b.send(codec.CALIBRATE, codec.pack_calibrate(0, 500))) == [(b.seq, "ok")]
    lane = b.c.host.ctl.lanes[0]
    assert lane.grams() == pytest.approx(500) and lane.stable()
    cfg = json.loads((b.flash / "config.json").read_text())
    assert cfg["lane_offsets"] == [1000] and cfg["lane_scales"] == [8.0]


def test_simfridge_runs_the_firmware_with_physics() -> None:
    spec = FridgeSpec(
        id="fridge-1", controller="firmware", initial_air_c=8.0, door_openings_per_hour=0
    )
    fridge = SimFridge(spec, seed=1)
    fridge.controller.receive(codec.encode_frame(codec.GET_HELLO, 1, b"", codec.ACK_REQUESTED))
    comp = []
    for _ in range(3600):
        comp += [f for f in fridge.step(1.0) if f.kind == "compressor" and f.logged]
    assert comp[0].fields["on"] and comp[0].fields["reason"] == "thermostat"
    assert any(not f.fields["on"] for f in comp)  # it cooled to the lower band edge
    assert 1.0 < fridge.thermal.air_c < 5.5


def scenario(tmp_path: Path) -> Scenario:
    raw = {
        "sim": {"seed": 3, "speed": 200.0, "link_dir": "run", "truth": "run/truth.jsonl"},
        "fridges": [{"id": "fridge-1", "controller": "firmware", "door_openings_per_hour": 30}],
    }
    return build(raw, Scenario, tmp_path / "scenario.toml")


def test_firmware_fridge_on_a_pty_with_pyserial(tmp_path: Path) -> None:
    r = Runner(scenario(tmp_path))
    try:
        link = r.scenario.sim.link_dir / "fridge-1"
        port = serial.Serial(str(link), 115200, timeout=0)
        port.write(codec.encode_frame(codec.GET_HELLO, 1, b"", codec.ACK_REQUESTED))
        dec = codec.FrameDecoder()
        got: list[codec.Frame] = []
        def a_temp() -> bool:
            r.run(for_real_s=0.05)
            got.extend(dec.feed(port.read(4096)))
            return any(f.type == codec.TEMP for f in got)

        wait(a_temp, 60, "a TEMP frame from the firmware", interval=0)
        types = [f.type for f in got]
        assert codec.HELLO in types and codec.TEMP in types
        hello = next(codec.decode_message(f.type, f.payload) for f in got if f.type == codec.HELLO)
        assert hello is not None and hello["firmware"] == [1, 0, 0]
        seqs = [f.seq for f in got if f.type in codec.LOGGED_TYPES and not f.flags & codec.REPLY]
        port.write(codec.encode_frame(codec.RECEIPT, 2, codec.pack_receipt(1, seqs[:100])))
        def receipted() -> bool:
            r.run(for_real_s=0.05)
            return not set(seqs[:100]) & set(r.devices[0].sim.controller.log)  # type: ignore[attr-defined]

        wait(receipted, 30, "the receipted records gone from the firmware's log", interval=0)
        assert not set(seqs[:100]) & set(r.devices[0].sim.controller.log)  # type: ignore[attr-defined]
        port.close()
    finally:
        r.close()
