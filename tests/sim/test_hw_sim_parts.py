"""Scenario files, the simulation clock, scanner lines and the ground-truth writer."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from hw_sim.clock import SimClock, Stepper
from hw_sim.scanner import ScanSchedule, gs1_check_digit, scan_line
from hw_sim.scenario import Scenario, load_scenario
from hw_sim.truth import TruthWriter, read_truth
from xiaodian.config import ConfigError, build

DEMO = Path(__file__).resolve().parents[2] / "hw_sim" / "scenarios" / "demo.toml"


class FakeTime:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_demo_scenario_loads_with_paths_relative_to_the_file() -> None:
    s = load_scenario(DEMO)
    assert [f.id for f in s.fridges] == ["fridge-1", "fridge-2"]
    assert [sc.id for sc in s.scanners] == ["scanner-1"]
    assert s.sim.link_dir.is_absolute() and s.sim.truth.is_absolute()
    assert s.sim.link_dir.resolve() == DEMO.parent.parent.parent / "run"


def test_defaults_and_validation_name_the_key(tmp_path: Path) -> None:
    good = {"sim": {"link_dir": "run", "truth": "t.jsonl"}, "fridges": [{"id": "f1"}]}
    s = build(good, Scenario, tmp_path / "s.toml")
    f = s.fridges[0]
    assert (f.set_point_c, f.sample_interval_s, f.heartbeat_interval_s) == (3.0, 10.0, 10.0)
    assert (f.door_openings_per_hour, f.door_open_s, f.air_start_c) == (6.0, 20.0, 3.0)

    bad_speed = {**good, "sim": {**good["sim"], "speed": 0}}  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=r"sim\.speed"):
        build(bad_speed, Scenario, "s.toml")
    with pytest.raises(ConfigError, match=r"fridges\[0\]\.door_open_s"):
        build({**good, "fridges": [{"id": "f1", "door_open_s": -1}]}, Scenario, "s.toml")
    with pytest.raises(ConfigError, match=r"fridges\[0\]\.id"):
        build({**good, "fridges": [{"id": "../etc"}]}, Scenario, "s.toml")
    with pytest.raises(ConfigError, match="used more than once"):
        build({**good, "scanners": [{"id": "f1"}]}, Scenario, "s.toml")
    with pytest.raises(ConfigError, match=r"sim\.truth"):
        build({"sim": {"link_dir": "run"}, "fridges": [{"id": "f1"}]}, Scenario, "s.toml")


def test_clock_runs_at_speed_and_stepper_catches_up_with_a_bound() -> None:
    now = FakeTime()
    clock = SimClock(60.0, now)
    stepper = Stepper(clock, step_s=1.0, max_catchup_steps=100)
    assert stepper.due() == 0
    now.t += 0.5  # 30 simulated seconds
    assert clock.now() == pytest.approx(30.0)
    assert stepper.due() == 30
    stepper.done(30)
    assert stepper.real_until_next() == pytest.approx(1 / 60)
    now.t += 10.0  # 600 s behind: run 100 steps, give up 500 s and count it
    assert stepper.due() == 100
    stepper.done(100)
    assert (stepper.lag_events, stepper.lag_sim_s) == (1, 500.0)
    assert stepper.due() == 0  # caught up after the slip, not still 500 s behind
    now.t += 1.0
    assert stepper.due() == 60


def test_scan_lines_carry_aim_ids_and_valid_check_digits() -> None:
    rng = random.Random(5)
    lines = [scan_line(rng) for _ in range(400)]
    prefixes = {line[:3] for line in lines}
    assert prefixes == {"]E0", "]C1", "]Q1"}
    for line in lines:
        data = line[3:]
        if line.startswith("]E0"):
            assert len(data) == 13 and data.isdigit()
            assert data[-1] == gs1_check_digit(data[:-1])
        elif line.startswith("]C1"):
            assert data[:2] == "01" and data[16:18] == "17" and data[24:26] == "10"
            gtin = data[2:16]
            assert gtin[-1] == gs1_check_digit(gtin[:-1])
        else:
            assert data.startswith("PK1:")
    # A known EAN-13: 4006381333931.
    assert gs1_check_digit("400638133393") == "1"


def test_scan_schedule_rate_is_roughly_right() -> None:
    sched = ScanSchedule(random.Random(1), scans_per_hour=60)
    n = sum(len(sched.due(t)) for t in range(1, 100 * 3600, 10))
    assert 5400 <= n <= 6600  # 6000 expected; Poisson sd ≈ 77


def test_truth_lines_are_visible_at_once(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "truth.jsonl"
    w = TruthWriter(path)
    w.record("fridge-1", "temp", fseq=3, dev_ms=10, probes=[[0, "ok", 3.0625]])
    # Read while the writer is still open: the line must already be on disk.
    assert read_truth(path) == [
        {
            "device": "fridge-1",
            "kind": "temp",
            "fseq": 3,
            "dev_ms": 10,
            "probes": [[0, "ok", 3.0625]],
        }
    ]
    assert path.read_text().startswith('{"device": "fridge-1", "kind": "temp", "fseq": 3')
    w.close()
