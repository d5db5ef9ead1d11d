"""The temperature rules of a fridge, with hysteresis on the product-like temperature:
warm, hot (sustained or cumulative), the hard limit, freeze and 24 h drift."""

from __future__ import annotations

import math

from edge.rules.alerts import DataValue, Severity, text
from edge.rules.fridge_base import (
    DRIFT_BUCKET_S,
    HOUR,
    MIN,
    FridgeBase,
    _replace,
)


class TemperatureRules(FridgeBase):
    """Warm, hot, hard limit, freeze and drift, evaluated at each reading."""

    # --- temperature rules --------------------------------------------------------------

    def _suppressed(self, t: float) -> bool:
        c = self.cfg
        if self.defrost_since is not None:
            return t < self.defrost_since + c.defrost_suppress_cap_min * MIN
        return t < self.suppress_until

    def _warm(self, t: float, p: float) -> None:
        c = self.cfg
        self.warm.update(p > c.warm_above_c, t)
        if "warm" not in self.active:
            since = self.warm.since
            # Defrost holds the alert back, not the timer: still warm after the recovery
            # window means it has been warm for longer than warm_for_min.
            if since is not None and t - since >= c.warm_for_min * MIN and not self._suppressed(t):
                data: dict[str, DataValue] = {
                    "reason": "warm", "value_c": round(p, 2), "limit_c": c.warm_above_c,
                    "for_s": round(t - since, 1),
                }
                self._raise("warm", "warm", since, t, "warning", p, data)
            return
        self._peak("warm", p, t)
        if self._cleared_for("warm", p < c.warm_clear_below_c, t):
            self._clear("warm", t, self._back("warm", p, "back_below", c.warm_clear_below_c, t))

    def _cumulative(self, t: float, p: float) -> None:
        c = self.cfg
        if p > c.hot_cumulative_above_c:
            if self.above_since is None:
                self.above_since = t
        elif self.above_since is not None:
            self.above.append((self.above_since, t))
            self.above_since = None
        horizon = t - c.hot_cumulative_window_h * HOUR
        while self.above and self.above[0][1] <= horizon:
            self.above.popleft()

    def cumulative_above_s(self, t: float) -> float:
        horizon = t - self.cfg.hot_cumulative_window_h * HOUR
        total = sum(end - max(start, horizon) for start, end in self.above if end > horizon)
        if self.above_since is not None:
            total += t - max(self.above_since, horizon)
        return total

    def _hot(self, t: float, p: float) -> None:
        c = self.cfg
        self.hot.update(p > c.hot_above_c, t)
        cumulative = self.cumulative_above_s(t)
        budget_spent = cumulative >= c.hot_cumulative_min * MIN
        if "hot" not in self.active:
            since = self.hot.since
            if since is not None and t - since >= c.hot_for_min * MIN:
                data: dict[str, DataValue] = {
                    "reason": "hot_sustained",
                    "cause": "sustained",
                    "value_c": round(p, 2),
                    "limit_c": c.hot_above_c,
                    "for_s": round(t - since, 1),
                }
                self._raise("hot", "hot", since, t, "critical", p, data)
            elif budget_spent and p > c.hot_cumulative_above_c:
                start = self.above_since if self.above_since is not None else t
                self._raise("hot", "hot", start, t, "critical", p, self._cumulative_data(p, t))
            return
        self._peak("hot", p, t)
        hot = self.active["hot"]
        if budget_spent and hot.data.get("cause") != "cumulative":
            # The cause changed while the alert is open: the same alert, updated (it now
            # clears only once the product is below the cumulative limit).
            data = self._cumulative_data(p, t)
            self.active["hot"] = _replace(hot, data=data, message=text("hot", data), changed_at=t)
        # With the day's budget spent, hot only ends once the product is properly cold again.
        limit = (c.hot_cumulative_above_c if budget_spent else c.hot_above_c) - c.clear_hysteresis_c
        if self._cleared_for("hot", p < limit, t):
            self._clear("hot", t, self._back("hot", p, "back_below", limit, t))

    def _cumulative_data(self, p: float, t: float) -> dict[str, DataValue]:
        c = self.cfg
        return {
            "reason": "hot_cumulative",
            "cause": "cumulative",
            "value_c": round(p, 2),
            "cumulative_s": round(self.cumulative_above_s(t), 1),
            "window_s": c.hot_cumulative_window_h * HOUR,
            "limit_c": c.hot_cumulative_above_c,
        }

    def _hard(self, t: float, p: float | None, air: float | None) -> None:
        c = self.cfg
        air_hot = air is not None and air > c.hard_air_above_c and self.door_since is None
        self.hard_air.update(air_hot, t)
        if "hard_limit" not in self.active:
            since = self.hard_air.since
            if p is not None and p > c.hard_product_above_c:
                data: dict[str, DataValue] = {
                    "reason": "hard_product",
                    "cause": "product",
                    "value_c": round(p, 2),
                    "limit_c": c.hard_product_above_c,
                }
                self._raise("hard_limit", "hard_limit", t, t, "critical", p, data)
            elif air is not None and since is not None and t - since >= c.hard_air_for_min * MIN:
                data = {
                    "reason": "hard_air", "cause": "air", "value_c": round(air, 2),
                    "limit_c": c.hard_air_above_c, "for_s": round(t - since, 1),
                }
                self._raise("hard_limit", "hard_limit", since, t, "critical", air, data)
            return
        if p is not None:
            self._peak("hard_limit", p, t)
        p_ok = p is None or p < c.hard_product_above_c - c.clear_hysteresis_c
        air_ok = air is None or air < c.hard_air_above_c - c.clear_hysteresis_c
        if self._cleared_for(
            "hard_limit", p_ok and air_ok and (p is not None or air is not None), t
        ):
            end: dict[str, DataValue] = {
                "end": "hard_back",
                "end_probe": "product" if p is not None else "air",
                "end_value_c": round(p if p is not None else (air or 0.0), 2),
            }
            self._clear("hard_limit", t, end)

    def _freeze(self, t: float, p: float) -> None:
        c = self.cfg
        self.freeze_warn.update(p < c.freeze_warning_below_c, t)
        self.freeze_crit.update(p < c.freeze_critical_below_c, t)
        crit = self.freeze_crit.held(t) >= c.freeze_critical_for_min * MIN
        warn = self.freeze_warn.held(t) >= c.freeze_warning_for_min * MIN
        active = self.active.get("freeze")
        if active is None:
            if crit or warn:
                limit = c.freeze_critical_below_c if crit else c.freeze_warning_below_c
                held = self.freeze_crit if crit else self.freeze_warn
                assert held.since is not None and self.freeze_warn.since is not None
                data: dict[str, DataValue] = {
                    "reason": "freeze", "value_c": round(p, 2), "limit_c": limit,
                    "for_s": round(t - held.since, 1),
                }
                severity: Severity = "critical" if crit else "warning"
                self._raise("freeze", "freeze", self.freeze_warn.since, t, severity, p, data)
            return
        self._peak("freeze", p, t, highest=False)
        if crit and active.severity == "warning":
            assert self.freeze_crit.since is not None
            data = {
                "reason": "freeze", "value_c": round(p, 2),
                "limit_c": c.freeze_critical_below_c,
                "for_s": round(t - self.freeze_crit.since, 1),
            }
            self.active["freeze"] = _replace(
                self.active["freeze"],
                severity="critical",
                changed_at=t,
                message=text("freeze", data),
                data=data,
            )
        limit = c.freeze_warning_below_c + c.clear_hysteresis_c
        if self._cleared_for("freeze", p > limit, t):
            self._clear("freeze", t, self._back("freeze", p, "back_above", limit, t))

    def _drift(self, t: float, p: float) -> None:
        c = self.cfg
        start = math.floor(t / DRIFT_BUCKET_S) * DRIFT_BUCKET_S
        if self.buckets and self.buckets[-1][0] == start:
            self.buckets[-1][1] += p
            self.buckets[-1][2] += 1
        else:
            self.buckets.append([start, p, 1])
        self.bucket_sum += p
        self.bucket_count += 1
        window = c.drift_window_h * HOUR
        while self.buckets and self.buckets[0][0] + DRIFT_BUCKET_S <= t - window:
            _, s, n = self.buckets.popleft()
            self.bucket_sum -= s
            self.bucket_count -= int(n)
        if self.bucket_count == 0:
            return
        coverage = len(self.buckets) * DRIFT_BUCKET_S / window
        mean = self.bucket_sum / self.bucket_count
        limit = c.set_point_c + c.drift_above_set_point_c
        if "drift" not in self.active:
            if coverage >= c.drift_min_coverage and mean > limit:
                data: dict[str, DataValue] = {
                    "reason": "drift", "mean_c": round(mean, 2), "limit_c": limit,
                    "window_s": window, "set_point_c": c.set_point_c,
                    "above_c": c.drift_above_set_point_c,
                }
                self._raise("drift", "drift", t, t, "warning", mean, data)
        elif mean <= limit - c.drift_hysteresis_c:
            self._clear("drift", t, {"end": "drift_back", "end_mean_c": round(mean, 2)})
