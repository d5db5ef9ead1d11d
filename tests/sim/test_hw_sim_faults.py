"""Fault injection: line noise and a pulled cable, against a host that behaves like the edge
agent, on real ptys. Nothing the device made may go missing except what ground truth says
is still on the device or pushed out of its log."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import serial

from firmware_bridge import codec
from hw_sim.faults import FaultTimeline, LineNoise
from hw_sim.fridge import SimFridge
from hw_sim.runner import Runner
from hw_sim.scenario import FaultSpec, FridgeSpec, Scenario, load_scenario
from hw_sim.truth import read_truth
from xiaodian.config import ConfigError, build

FAULTS = Path(__file__).resolve().parents[2] / "hw_sim" / "scenarios" / "faults.toml"
LOGGED = {codec.TYPE_NAMES[t] for t in codec.LOGGED_TYPES}
Key = tuple[str, int, int]


class EdgeLikeHost(threading.Thread):
    """What the edge agent's FridgeReader does, minus the database: open the port (again,
    with back-off, when it vanishes), send GET_HELLO (again if no HELLO comes), keep records
    only after this connection's HELLO, and RECEIPT each one under the HELLO's boot count."""

    def __init__(self, link: Path, hello_retry_s: float = 0.2) -> None:
        super().__init__(name=f"host-{link.name}", daemon=True)
        self.link = link
        self.hello_retry_s = hello_retry_s
        self.decoder = codec.FrameDecoder()  # one for the life of the host, as in the agent
        self.records: set[Key] = set()
        self.retransmissions = 0
        self.opens = 0
        self.vanished = 0  # the open port failed under us
        self.hellos = 0
        self.before_hello = 0
        self._seq = 0
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
        assert not self.is_alive()

    def run(self) -> None:
        delay = 0.01
        while not self._halt.is_set():
            try:
                ser = serial.Serial(str(self.link), 115200, timeout=0.02)
            except (serial.SerialException, OSError):
                self._halt.wait(delay)
                delay = min(delay * 2, 0.2)
                continue
            self.opens += 1
            delay = 0.01
            try:
                with ser:
                    self._session(ser)
            except (serial.SerialException, OSError):
                self.vanished += 1

    def _write(self, ser: serial.Serial, msg_type: int, payload: bytes, flags: int = 0) -> None:
        self._seq = (self._seq + 1) & 0xFFFF
        ser.write(codec.encode_frame(msg_type, self._seq, payload, flags))

    def _session(self, ser: serial.Serial) -> None:
        boot: int | None = None
        asked = 0.0
        while not self._halt.is_set():
            if boot is None and time.monotonic() - asked > self.hello_retry_s:
                ser.write(b"\x00")  # ends any half frame the device holds
                self._write(ser, codec.GET_HELLO, b"", codec.ACK_REQUESTED)
                asked = time.monotonic()
            data = ser.read(1)
            if data and ser.in_waiting:
                data += ser.read(ser.in_waiting)
            seqs: list[int] = []
            for frame in self.decoder.feed(data):
                msg = codec.decode_message(frame.type, frame.payload)
                if msg is None:
                    continue
                if frame.type == codec.HELLO:
                    boot = int(msg["boot_count"])
                    self.hellos += 1
                elif frame.type in codec.LOGGED_TYPES and not frame.flags & codec.REPLY:
                    if boot is None:
                        self.before_hello += 1
                        continue
                    self.records.add((msg["type"], frame.seq, int(msg["dev_ms"])))
                    self.retransmissions += bool(frame.flags & codec.RETRANSMISSION)
                    seqs.append(frame.seq)
            for i in range(0, len(seqs), codec.MAX_RECEIPT_SEQS):
                assert boot is not None
                body = codec.pack_receipt(boot, seqs[i : i + codec.MAX_RECEIPT_SEQS])
                self._write(ser, codec.RECEIPT, body)


def make_scenario(tmp_path: Path, speed: float, fridges: list[dict[str, Any]]) -> Scenario:
    raw = {
        "sim": {"seed": 5, "speed": speed, "link_dir": "run", "truth": "run/truth.jsonl"},
        "fridges": fridges,
    }
    return build(raw, Scenario, tmp_path / "scenario.toml")


def run_with_hosts(scenario: Scenario, real_s: float) -> tuple[Runner, dict[str, EdgeLikeHost]]:
    runner = Runner(scenario)
    hosts = {f.id: EdgeLikeHost(scenario.sim.link_dir / f.id) for f in scenario.fridges}
    try:
        for h in hosts.values():
            h.start()
        runner.run(real_s)
        runner.flush()
    finally:
        for h in hosts.values():
            h.stop()
        runner.close()
    return runner, hosts


@pytest.fixture
def faulty_run(tmp_path: Path) -> Iterator[tuple[Runner, dict[str, EdgeLikeHost]]]:
    scenario = make_scenario(
        tmp_path,
        speed=600.0,
        fridges=[
            {
                "id": "unplugged",
                "door_openings_per_hour": 30,
                "line_noise_ber": 1e-4,
                "faults": [{"fault": "unplug", "at_s": 120, "for_s": 40, "every_s": 300}],
            },
            {
                "id": "noisy",
                "door_openings_per_hour": 30,
                "line_noise_ber": 1e-3,
                "drop_byte_rate": 1e-4,
                "faults": [
                    {"fault": "noise", "at_s": 600, "for_s": 600, "ber": 5e-3},
                    {"fault": "unplug", "at_s": 1500, "for_s": 30},
                ],
            },
        ],
    )
    yield run_with_hosts(scenario, real_s=3.5)  # ~35 simulated minutes


def by_device(truth: list[dict[str, Any]], device: str) -> list[dict[str, Any]]:
    return [t for t in truth if t["device"] == device]


def test_every_record_reaches_the_host_through_noise_and_unplugs(
    faulty_run: tuple[Runner, dict[str, EdgeLikeHost]],
) -> None:
    runner, hosts = faulty_run
    truth = read_truth(runner.scenario.sim.truth)
    for device, host in hosts.items():
        mine = by_device(truth, device)
        made = {
            (t["kind"], t["fseq"], t["dev_ms"])
            for t in mine
            if t["kind"] in LOGGED and not t.get("state_report")
        }
        held = {
            (t["held"], t["fseq"], t["dev_ms"]) for t in mine if t["kind"] == "on_device_at_exit"
        }
        lost = {(t["lost"], t["fseq"], t["dev_ms"]) for t in mine if t["kind"] == "log_overflow"}
        assert len(made) > 200
        assert not lost  # 35 minutes fit in the log many times over
        # Exactly what was made, nothing invented by a corrupted frame.
        assert host.records == made - held - lost, device
        assert len(held) < len(made) // 10

    # The pulled cable: the host saw the port fail under it and opened it again each time.
    unplugged = hosts["unplugged"]
    faults = [t for t in by_device(truth, "unplugged") if t["kind"] == "fault"]
    starts = [t for t in faults if t["fault"] == "unplug" and t["state"] == "start"]
    assert [t["dev_ms"] for t in starts][:3] == [120_000, 420_000, 720_000]
    assert all(isinstance(t["wall"], float) for t in faults)
    port = runner.devices[0].port
    assert port.stats.unplugs == len(starts) >= 6
    assert unplugged.vanished >= len(starts) - 1  # it may be away when one begins
    assert unplugged.opens >= unplugged.vanished + 1
    assert unplugged.hellos >= unplugged.opens - 1
    assert unplugged.retransmissions > 0  # logged during the unplug, sent after the HELLO

    # The noise really happened: the host's decoder threw frames away, the device resent.
    noisy = hosts["noisy"]
    stats = noisy.decoder.stats()
    assert stats["crc_errors"] + stats["cobs_errors"] > 20
    assert noisy.retransmissions > 20
    noisy_faults = [t for t in by_device(truth, "noisy") if t["kind"] == "fault"]
    window = [t for t in noisy_faults if t["fault"] == "noise"]
    assert [(t["state"], t["dev_ms"], t["ber"]) for t in window] == [
        ("start", 600_000, 5e-3),
        ("end", 1_200_000, 5e-3),
    ]
    base = [t for t in noisy_faults if t["fault"] == "line_noise"]
    assert [t["state"] for t in base] == ["start", "end"]
    assert base[-1]["bits_flipped"] > 100 and base[-1]["bytes_dropped"] > 0


def readings(truth_path: Path, device: str) -> dict[tuple[int, str], Any]:
    """What the fridge measured and did, by (dev_ms, kind): everything but sequence numbers."""
    return {
        (t["dev_ms"], t["kind"]): {k: v for k, v in t.items() if k not in ("device", "fseq")}
        for t in read_truth(truth_path)
        if t["device"] == device and t["kind"] in LOGGED and not t.get("state_report")
    }


def test_line_faults_never_change_the_physics(tmp_path: Path) -> None:
    fridge = {"id": "fridge-1", "door_openings_per_hour": 30}
    faulty = {
        **fridge,
        "line_noise_ber": 3e-3,
        "drop_byte_rate": 1e-3,
        "faults": [{"fault": "unplug", "at_s": 100, "for_s": 50, "every_s": 200}],
    }
    clean_run, _ = run_with_hosts(make_scenario(tmp_path / "clean", 600.0, [fridge]), 1.0)
    noisy_run, hosts = run_with_hosts(make_scenario(tmp_path / "noisy", 600.0, [faulty]), 1.0)
    assert hosts["fridge-1"].decoder.stats()["crc_errors"] > 0
    clean = readings(clean_run.scenario.sim.truth, "fridge-1")
    noisy = readings(noisy_run.scenario.sim.truth, "fridge-1")
    common = sorted(set(clean) & set(noisy))
    assert len(common) > 40
    # Sequence numbers differ (link chatter takes some); what the fridge measured does not.
    assert [clean[k] for k in common] == [noisy[k] for k in common]
    assert {k for k in clean if k <= common[-1]} == {k for k in noisy if k <= common[-1]}
    assert {k[1] for k in common} >= {"temp", "door", "compressor"}


def test_line_noise_hits_the_configured_rates_and_is_seeded() -> None:
    data = bytes(range(256)) * 400  # 819 200 bits
    a = LineNoise(random.Random("x"))
    out = a.apply(data, 1e-3, 0.0)
    assert len(out) == len(data)
    flipped = sum(bin(x ^ y).count("1") for x, y in zip(data, out, strict=True))
    assert flipped == a.bits_flipped and 650 < flipped < 990  # mean 819, sd ~29
    b = LineNoise(random.Random("x"))
    chunks = [b.apply(data[i : i + 37], 1e-3, 0.0) for i in range(0, len(data), 37)]
    assert b"".join(chunks) == out  # a continuous line: how writes are cut does not matter

    d = LineNoise(random.Random("y"))
    kept = d.apply(data, 0.0, 1e-2)
    assert len(kept) == len(data) - d.bytes_dropped and 900 < d.bytes_dropped < 1150  # mean 1024
    assert LineNoise(random.Random("z")).apply(data, 0.0, 0.0) == data


def test_fault_windows_repeat_and_hold_the_door_and_the_compressor() -> None:
    spec = FaultSpec(fault="unplug", at_s=600, for_s=60, every_s=600)
    assert [spec.active(t) for t in (599, 600, 659, 660, 1199, 1200, 1260)] == [
        False, True, True, False, False, True, False,
    ]  # fmt: skip
    timeline = FaultTimeline((spec,))
    changes = [(t, tr.started) for t in range(0, 1300, 10) for tr in timeline.advance(t)]
    assert changes == [(600, True), (660, False), (1200, True), (1260, False)]

    def fridge(*faults: dict[str, Any]) -> SimFridge:
        raw = {"id": "f", "door_openings_per_hour": 0, "defrost_every_h": 0, "faults": list(faults)}
        spec = build(raw, FridgeSpec, "s.toml")
        return SimFridge(spec, seed=1)

    held = fridge({"fault": "door_open", "at_s": 100, "for_s": 300})
    for _ in range(600):
        held.step(1.0)
    made, _ = held.controller.take_new_records()  # no host attached: records are only logged
    doors = [(f.fields["dev_ms"], f.fields["open"]) for f in made if f.kind == "door"]
    assert doors == [(100_000, True), (400_000, False)]

    broken = fridge({"fault": "compressor_fail", "at_s": 600, "for_s": 3000})
    healthy = fridge()
    for _ in range(3600):
        broken.step(1.0)
        healthy.step(1.0)
    # The relay still clicks (the controller sees a warm cabinet and runs the compressor),
    # but nothing cools: the cabinet drifts warm while the healthy twin holds its band.
    assert broken.controller.compressor_on
    assert broken.thermal.air_c > healthy.thermal.air_c + 2
    assert healthy.thermal.air_c < 4.5


def test_power_cut_reports_mains_and_stops_the_compressor() -> None:
    spec = build(
        {
            "id": "f",
            "door_openings_per_hour": 0,
            "defrost_every_h": 0,
            "initial_air_c": 6.0,  # warm: the compressor is running when the power goes
            "faults": [{"fault": "power_cut", "at_s": 120, "for_s": 1200}],
        },
        FridgeSpec,
        "s.toml",
    )
    sim = SimFridge(spec, seed=1)
    air = {}
    for _ in range(1500):
        sim.step(1.0)
        air[round(sim.time_s)] = sim.thermal.air_c
    made, _ = sim.controller.take_new_records()
    events = [
        (
            f.kind,
            f.fields["dev_ms"],
            f.fields.get("mains", f.fields.get("on")),
            f.fields.get("reason"),
        )
        for f in made
        if f.kind in ("power", "compressor")
    ]
    assert events[:4] == [
        ("power", 1_000, True, None),  # once after boot
        ("compressor", 1_000, True, "thermostat"),
        ("power", 120_000, False, None),
        ("compressor", 120_000, False, "power"),
    ]
    assert events[4][:3] == ("power", 1_320_000, True)
    assert all(e[0] == "power" or e[1] >= 1_320_000 for e in events[4:])  # no start meanwhile
    assert air[1320] > air[120]  # no cooling on backup power: the cabinet drifts warm
    assert sim.controller.config.power_monitor


def test_bad_fault_entries_name_the_key(tmp_path: Path) -> None:
    def fridge(**kw: Any) -> dict[str, Any]:
        return {"sim": {"link_dir": "run", "truth": "t.jsonl"}, "fridges": [{"id": "f", **kw}]}

    with pytest.raises(ConfigError, match=r"fridges\[0\]\.line_noise_ber"):
        build(fridge(line_noise_ber=1.5), Scenario, "s.toml")
    with pytest.raises(ConfigError, match=r"fridges\[0\]\.faults\[0\]\.fault"):
        build(fridge(faults=[{"fault": "gremlins", "at_s": 1, "for_s": 1}]), Scenario, "s.toml")
    with pytest.raises(ConfigError, match=r"faults\[0\]\.every_s"):
        build(fridge(faults=[{"fault": "unplug", "at_s": 1, "for_s": 60, "every_s": 30}]),
              Scenario, "s.toml")  # fmt: skip
    with pytest.raises(ConfigError, match=r"faults\[0\]\.ber"):
        build(fridge(faults=[{"fault": "unplug", "at_s": 1, "for_s": 6, "ber": 0.1}]),
              Scenario, "s.toml")  # fmt: skip


def test_the_shipped_faults_scenario_loads() -> None:
    s = load_scenario(FAULTS)
    unplug, noisy = s.fridges
    assert [f.fault for f in unplug.faults] == ["unplug"]
    assert (unplug.faults[0].every_s, unplug.faults[0].for_s) == (600, 60)
    assert noisy.line_noise_ber == 1e-4
    assert [(f.fault, f.ber) for f in noisy.faults] == [("noise", 1e-3)]
