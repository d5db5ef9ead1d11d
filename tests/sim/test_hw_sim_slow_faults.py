"""Slow faults and the evaporator probe in the simulator (hw_sim/slow_faults.py): declared in
scenario TOML, seeded, and doing to the cabinet what the technician's rules look for."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge import codec
from hw_sim.fridge import SimFridge
from hw_sim.scenario import FaultSpec, FridgeSpec, load_scenario

DAY = 86_400.0
STEP = 5.0


def run(spec: FridgeSpec, days: float, seed: int = 1) -> tuple[SimFridge, list[Any]]:
    """The fridge after `days`, and every record its controller made (kind, fields)."""
    sim = SimFridge(spec, seed)
    recs: list[Any] = []
    for _ in range(round(days * DAY / STEP)):
        sim.step(STEP)
        new, _lost = sim.controller.take_new_records()
        recs += [(r.kind, r.fields) for r in new]
    return sim, recs


def ends(recs: list[Any]) -> list[str]:
    return [f["reason"] for k, f in recs if k == "defrost" and not f["active"]]


def duty(recs: list[Any], since_ms: float) -> float:
    """Share of time on, from COMPRESSOR records after `since_ms`."""
    changes = [(f["dev_ms"], f["on"]) for k, f in recs if k == "compressor"
               and f["dev_ms"] >= since_ms]
    on = sum(b[0] - a[0] for a, b in itertools.pairwise(changes) if a[1])
    return on / (changes[-1][0] - changes[0][0])


def test_slow_faults_are_declared_with_a_ramp_and_grow() -> None:
    f = FaultSpec("condenser_fouling", at_s=DAY, ramp_s=10 * DAY, severity=0.5)
    assert f.active(DAY) and not f.active(DAY - 1)
    assert f.level(DAY) == 0 and f.level(6 * DAY) == pytest.approx(0.25)
    assert f.level(30 * DAY) == 0.5
    with pytest.raises(ValueError, match="ramp_s"):
        FaultSpec("refrigerant_leak", at_s=0)
    with pytest.raises(ValueError, match="for_s"):
        FaultSpec("iced_evaporator", at_s=0, for_s=60, ramp_s=DAY)
    with pytest.raises(ValueError, match="ramp_s"):
        FaultSpec("door_open", at_s=0, for_s=60, ramp_s=DAY)
    with pytest.raises(ValueError, match="probe"):
        FaultSpec("probe_intermittent", at_s=0, ramp_s=DAY)
    # The other probe faults still need a controller that classifies readings.
    with pytest.raises(ValueError, match="controller"):
        FridgeSpec("f", faults=(FaultSpec("probe_85", at_s=0, for_s=60, probe=1),))


def test_every_slow_scenario_loads() -> None:
    root = Path(__file__).resolve().parents[2] / "hw_sim" / "scenarios" / "slow"
    kinds = {f.fault for p in root.glob("*.toml") for fr in load_scenario(p).fridges
             for f in fr.faults}
    assert kinds == {"condenser_fouling", "refrigerant_leak", "iced_evaporator",
                     "probe_intermittent"}


def test_the_evaporator_probe_ends_defrosts_on_temperature() -> None:
    with_probe, recs = run(FridgeSpec("f", evaporator_probe=True, defrost_heater=True), 1.0)
    assert ends(recs) and set(ends(recs)) == {"temperature"}
    temps = [f["probes"] for k, f in recs if k == "temp"]
    assert all(len(p) == 3 and p[2][0] == 2 and p[2][1] == "ok" for p in temps)
    # The reading frames as ever (TEMP carries any number of probes: protocol §4.3).
    frame = codec.pack_temp(1000, [tuple(p) for p in temps[0]])
    assert len(codec.decode_message(codec.TEMP, frame)["probes"]) == 3
    hello = with_probe.controller._hello()
    assert hello.fields["probe_count"] == 3
    _sim, plain = run(FridgeSpec("f"), 1.0)
    assert set(ends(plain)) == {"timeout"}
    assert all(len(f["probes"]) == 2 for k, f in plain if k == "temp")


@pytest.mark.parametrize("probe", [True, False])
def test_the_reference_controller_and_the_firmware_end_defrosts_alike(probe: bool) -> None:
    """Same cabinet, same seed: the firmware (in-process) starts and ends each defrost as
    the reference controller does, for the same reason, within a probe period and a step."""
    def defrosts(controller: str) -> tuple[list[Any], list[Any]]:
        spec = FridgeSpec("f", controller=controller,  # type: ignore[arg-type]
                          evaporator_probe=probe, defrost_heater=True)
        _sim, recs = run(spec, 1.0)
        return ([(f["dev_ms"], f["active"], f["reason"]) for k, f in recs if k == "defrost"],
                [f["probes"] for k, f in recs if k == "temp"])

    ref, ref_temps = defrosts("python")
    fw, fw_temps = defrosts("firmware")
    assert [d[1:] for d in fw] == [d[1:] for d in ref]
    assert len([d for d in ref if not d[1]]) == 3 and {d[2] for d in ref if not d[1]} == (
        {"temperature"} if probe else {"timeout"})
    assert all(abs(a[0] - b[0]) <= 2_000 + STEP * 1000 for a, b in zip(ref, fw, strict=True))
    count = 3 if probe else 2
    for temps in (ref_temps, fw_temps):
        assert all(len(p) == count for p in temps)
        assert not probe or all(p[2][:2] == [2, "ok"] for p in temps)


@pytest.mark.parametrize("controller", ["python", "firmware"])
def test_an_iced_evaporator_makes_defrosts_run_out_their_timer(controller: str) -> None:
    spec = FridgeSpec("f", controller=controller,  # type: ignore[arg-type]
                      evaporator_probe=True, defrost_heater=True, faults=(
        FaultSpec("iced_evaporator", at_s=0.5 * DAY, ramp_s=2 * DAY),))
    sim, recs = run(spec, 4.0)
    e = ends(recs)
    assert e[:2] == ["temperature", "temperature"] and e[-3:] == ["timeout"] * 3, e
    assert sim.evaporator.ice_j > 50_000


@pytest.mark.parametrize("fault", ["condenser_fouling", "refrigerant_leak"])
def test_lost_capacity_raises_the_duty_cycle(fault: str) -> None:
    spec = FridgeSpec("f", faults=(FaultSpec(fault, at_s=0, ramp_s=3600, severity=0.4),))
    _s, sick = run(spec, 1.0)
    _s, healthy = run(FridgeSpec("f"), 1.0)
    assert duty(sick, 2 * 3600e3) > 1.1 * duty(healthy, 2 * 3600e3)


def test_an_intermittent_probe_drops_out_now_and_then_deterministically() -> None:
    spec = FridgeSpec("f", faults=(
        FaultSpec("probe_intermittent", probe=1, at_s=0, ramp_s=DAY, severity=0.5),))
    _s, a = run(spec, 1.0)
    _s, b = run(spec, 1.0)
    assert a == b  # same seed, same dropouts
    status = [f["probes"][1][1] for k, f in a if k == "temp"]
    missing = status.count("missing")
    assert 0 < missing < 0.05 * len(status)
    assert all(f["probes"][0][1] == "ok" for k, f in a if k == "temp")  # the other probe
    _s, c = run(spec, 1.0, seed=2)
    assert c != a


def test_night_and_weekend_door_traffic() -> None:
    spec = FridgeSpec("f", door_openings_per_hour=10, door_night_factor=0.1,
                      door_weekend_factor=2.0)
    _s, recs = run(spec, 7.0)  # ~6 s
    opens = [f["dev_ms"] / 1000 for k, f in recs if k == "door" and f["open"]]
    night = sum(1 for t in opens if not 7 <= t % DAY / 3600 < 22)
    weekend = sum(1 for t in opens if t // DAY % 7 >= 5)
    assert night < 0.1 * len(opens)  # 9 of 24 hours at a tenth of the rate (6 %)
    assert weekend > 0.35 * len(opens)  # 2 of 7 days at twice the rate
