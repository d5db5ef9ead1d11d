"""Lumped thermal model of one chilled cabinet (docs/design.md, "Cold chain").

Three temperatures, in °C:

- air      `Ca·dTa/dt = (UAw + UAdoor·door)(Tamb − Ta) + UAp(Tp − Ta) − u·Qc + heater`
- product  `Cp·dTp/dt = UAp(Ta − Tp)`
- probe    `τ·dTs/dt = Ta − Ts` (a glycol-buffered probe that follows the air slowly)

Pure: no clock, no randomness. The caller advances it with `step()` and reads the state.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ThermalParams:
    """Physical constants of one cabinet; defaults: docs/design.md, "Cold chain"."""

    air_capacity_j_per_k: float = 60_000.0  # Ca: air, shelves and walls' inner skin
    product_capacity_j_per_k: float = 400_000.0  # Cp: a full load of chilled goods
    wall_ua_w_per_k: float = 5.0  # UAw: leak through the insulation
    product_ua_w_per_k: float = 40.0  # UAp: air ↔ product exchange
    door_ua_w_per_k: float = 60.0  # UAdoor: added while the door is open (40–80)
    compressor_w: float = 300.0  # Qc: heat removed while the compressor runs
    heater_w: float = 200.0  # effective defrost-heater heat reaching the air
    probe_tau_s: float = 900.0  # τ of the buffered product probe (15 min)

    def __post_init__(self) -> None:
        for name in (
            "air_capacity_j_per_k",
            "product_capacity_j_per_k",
            "probe_tau_s",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be > 0")
        for name in (
            "wall_ua_w_per_k",
            "product_ua_w_per_k",
            "door_ua_w_per_k",
            "compressor_w",
            "heater_w",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0")


@dataclass(frozen=True)
class ThermalState:
    air_c: float
    product_c: float
    probe_c: float  # the buffered probe's own temperature (what probe 1 measures)


class FridgeThermal:
    """One cabinet's temperatures, advanced by `step()`.

    Integration is backward (implicit) Euler on the linear system, solved exactly for each
    step. Explicit Euler would be stable only for dt < 2·Ca/(UAw+UAdoor+UAp) (≈ 960 s with
    the defaults, but far less for a small cabinet or a wide-open door) and overshoots as
    dt approaches that; implicit Euler is unconditionally stable and monotone for this
    passive RC network, so any dt (1 s in the runner, 10 s or more in tests) gives a
    temperature that moves toward its equilibrium without oscillating. Its error is first
    order in dt/time-constant: under 1 % of a step's change at dt = 10 s against the
    fastest time constant here (Ca/ΣUA ≈ 480 s with the door open).
    """

    def __init__(
        self,
        params: ThermalParams,
        ambient_c: float,
        air_c: float,
        product_c: float,
        probe_c: float | None = None,
    ) -> None:
        self.params = params
        self.ambient_c = ambient_c
        self.air_c = air_c
        self.product_c = product_c
        # A probe sitting in the product starts at the product's temperature by default.
        self.probe_c = product_c if probe_c is None else probe_c

    @property
    def state(self) -> ThermalState:
        return ThermalState(self.air_c, self.product_c, self.probe_c)

    def step(self, dt_s: float, compressor_on: bool, door_open: bool, heater_on: bool,
             capacity: float = 1.0) -> None:
        """Advance by `dt_s` seconds with the inputs held constant over the step;
        `capacity`: the share of `compressor_w` the circuit achieves (a slow fault lowers it,
        hw_sim/slow_faults.py)."""
        if dt_s < 0:
            raise ValueError("dt_s: must be >= 0")
        if dt_s == 0:
            return
        p = self.params
        g_amb = p.wall_ua_w_per_k + (p.door_ua_w_per_k if door_open else 0.0)
        cooling = p.compressor_w * capacity if compressor_on else 0.0
        q = (p.heater_w if heater_on else 0.0) - cooling
        ca = p.air_capacity_j_per_k / dt_s
        cp = p.product_capacity_j_per_k / dt_s
        uap = p.product_ua_w_per_k
        # Product row: cp(Tp' − Tp) = uap(Ta' − Tp')  ⇒  Tp' = a·Tp + b·Ta'.
        a = cp / (cp + uap)
        b = uap / (cp + uap)
        # Air row with Tp' substituted: one unknown left.
        air = (ca * self.air_c + g_amb * self.ambient_c + q + uap * a * self.product_c) / (
            ca + g_amb + uap - uap * b
        )
        product = a * self.product_c + b * air
        k = p.probe_tau_s / dt_s
        probe = (k * self.probe_c + air) / (k + 1.0)
        self.air_c, self.product_c, self.probe_c = air, product, probe
