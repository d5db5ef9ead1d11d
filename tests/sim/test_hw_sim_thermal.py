"""The lumped thermal model, alone and under the simulated controller.

Figures below are derived from the typical parameters in docs/design.md: Ca 60 kJ/K, Cp 400 kJ/K,
UAw 5 W/K, UAp 40 W/K, Qc 300 W, UAdoor 60 W/K, τ 15 min, ambient 28 °C, set point 3 °C.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from hw_sim.fridge import SimFridge
from hw_sim.hardware import ScriptedDoor
from hw_sim.scenario import FridgeSpec
from hw_sim.thermal import FridgeThermal, ThermalParams

P = ThermalParams()
SET = 3.0
BAND_TOP = SET + 1.0  # thermostat: on at set + 1, off at set − 1 (2 °C hysteresis)


def quiet_fridge(seed: int = 1, **overrides: Any) -> SimFridge:
    """No customers, no defrost: only the thermostat and the wall leak."""
    fields: dict[str, Any] = {"door_openings_per_hour": 0, "defrost_every_h": 0}
    fields.update(overrides)
    return SimFridge(FridgeSpec(id="f", set_point_c=SET, ambient_c=28.0, **fields), seed)


def run(f: SimFridge, seconds: int) -> None:
    for _ in range(seconds):
        f.step(1.0)


def air_reading(f: SimFridge) -> float:
    """The thermostat's view of the air, without noise (true air + the probe's offset)."""
    return f.thermal.air_c + f.air_probe.offset_c


def test_integration_is_stable_and_accurate_at_large_steps() -> None:
    # Door open, compressor on: the stiffest case (fastest time constant Ca/ΣUA ≈ 570 s).
    fine = FridgeThermal(P, 28.0, 3.0, 3.0)
    coarse = FridgeThermal(P, 28.0, 3.0, 3.0)
    huge = FridgeThermal(P, 28.0, 3.0, 3.0)
    for _ in range(3600):
        fine.step(1.0, True, True, False)
    for _ in range(360):
        coarse.step(10.0, True, True, False)
    for _ in range(6):
        huge.step(600.0, True, True, False)
    assert coarse.air_c == pytest.approx(fine.air_c, abs=0.05)
    assert coarse.product_c == pytest.approx(fine.product_c, abs=0.01)
    # Far beyond explicit Euler's limit (2·Ca/ΣUA ≈ 1140 s) it stays within physical bounds.
    assert 3.0 <= huge.air_c <= 28.0 and 3.0 <= huge.product_c <= 28.0


def test_without_cooling_everything_relaxes_to_ambient() -> None:
    t = FridgeThermal(P, 28.0, 3.0, 3.0)
    previous = t.state
    # Overall time constant (Ca+Cp)/UAw ≈ 25 h: a week (60 s steps) is ~6.6 of them.
    for _ in range(7 * 24 * 60):
        t.step(60.0, False, False, False)
        # Monotone approach: no overshoot or oscillation.
        assert previous.air_c <= t.air_c <= 28.0
        assert previous.product_c <= t.product_c <= 28.0
        previous = t.state
    assert t.air_c == pytest.approx(28.0, abs=0.5)


def test_steady_state_duty_cycle_matches_the_heat_leak() -> None:
    # In steady state the compressor removes what leaks in: duty = UAw·(Tamb − T̄air)/Qc.
    # The thermostat keeps the air *reading* in [2, 4] °C and a probe reads up to ±0.5 °C
    # off, so the true mean air lies in [1.5, 4.5] °C and the duty in
    # [5·(28−4.5)/300, 5·(28−1.5)/300] = [0.392, 0.442]. The product only exchanges heat
    # with the air, so once settled it adds nothing on average.
    f = quiet_fridge()
    run(f, 24 * 3600)  # settle
    on_edges: list[int] = []
    on_seconds: list[int] = []
    was_on = f.controller.compressor_on
    for t in range(24 * 3600):
        f.step(1.0)
        on = f.controller.compressor_on
        if on and not was_on:
            on_edges.append(t)
        on_seconds.append(int(on))
        was_on = on
    # Whole cycles only, from one start to another, so a partial cycle does not bias it.
    first, last = on_edges[0], on_edges[-1]
    duty = sum(on_seconds[first:last]) / (last - first)
    assert 5 * (28 - 4.5) / 300 <= duty <= 5 * (28 - 1.5) / 300, duty
    # Cycle length: ~2 K of band on 60 kJ/K, cooled at ~175 W and warmed at ~125 W → ~27 min.
    period_min = (last - first) / (len(on_edges) - 1) / 60
    assert 15 <= period_min <= 40, period_min


def test_product_stays_in_a_sane_band_over_a_day_with_customers_and_defrost() -> None:
    f = SimFridge(FridgeSpec(id="f", set_point_c=SET, ambient_c=28.0), seed=3)
    product: list[float] = []
    probe: list[float] = []
    for _ in range(24 * 3600):
        f.step(1.0)
        product.append(f.thermal.product_c)
        probe.append(f.thermal.probe_c)
    # 400 kJ/K of product barely follows the 2 °C air swing, door openings or a defrost.
    assert min(product) >= SET - 1.5 and max(product) <= SET + 1.5
    # A healthy fridge never trips the 5 °C "warm" rule on its buffered probe.
    assert max(probe) < 5.0


def _at_compressor_start(f: SimFridge) -> None:
    was_on = f.controller.compressor_on
    while True:
        f.step(1.0)
        if f.controller.compressor_on and not was_on:
            return
        was_on = f.controller.compressor_on


def test_air_recovers_after_a_one_minute_door_opening_and_product_barely_moves() -> None:
    base = quiet_fridge()
    run(base, 6 * 3600)
    _at_compressor_start(base)  # a known phase of the cycle to start the sweep from
    recoveries: list[int] = []
    peak_excess = 0.0
    for offset in range(0, 28 * 60, 120):  # door opened at 14 phases across one cycle
        f = copy.deepcopy(base)
        run(f, offset)
        probe0, product0 = f.thermal.probe_c, f.thermal.product_c
        f.door = ScriptedDoor([(f.time_s, 60.0)])
        run(f, 60)
        # The buffered probe (τ 15 min) sees a fraction of the air's jump; the product less.
        assert abs(f.thermal.probe_c - probe0) < 0.2
        assert abs(f.thermal.product_c - product0) < 0.02
        peak_excess = max(peak_excess, air_reading(f) - BAND_TOP)
        waited = 0
        while air_reading(f) > BAND_TOP:
            f.step(1.0)
            waited += 1
            assert waited < 3600, "air never came back into the thermostat band"
        recoveries.append(waited)
    # The door let ~60 W/K·25 K for 60 s = 90 kJ in: up to ~1.5 K on 60 kJ/K of air.
    assert peak_excess > 0.5, "the test should push the air out of the band"
    # Worst case ~1.5 K of excess pulled down at ≥ Qc − leak ≈ 175 W: 1.5·60 kJ/175 W ≈ 9 min.
    assert max(recoveries) <= 10 * 60, recoveries


@pytest.mark.parametrize(
    ("heater", "upper_k"),
    [
        # Off-cycle: compressor off 25 min; the leak alone can add at most
        # UAw·(28−2)·1500 s / Ca = 3.25 K (less: the product soaks some up).
        (False, 3.25),
        # Electric: + 200 W·1500 s / Ca = 5 K more at most.
        (True, 8.25),
    ],
)
def test_defrost_warms_the_air_by_a_bounded_amount(heater: bool, upper_k: float) -> None:
    f = quiet_fridge(defrost_every_h=6, defrost_minutes=25, defrost_heater=heater)
    while not f.controller.defrosting:
        f.step(1.0)
    start_air, start_probe = f.thermal.air_c, f.thermal.probe_c
    peak = start_air
    while f.controller.defrosting:
        assert not f.controller.compressor_on
        f.step(1.0)
        peak = max(peak, f.thermal.air_c)
    assert 1.0 < peak - start_air <= upper_k
    # The product-side probe moves far less than the air, which is why rules use it.
    assert f.thermal.probe_c - start_probe < (peak - start_air) * 0.8
