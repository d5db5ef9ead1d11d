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
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from edge.rules.alerts import (
    Alert,
    Audience,
    Closed,
    DataValue,
    Severity,
    alert_id,
    fmt_c,
    fmt_duration,
    fmt_limit,
)
from edge.rules.config import Thresholds

MIN = 60.0
HOUR = 3600.0
DRIFT_BUCKET_S = 600.0
# DS18B20 power-on reset value: a reading of exactly this is never taken at face value.
POWER_ON_VALUE = 85.0
# What DS18B20 libraries return for a probe that does not answer.
DISCONNECTED_VALUE = -127.0
# The air settles fast but not instantly after the door closes or a defrost ends; until
# then a big step in the air reading is physics, not a faulty probe.
AIR_SETTLE_S = 300.0


class _Held:
    """Since when a condition has held without a break (None = it does not hold)."""

    __slots__ = ("since",)

    def __init__(self) -> None:
        self.since: float | None = None

    def update(self, condition: bool, t: float) -> None:
        if not condition:
            self.since = None
        elif self.since is None:
            self.since = t

    def held(self, t: float) -> float:
        return -1.0 if self.since is None else t - self.since


@dataclass
class _Probe:
    name: str  # "air" or "product"
    last_good: tuple[float, float] | None = None
    bad_since: float | None = None
    bad_kind: str = ""
    bad_detail: str = ""
    clean_since: float | None = None
    flat_ref: float | None = None
    flat_since: float | None = None
    other_min: float = math.inf
    other_max: float = -math.inf


