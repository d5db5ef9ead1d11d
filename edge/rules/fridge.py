"""One fridge's rule state, fed its records in event-time order (pure, no clock).

Two kinds of rule live here:
- rules with hysteresis on measured values (warm, hot, hard limit, freeze, probe faults,
  disagreement, drift) keep their active alerts in `active`, evaluated at each reading;
- "since" rules (door open, mains lost, defrost overrun, no compressor cycling) depend only
  on how long a state has lasted, so `timer_alerts(now)` can evaluate them at any time,
  including between readings (the engine's `tick`). The cycling rule counts only settled
  time (door shut and `cycle_door_settle_min` past its last closing): on a busy day the
  compressor runs at capacity for hours, which is door load, not degraded cooling.
The engine (engine.py) turns both into the raised/updated/cleared changes it reports.

One module per rule family, each a mixin on `fridge_base.FridgeBase` (the shared state and
the raise/clear helpers): `fridge_timers` (the "since" rules and `event`), `fridge_probes`
and `fridge_temperature`. `FridgeState` here combines them and feeds them each reading;
the names of those modules are re-exported here.
"""

from __future__ import annotations

import math

from edge.rules.fridge_base import (
    AIR_SETTLE_S,
    DISCONNECTED_VALUE,
    DRIFT_BUCKET_S,
    HOUR,
    MIN,
    POWER_ON_VALUE,
    FridgeBase,
    _flag,
    _Held,
    _Probe,
    _replace,
)
from edge.rules.fridge_probes import ProbeRules
from edge.rules.fridge_temperature import TemperatureRules
from edge.rules.fridge_timers import TimerRules

__all__ = [
    "AIR_SETTLE_S", "DISCONNECTED_VALUE", "DRIFT_BUCKET_S", "HOUR", "MIN", "POWER_ON_VALUE",
    "FridgeBase", "FridgeState", "ProbeRules", "TemperatureRules", "TimerRules", "_Held",
    "_Probe", "_flag", "_replace",
]


class FridgeState(TimerRules, ProbeRules, TemperatureRules):
    # --- inputs ------------------------------------------------------------------------

    def reading(
        self,
        t: float,
        air: float | None,
        product: float | None,
        air_status: str | None,
        product_status: str | None,
    ) -> None:
        self.data_t = t if self.data_t is None else max(self.data_t, t)
        self.readings += 1
        c = self.cfg
        # The air probe legitimately moves fast with the door open or the heater on.
        air_jumps_ok = (
            self.door_since is not None
            or self.defrost_since is not None
            or t < self.air_settle_until
        )
        air_v, air_bad = self._classify(self.air, t, air, air_status, air_jumps_ok)
        prod_v, prod_bad = self._classify(self.product, t, product, product_status, False)
        if air_v is not None and prod_v is not None:
            air_bad = air_bad or self._flat(self.air, t, air_v, prod_v)
            prod_bad = prod_bad or self._flat(self.product, t, prod_v, air_v)
        else:
            for probe in (self.air, self.product):
                probe.flat_ref = None
        air_use = self._probe_step(self.air, t, air_v, air_bad, air_status is None)
        prod_use = self._probe_step(self.product, t, prod_v, prod_bad, product_status is None)

        # Product-like temperature: the buffered probe, else the air probe through a
        # first-order filter that starts from the last product value (no jump on a switch).
        p: float | None
        if prod_use is not None:
            p = prod_use
            self.filtered, self.filtered_t = prod_use, t
        elif air_use is not None:
            if self.filtered is None:
                self.filtered = air_use
            else:
                k = 1.0 - math.exp(-max(0.0, t - self.filtered_t) / (c.product_tau_min * MIN))
                self.filtered += (air_use - self.filtered) * k
            self.filtered_t = t
            p = self.filtered
        else:
            p = None
        self.last_product_like = p
        self.last_air = air_use

        self._disagreement(t, air_use, prod_use)
        self._hard(t, p, air_use)
        if p is not None:
            self._cumulative(t, p)
            self._warm(t, p)
            self._hot(t, p)
            self._freeze(t, p)
            self._drift(t, p)
