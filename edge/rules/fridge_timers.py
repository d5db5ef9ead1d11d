"""The "since" rules of a fridge: door open, mains lost, defrost overrun, no compressor cycling.

They depend only on how long a state has lasted, so `timer_alerts(now)` can evaluate them
at any time, including between readings. `event()` feeds the states they time.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping

from edge.rules.alerts import (
    Alert,
    Audience,
    Closed,
    DataValue,
    Severity,
    alert_id,
    end_text,
    text,
)
from edge.rules.fridge_base import (
    AIR_SETTLE_S,
    MIN,
    FridgeBase,
    _flag,
)

_REASONS = {"door": "door_open", "mains": "mains_lost", "defrost_overrun": "defrost_overrun",
            "cycling": "no_cycling"}


class TimerRules(FridgeBase):
    """Door, power, defrost and compressor events, and the rules that time them."""

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
                self._end_timer("door", self.door_since, t, "door_closed")
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
                self._end_timer("mains", self.mains_lost_since, t, "mains_restored")
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
                self._end_timer("defrost_overrun", start, t, "defrost_ended")
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
                self._end_timer("cycling", self.comp_since, t, "cycling_again")
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
        levels: list[tuple[float, Severity, Audience]]
        if rule == "door":
            levels = [
                (c.door_buzzer_min * MIN, "warning", "terminal"),
                (c.door_owner_min * MIN, "warning", "owner"),
                (c.door_escalate_min * MIN, "critical", "owner"),
            ]
        elif rule == "mains":
            levels = [
                (0.0, "warning", "owner"),
                (c.mains_escalate_min * MIN, "critical", "owner"),
            ]
        elif rule == "defrost_overrun":
            levels = [(c.defrost_overrun_min * MIN, "warning", "owner")]
        else:  # cycling: its level is reached on settled time, not on time since
            at = self._cycle_reached(now)
            if at is None:
                return None
            levels = [(at - since, "warning", "owner")]
        reached = [lv for lv in levels if now - since >= lv[0]]
        if not reached:
            return None
        after, severity, audience = reached[-1]
        data: dict[str, DataValue] = {"reason": _REASONS[rule], "for_s": round(after, 1)}
        if rule == "door":
            data["buzzer"] = audience == "terminal"
        elif rule == "defrost_overrun":
            data["limit_s"] = round(levels[0][0], 1)
        elif rule == "cycling":
            need = self._cycle_need() or after
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
            message=text(rule, data),
            data=data,
        )

    def _end_timer(self, rule: str, since: float, t: float, end: str) -> None:
        ended: dict[str, DataValue] = {"end": end, "end_for_s": round(t - since, 1)}
        message = end_text(rule, ended)
        alert = self._timer_alert(rule, since, t)
        if alert is not None:  # only states that became alerts are reported as such
            data = {**alert.data, **ended}
            self.closed[alert.id] = Closed(alert, t, message, data)
        self.ended[alert_id(self.fridge, rule, since)] = (t, message, ended)
        while len(self.ended) > 64:
            del self.ended[next(iter(self.ended))]