class FridgeState:
    def __init__(self, fridge: str, cfg: Thresholds) -> None:
        self.fridge = fridge
        self.cfg = cfg
        self.data_t: float | None = None
        self.active: dict[str, Alert] = {}  # by rule key ("warm", "probe_air", ...)
        self.closed: dict[str, Closed] = {}  # by alert id, pruned by the engine
        self.readings = 0

        self.air = _Probe("air")
        self.product = _Probe("product")
        self.filtered: float | None = None
        self.filtered_t = 0.0
        self.last_product_like: float | None = None
        self.last_air: float | None = None

        self.door_since: float | None = None
        self.mains_lost_since: float | None = None
        self.defrost_since: float | None = None
        self.suppress_until = -math.inf
        self.air_settle_until = -math.inf
        # How recent "since" states ended (alert id -> (time, words)), for clearing an alert
        # that late records show never reached its threshold. Bounded: newest kept.
        self.ended: dict[str, tuple[float, str]] = {}
        self.comp_on: bool | None = None
        self.comp_since: float | None = None
        self.comp_last_on: float | None = None
        self.periods: deque[float] = deque(maxlen=8)
        # The no-cycling clock: settled seconds of the current compressor state counted up
        # to `comp_mark`, and when they reached the alert level (None = not yet).
        self.comp_settled_s = 0.0
        self.comp_mark = -math.inf
        self.comp_reached_at: float | None = None
        # Settled from this time on (+inf while the door is open); a door never seen is shut.
        self.quiet_from = -math.inf
        # The cycle begun at comp_last_on started settled and has seen no door opening.
        self.cycle_quiet = False

        self.warm = _Held()
        self.hot = _Held()
        self.hard_air = _Held()
        self.freeze_warn = _Held()
        self.freeze_crit = _Held()
        self.disagree = _Held()
        self.clearing: dict[str, _Held] = {}
        # Cumulative time above hot_cumulative_above_c: closed intervals, and the open one.
        self.above: deque[tuple[float, float]] = deque()
        self.above_since: float | None = None
        # 24 h mean: per-10-min buckets [start, sum, count] and running totals.
        self.buckets: deque[list[float]] = deque()
        self.bucket_sum = 0.0
        self.bucket_count = 0

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

    def event(self, t: float, kind: str, data: Mapping[str, object]) -> None:
        self.data_t = t if self.data_t is None else max(self.data_t, t)
        c = self.cfg
        if kind == "door":
            is_open = _flag(data, "open")
            if is_open and self.door_since is None:
                self._cycle_count(t)
                self.door_since = t
                self.quiet_from = math.inf
                self.cycle_quiet = False
            elif not is_open and self.door_since is not None:
                self._end_timer("door", self.door_since, t, "door closed after")
                self.door_since = None
                self.air_settle_until = t + AIR_SETTLE_S
                self.quiet_from = t + c.cycle_door_settle_min * MIN
        elif kind == "power":
            mains = _flag(data, "mains")
            if not mains and self.mains_lost_since is None:
                self._cycle_count(t)
                self.mains_lost_since = t
                self.comp_last_on = None  # an on-to-on interval across this is no cycle
            elif mains and self.mains_lost_since is not None:
                self._end_timer("mains", self.mains_lost_since, t, "mains power restored after")
                self.mains_lost_since = None
                self._cycle_restart(t)
        elif kind == "defrost":
            active = _flag(data, "active")
            if active and self.defrost_since is None:
                self._cycle_count(t)
                self.defrost_since = t
                self.comp_last_on = None
            elif not active and self.defrost_since is not None:
                start = self.defrost_since
                self._end_timer("defrost_overrun", start, t, "defrost ended after")
                self.suppress_until = min(
                    t + c.defrost_recovery_min * MIN, start + c.defrost_suppress_cap_min * MIN
                )
                self.defrost_since = None
                self._cycle_restart(t)
                self.air_settle_until = t + AIR_SETTLE_S
        elif kind == "compressor":
            on = _flag(data, "on")
            if on == self.comp_on:
                return
            if self.comp_since is not None:
                self._cycle_count(t)
                self._end_timer("cycling", self.comp_since, t, "compressor cycling again after")
            if on:
                # Only an undisturbed cycle tells the usual period: door traffic stretches it.
                if self.comp_last_on is not None and self.cycle_quiet:
                    self.periods.append(t - self.comp_last_on)
                self.comp_last_on = t
                self.cycle_quiet = t >= self.quiet_from
            self.comp_on = on
            self._cycle_restart(t)

    def _cycle_restart(self, t: float) -> None:
        self.comp_since = t
        self.comp_settled_s = 0.0
        self.comp_mark = t
        self.comp_reached_at = None

    def _cycle_count(self, t: float) -> None:
        """Advance the no-cycling clock to `t` (call before the door or compressor changes)."""
        if self.comp_since is None or t <= self.comp_mark:
            return
        start = max(self.comp_mark, self.quiet_from)
        # Defrost and mains loss pause it too (the state restarts when they end).
        paused = self.defrost_since is not None or self.mains_lost_since is not None
        if t > start and not paused:
            need = self._cycle_need()
            if (
                need is not None
                and self.comp_reached_at is None
                and self.comp_settled_s + (t - start) >= need
            ):
                self.comp_reached_at = start + max(0.0, need - self.comp_settled_s)
            self.comp_settled_s += t - start
        self.comp_mark = t

    def _cycle_need(self) -> float | None:
        usual = self.usual_cycle_s()
        return None if usual is None else self.cfg.cycle_factor * usual

    def _cycle_reached(self, now: float) -> float | None:
        """When the settled time of the current compressor state reached the alert level,
        if it has by `now` (the door is taken to stay as last seen)."""
        if self.comp_reached_at is not None:
            return self.comp_reached_at
        need = self._cycle_need()
        if need is None or self.defrost_since is not None or self.mains_lost_since is not None:
            return None
        at = max(self.comp_mark, self.quiet_from) + need - self.comp_settled_s
        return at if at <= now else None

    # --- "since" rules --------------------------------------------------------------------

    def timer_alerts(self, now: float) -> tuple[dict[str, Alert], set[str]]:
        """Alerts of the "since" rules as of `now`, and the ids of every ongoing state
        (an alert whose state is still ongoing is never cleared, only escalated)."""
        out: dict[str, Alert] = {}
        ongoing: set[str] = set()
        for rule, since in self._timer_states():
            ongoing.add(alert_id(self.fridge, rule, since))
            alert = self._timer_alert(rule, since, now)
            if alert is not None:
                out[alert.id] = alert
        return out, ongoing

    def _timer_states(self) -> list[tuple[str, float]]:
        states = []
        if self.door_since is not None:
            states.append(("door", self.door_since))
        if self.mains_lost_since is not None:
            states.append(("mains", self.mains_lost_since))
        if self.defrost_since is not None:
            states.append(("defrost_overrun", self.defrost_since))
        if (
            self.comp_since is not None
            and self.defrost_since is None
            and self.mains_lost_since is None
        ):
            states.append(("cycling", self.comp_since))
        return states

    def usual_cycle_s(self) -> float | None:
        c = self.cfg
        if c.cycle_usual_min > 0:
            return c.cycle_usual_min * MIN
        if len(self.periods) < c.cycle_learn_count:
            return None
        return statistics.median(self.periods)

    def _timer_alert(self, rule: str, since: float, now: float) -> Alert | None:
        """The alert for a state that began at `since`, at the level reached by `now`;
        its words and numbers describe the moment that level was reached."""
        c = self.cfg
        levels: list[tuple[float, Severity, Audience, str]]
        if rule == "door":
            levels = [
                (c.door_buzzer_min * MIN, "warning", "terminal", " (buzzer at the terminal)"),
                (c.door_owner_min * MIN, "warning", "owner", ""),
                (c.door_escalate_min * MIN, "critical", "owner", ""),
            ]
        elif rule == "mains":
            levels = [
                (0.0, "warning", "owner", ""),
                (c.mains_escalate_min * MIN, "critical", "owner", ""),
            ]
        elif rule == "defrost_overrun":
            levels = [(c.defrost_overrun_min * MIN, "warning", "owner", "")]
        else:  # cycling: its level is reached on settled time, not on time since
            at = self._cycle_reached(now)
            if at is None:
                return None
            levels = [(at - since, "warning", "owner", "")]
        reached = [lv for lv in levels if now - since >= lv[0]]
        if not reached:
            return None
        after, severity, audience, note = reached[-1]
        data: dict[str, DataValue] = {"for_s": round(after, 1)}
        if rule == "door":
            text = f"door open for {fmt_duration(after)}{note}"
        elif rule == "mains":
            text = f"mains power lost for {fmt_duration(after)}" if after else "mains power lost"
        elif rule == "defrost_overrun":
            text = f"defrost running for {fmt_duration(after)}, limit {fmt_duration(after)}"
        else:
            state = "on" if self.comp_on else "off"
            need = self._cycle_need() or after
            settled = f" ({fmt_duration(need)} of it door shut and settled)"
            settled = settled if after - need >= 1.0 else ""
            text = (
                f"compressor {state} for {fmt_duration(after)}{settled} without cycling, "
                f"usual cycle {fmt_duration(need / c.cycle_factor)}"
            )
            data["settled_s"] = round(need, 1)
            data["usual_cycle_s"] = round(need / c.cycle_factor, 1)
            data["compressor_on"] = bool(self.comp_on)
        return Alert(
            id=alert_id(self.fridge, rule, since),
            fridge=self.fridge,
            rule=rule,
            severity=severity,
            audience=audience,
            started_at=since,
            raised_at=since + levels[0][0],
            changed_at=since + after,
            peak=None,
            message=text,
            data=data,
        )

    def _end_timer(self, rule: str, since: float, t: float, words: str) -> None:
        message = f"{words} {fmt_duration(t - since)}"
        alert = self._timer_alert(rule, since, t)
        if alert is not None:  # only states that became alerts are reported as such
            data = {**alert.data, "for_s": round(t - since, 1)}
            self.closed[alert.id] = Closed(alert, t, message, data)
        self.ended[alert_id(self.fridge, rule, since)] = (t, message)
        while len(self.ended) > 64:
            del self.ended[next(iter(self.ended))]

    # --- probes -----------------------------------------------------------------------------

    def _classify(
        self, probe: _Probe, t: float, value: float | None, status: str | None, jumps_ok: bool
    ) -> tuple[float | None, bool]:
        """(value, bad): value None and bad False = not fitted; bad readings set the kind."""
        c = self.cfg
        if status is None and value is None:
            return None, False
        status = status or "ok"
        if (
            status not in ("ok", "suspect")
            or value is None
            or (math.isfinite(value) and value <= DISCONNECTED_VALUE)
        ):
            why = f"status {status}" if status not in ("ok", "suspect") else "no reading"
            if value is not None and value <= DISCONNECTED_VALUE:
                why = f"reads {fmt_c(value)}"
            return self._bad(probe, "disconnected", f"disconnected ({why})")
        if status == "suspect" or value == POWER_ON_VALUE:
            finite = value if math.isfinite(value) else None
            return self._bad(probe, "power_on_value", "stuck at 85.0 °C", finite)
        if not math.isfinite(value) or not c.probe_min_c <= value <= c.probe_max_c:
            shown = fmt_c(value) if math.isfinite(value) else str(value)
            limits = f"{fmt_limit(c.probe_min_c)}…{fmt_limit(c.probe_max_c)}"
            finite = value if math.isfinite(value) else None
            return self._bad(probe, "out_of_range", f"reads {shown}, outside {limits}", finite)
        if probe.last_good is not None and not jumps_ok:
            last_t, last_v = probe.last_good
            allowed = c.probe_jump_c_per_min * max(1.0, (t - last_t) / MIN)
            if abs(value - last_v) > allowed:
                # Judged against the last good value, so a lone spike is dropped and the
                # probe is only at fault if it stays away.
                detail = f"jumped from {fmt_c(last_v)} to {fmt_c(value)}"
                return self._bad(probe, "jump", detail, value)
        return value, False

    @staticmethod
    def _bad(
        probe: _Probe, kind: str, detail: str, value: float | None = None
    ) -> tuple[float | None, bool]:
        probe.bad_kind, probe.bad_detail = kind, detail
        return value, True

    def _flat(self, probe: _Probe, t: float, value: float, other: float) -> bool:
        c = self.cfg
        if probe.flat_ref is None or abs(value - probe.flat_ref) > c.flatline_band_c:
            probe.flat_ref, probe.flat_since = value, t
            probe.other_min = probe.other_max = other
            return False
        probe.other_min = min(probe.other_min, other)
        probe.other_max = max(probe.other_max, other)
        moved = probe.other_max - probe.other_min
        assert probe.flat_since is not None
        if t - probe.flat_since >= c.flatline_h * HOUR and moved >= c.flatline_other_moves_c:
            other_name = "product" if probe.name == "air" else "air"
            probe.bad_kind = "flatline"
            probe.bad_detail = (
                f"flat at {fmt_c(value)} for {fmt_duration(t - probe.flat_since)} "
                f"while {other_name} moved {moved:.1f} °C"
            )
            return True
        return False

    def _probe_step(
        self, probe: _Probe, t: float, value: float | None, bad: bool, not_fitted: bool
    ) -> float | None:
        """Fault raise/clear for one probe; returns the value if it may be used."""
        c = self.cfg
        key = f"probe_{probe.name}"
        active = self.active.get(key)
        if not_fitted and value is None and not bad:
            return None
        if bad:
            probe.clean_since = None
            if probe.bad_since is None:
                probe.bad_since = t
            if active is None and t - probe.bad_since >= c.probe_fault_for_s:
                message = f"{probe.name} probe {probe.bad_detail}"
                data: dict[str, DataValue] = {"probe": probe.name, "fault": probe.bad_kind}
                if value is not None:
                    data["value_c"] = round(value, 2)
                self._raise(key, "probe_fault", probe.bad_since, t, "critical", None, message, data)
                if probe.bad_kind == "jump" and value is not None:
                    probe.last_good = (t, value)  # the new level is the reference from now on
            return None
        probe.bad_since = None
        assert value is not None
        probe.last_good = (t, value)
        if active is None:
            return value
        if probe.clean_since is None:
            probe.clean_since = t
        if t - probe.clean_since >= c.probe_clear_min * MIN:
            message = (
                f"{probe.name} probe reads normally again "
                f"({fmt_c(value)} for {fmt_duration(t - probe.clean_since)})"
            )
            self._clear(key, t, message)
            return value
        return None  # not trusted until it has read normally for a while

    def _disagreement(self, t: float, air: float | None, product: float | None) -> None:
        c = self.cfg
        if air is None or product is None:
            return
        gap = abs(air - product)
        self.disagree.update(gap > c.disagree_c, t)
        data: dict[str, DataValue] = {"air_c": round(air, 2), "product_c": round(product, 2)}
        if "probe_disagree" not in self.active:
            since = self.disagree.since
            if since is not None and t - since >= c.disagree_for_min * MIN:
                message = (
                    f"air {fmt_c(air)} and product {fmt_c(product)} differ by {gap:.1f} °C "
                    f"for {fmt_duration(t - since)}"
                )
                self._raise(
                    "probe_disagree", "probe_disagree", since, t, "warning", None, message, data
                )
        elif self._cleared_for("probe_disagree", gap < c.disagree_c - c.clear_hysteresis_c, t):
            self._clear("probe_disagree", t, f"air and product agree again ({gap:.1f} °C apart)")

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
                message = (
                    f"product {fmt_c(p)}, above {fmt_limit(c.warm_above_c)} "
                    f"for {fmt_duration(t - since)}"
                )
                data = {"value_c": round(p, 2), "limit_c": c.warm_above_c}
                self._raise("warm", "warm", since, t, "warning", p, message, data)
            return
        self._peak("warm", p, t)
        if self._cleared_for("warm", p < c.warm_clear_below_c, t):
            self._clear("warm", t, self._back_message("warm", p, "below", c.warm_clear_below_c, t))

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
                message = (
                    f"product {fmt_c(p)}, above {fmt_limit(c.hot_above_c)} "
                    f"for {fmt_duration(t - since)}"
                )
                data: dict[str, DataValue] = {
                    "cause": "sustained",
                    "value_c": round(p, 2),
                    "limit_c": c.hot_above_c,
                }
                self._raise("hot", "hot", since, t, "critical", p, message, data)
            elif budget_spent and p > c.hot_cumulative_above_c:
                start = self.above_since if self.above_since is not None else t
                message = (
                    f"product {fmt_c(p)}; above {fmt_limit(c.hot_cumulative_above_c)} for "
                    f"{fmt_duration(cumulative)} in the last "
                    f"{fmt_duration(c.hot_cumulative_window_h * HOUR)}"
                )
                data = {
                    "cause": "cumulative",
                    "value_c": round(p, 2),
                    "cumulative_s": round(cumulative, 1),
                    "limit_c": c.hot_cumulative_above_c,
                }
                self._raise("hot", "hot", start, t, "critical", p, message, data)
            return
        self._peak("hot", p, t)
        # With the day's budget spent, hot only ends once the product is properly cold again.
        limit = (c.hot_cumulative_above_c if budget_spent else c.hot_above_c) - c.clear_hysteresis_c
        if self._cleared_for("hot", p < limit, t):
            self._clear("hot", t, self._back_message("hot", p, "below", limit, t))

    def _hard(self, t: float, p: float | None, air: float | None) -> None:
        c = self.cfg
        air_hot = air is not None and air > c.hard_air_above_c and self.door_since is None
        self.hard_air.update(air_hot, t)
        if "hard_limit" not in self.active:
            since = self.hard_air.since
            if p is not None and p > c.hard_product_above_c:
                message = f"product {fmt_c(p)}, above {fmt_limit(c.hard_product_above_c)}"
                data: dict[str, DataValue] = {
                    "cause": "product",
                    "value_c": round(p, 2),
                    "limit_c": c.hard_product_above_c,
                }
                self._raise("hard_limit", "hard_limit", t, t, "critical", p, message, data)
            elif air is not None and since is not None and t - since >= c.hard_air_for_min * MIN:
                message = (
                    f"air {fmt_c(air)}, above {fmt_limit(c.hard_air_above_c)} "
                    f"for {fmt_duration(t - since)} with the door closed"
                )
                data = {"cause": "air", "value_c": round(air, 2), "limit_c": c.hard_air_above_c}
                self._raise("hard_limit", "hard_limit", since, t, "critical", air, message, data)
            return
        if p is not None:
            self._peak("hard_limit", p, t)
        p_ok = p is None or p < c.hard_product_above_c - c.clear_hysteresis_c
        air_ok = air is None or air < c.hard_air_above_c - c.clear_hysteresis_c
        if self._cleared_for(
            "hard_limit", p_ok and air_ok and (p is not None or air is not None), t
        ):
            shown = f"product {fmt_c(p)}" if p is not None else f"air {fmt_c(air or 0.0)}"
            self._clear("hard_limit", t, f"{shown}, back under the hard limit")

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
                message = (
                    f"product {fmt_c(p)}, below {fmt_limit(limit)} "
                    f"for {fmt_duration(t - held.since)}"
                )
                data = {"value_c": round(p, 2), "limit_c": limit}
                severity: Severity = "critical" if crit else "warning"
                self._raise(
                    "freeze", "freeze", self.freeze_warn.since, t, severity, p, message, data
                )
            return
        self._peak("freeze", p, t, highest=False)
        if crit and active.severity == "warning":
            assert self.freeze_crit.since is not None
            message = (
                f"product {fmt_c(p)}, below {fmt_limit(c.freeze_critical_below_c)} "
                f"for {fmt_duration(t - self.freeze_crit.since)}"
            )
            self.active["freeze"] = _replace(
                self.active["freeze"],
                severity="critical",
                changed_at=t,
                message=message,
                data={"value_c": round(p, 2), "limit_c": c.freeze_critical_below_c},
            )
        limit = c.freeze_warning_below_c + c.clear_hysteresis_c
        if self._cleared_for("freeze", p > limit, t):
            self._clear("freeze", t, self._back_message("freeze", p, "above", limit, t))

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
        data: dict[str, DataValue] = {"mean_c": round(mean, 2), "limit_c": limit}
        if "drift" not in self.active:
            if coverage >= c.drift_min_coverage and mean > limit:
                message = (
                    f"{fmt_duration(window)} mean {fmt_c(mean)}, above set point "
                    f"{fmt_limit(c.set_point_c)} + {c.drift_above_set_point_c:g} °C"
                )
                self._raise("drift", "drift", t, t, "warning", mean, message, data)
        elif mean <= limit - c.drift_hysteresis_c:
            self._clear("drift", t, f"{fmt_duration(window)} mean back to {fmt_c(mean)}", data)

    # --- helpers ----------------------------------------------------------------------------

    def _raise(
        self,
        key: str,
        rule: str,
        since: float,
        t: float,
        severity: Severity,
        peak: float | None,
        message: str,
        data: Mapping[str, DataValue],
    ) -> None:
        rule_id = key if key.startswith("probe_") and key != "probe_disagree" else rule
        self.active[key] = Alert(
            id=alert_id(self.fridge, rule_id, since),
            fridge=self.fridge,
            rule=rule,
            severity=severity,
            audience="owner",
            started_at=since,
            raised_at=t,
            changed_at=t,
            peak=peak,
            message=message,
            data=dict(data),
        )
        self.clearing.pop(key, None)

    def _peak(self, key: str, value: float, t: float, highest: bool = True) -> None:
        alert = self.active[key]
        if alert.peak is None or (value > alert.peak if highest else value < alert.peak):
            self.active[key] = _replace(alert, peak=value)

    def _cleared_for(self, key: str, condition: bool, t: float) -> bool:
        held = self.clearing.setdefault(key, _Held())
        held.update(condition, t)
        return held.held(t) >= self.cfg.clear_for_min * MIN

    def _back_message(self, key: str, p: float, side: str, limit: float, t: float) -> str:
        since = self.clearing[key].since
        back_for = fmt_duration(t - (t if since is None else since))
        return f"product {fmt_c(p)}, {side} {fmt_limit(limit)} for {back_for}"

    def _clear(
        self, key: str, t: float, message: str, data: Mapping[str, DataValue] | None = None
    ) -> None:
        alert = self.active.pop(key)
        self.clearing.pop(key, None)
        was = f"; was active for {fmt_duration(t - alert.started_at)}"
        if alert.peak is not None and alert.rule != "drift":
            was += f", peak {fmt_c(alert.peak)}"
        out = {**alert.data, **(data or {})}
        self.closed[alert.id] = Closed(alert, t, message + was, out)


def _replace(alert: Alert, **changes: object) -> Alert:
    return dataclasses.replace(alert, **changes)  # type: ignore[arg-type]


def _flag(data: Mapping[str, object], key: str) -> bool:
    value = data.get(key)
    if not isinstance(value, bool):
        raise ValueError(f"event data needs a true/false {key!r}, got {value!r}")
    return value
