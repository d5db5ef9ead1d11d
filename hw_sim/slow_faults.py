"""Faults that develop over days, and the evaporator coil they act on (pure, seeded).

A slow fault's `level` (0 → its severity over `ramp_s`, `FaultSpec.level`) sets how bad it is:

- condenser_fouling: the condenser cannot shed heat, so the compressor removes less from
  the cabinet: capacity × (1 − 0.7·level). The duty cycle rises first; the cabinet warms
  only once capacity falls below the heat leaking in.
- refrigerant_leak: capacity × (1 − 0.8·level²): unnoticed for a while, then faster (less
  gas, lower suction pressure, a starved evaporator).
- iced_evaporator: frost builds faster on the coil (× (1 + 40·level): a door seal letting
  humid air in) and a defrost melts it more slowly (× (1 − 0.8·level): a blocked drain
  refreezing, a weak heater). Ice then remains after each defrost, so a defrost that
  ends on the coil's temperature runs out its timer instead, and the ice left insulates
  the coil: capacity × (1 − 0.6·ice / ICE_BLOCK_J).
- probe_intermittent: the probe drops out (reads −127 °C, "missing") in bursts that come
  more often and last longer as it gets worse: a cracked cable, a corroded connector.

The coil (`Evaporator`) is an observer of the air model in hw_sim.thermal: it does not feed
back into the air (the compressor's heat removal is the air model's), it gives the coil's
temperature, for the termination probe, and the ice, for the capacity.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hw_sim.scenario import FaultSpec

ICE_BLOCK_J = 3_000_000.0  # latent heat of the ice that blocks the coil's air flow for good


@dataclass(frozen=True)
class EvaporatorParams:
    ua_w_per_k: float = 20.0  # coil ↔ cabinet air, fan running
    capacity_j_per_k: float = 4_000.0  # the coil's metal: τ = C / UA = 200 s
    frost_w: float = 1.5  # latent heat of the frost built while the compressor runs
    heater_share: float = 1.0  # of the defrost heater's heat, what reaches the coil


class Evaporator:
    """The coil's temperature (°C) and the ice on it (J of latent heat to melt it)."""

    def __init__(self, params: EvaporatorParams, coil_c: float) -> None:
        self.params = params
        self.coil_c = coil_c
        self.ice_j = 0.0

    def step(self, dt_s: float, air_c: float, cooling_w: float, heater_w: float,
             frost_factor: float = 1.0, melt_factor: float = 1.0) -> None:
        """Advance `dt_s` s; `cooling_w`: heat the refrigerant takes from the coil now."""
        p = self.params
        if cooling_w > 0:
            self.ice_j += p.frost_w * frost_factor * dt_s
        heat_in = heater_w * p.heater_share
        # Implicit step of C·dT/dt = UA(Ta − T) − cooling + heat_in (stable for any dt).
        k = p.capacity_j_per_k / dt_s
        coil = (k * self.coil_c + p.ua_w_per_k * air_c - cooling_w + heat_in) / (
            k + p.ua_w_per_k)
        if coil > 0.0 and self.ice_j > 0.0:
            # Ice holds the coil at 0 °C while it melts: the heat above 0 °C goes into it.
            melt_w = (p.ua_w_per_k * (air_c - 0.0) + heat_in - cooling_w) * melt_factor
            self.ice_j = max(0.0, self.ice_j - max(0.0, melt_w) * dt_s)
            coil = 0.0 if self.ice_j > 0.0 else min(coil, 0.5)
        self.coil_c = coil

    @property
    def ice_share(self) -> float:
        return min(1.0, self.ice_j / ICE_BLOCK_J)


def capacity_factor(faults: list[FaultSpec], t_s: float, ice_share: float) -> float:
    """The share of its rated heat removal the refrigeration circuit achieves now. Ice
    chokes the coil only under an iced_evaporator fault: a healthy coil's frost is what its
    defrosts are sized for, and every scenario without a slow fault runs exactly as before
    the coil was modelled."""
    iced = any(f.fault == "iced_evaporator" for f in faults)
    cap = 1.0 - 0.6 * ice_share if iced else 1.0
    for f in faults:
        level = f.level(t_s)
        if f.fault == "condenser_fouling":
            cap *= 1.0 - 0.7 * level
        elif f.fault == "refrigerant_leak":
            cap *= 1.0 - 0.8 * level * level
    return max(0.0, cap)


def icing(faults: list[FaultSpec], t_s: float) -> tuple[float, float]:
    """(frost factor, melt factor) from the open iced_evaporator faults."""
    frost, melt = 1.0, 1.0
    for f in faults:
        if f.fault == "iced_evaporator":
            level = f.level(t_s)
            frost *= 1.0 + 40.0 * level
            melt *= 1.0 - 0.8 * level
    return frost, melt


class Dropouts:
    """One probe's intermittent dropouts: bursts start at `level × BURSTS_PER_H` an hour and
    last an exponential time of mean 5 s + 60 s·level² (so a burst long enough for the
    cold-chain probe-fault rule, a minute, is rare early and common later). Drawn from its
    own stream, so the probe's readings and every other draw stay the same."""

    BURSTS_PER_H = 3.0

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._until = -1.0
        self._next = -1.0  # the next candidate burst (at the full rate); drawn on first use

    def missing(self, t_s: float, level: float) -> bool:
        # The rate changes as the fault grows: candidates come at the full rate and each
        # becomes a burst with probability `level` (thinning), so no draw is made under a
        # rate that no longer holds.
        rate = self.BURSTS_PER_H / 3600.0
        if self._next < 0:
            self._next = t_s + self._rng.expovariate(rate)
        while self._next <= t_s:
            start = self._next
            if self._rng.random() < level:
                self._until = max(self._until, start + self._rng.expovariate(
                    1.0 / (5.0 + 60.0 * level * level)))
            self._next = start + self._rng.expovariate(rate)
        return t_s < self._until
