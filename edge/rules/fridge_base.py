"""The state every rule family of a fridge shares, and how an alert is raised and cleared.

`FridgeBase` holds one fridge's rule state (probes, timers, held conditions, active and
closed alerts) and the helpers that raise, update and clear alerts in `active`; the rule
families (`fridge_timers`, `fridge_probes`, `fridge_temperature`) are mixins on it and
`edge.rules.fridge.FridgeState` combines them.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from edge.rules.alerts import (
    Alert,
    Closed,
    DataValue,
    Severity,
    alert_id,
    end_text,
    text,
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
    bad_detail: dict[str, DataValue] = dataclasses.field(default_factory=dict)
    clean_since: float | None = None
    flat_ref: float | None = None
    flat_since: float | None = None
    other_min: float = math.inf
    other_max: float = -math.inf


class FridgeBase:
    """One fridge's rule state; the rule families are mixins on it."""

    def __init__(self, fridge: str, cfg: Thresholds) -> None:
        self.fridge = fridge
        self.cfg = cfg
        self.data_t: float | None = None
        self.active: dict[str, Alert] = {}  # by rule key ("warm", "probe_air", ...)
        self.closed: dict[str, Closed] = {}  # by alert id, pruned by the engine
        # When each rule key's last alert cleared: the next one starts no earlier, so a new
        # excursion always has a new start and id (a cumulative "hot" whose time above 5 °C
        # began before the previous "hot" cleared would otherwise reuse that alert's id).
        self.last_clear: dict[str, float] = {}
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
        self.ended: dict[str, tuple[float, str, dict[str, DataValue]]] = {}
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

    # --- helpers ----------------------------------------------------------------------------

    def _raise(
        self,
        key: str,
        rule: str,
        since: float,
        t: float,
        severity: Severity,
        peak: float | None,
        data: Mapping[str, DataValue],
    ) -> None:
        """Raise the alert of `key`; `data` holds its `reason` and numbers (the message is
        made from them)."""
        rule_id = key if key.startswith("probe_") and key != "probe_disagree" else rule
        since = max(since, self.last_clear.get(key, since))
        message = text(rule, data)
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

    def _back(self, key: str, p: float, end: str, limit: float, t: float) -> dict[str, DataValue]:
        """How a temperature alert ended: back below (or above) `limit` for a while."""
        since = self.clearing[key].since
        return {"end": end, "end_value_c": round(p, 2), "end_limit_c": limit,
                "end_for_s": round(t - (t if since is None else since), 1)}

    def _clear(self, key: str, t: float, end: Mapping[str, DataValue]) -> None:
        """Clear the alert of `key`; `end` holds `end` (how it ended) and its numbers."""
        alert = self.active.pop(key)
        self.clearing.pop(key, None)
        self.last_clear[key] = t
        out: dict[str, DataValue] = {
            **alert.data, **end, "active_s": round(t - alert.started_at, 1),
        }
        if alert.peak is not None and alert.rule != "drift":
            out["peak_c"] = round(alert.peak, 2)
        self.closed[alert.id] = Closed(alert, t, end_text(alert.rule, out), out)


def _replace(alert: Alert, **changes: object) -> Alert:
    return dataclasses.replace(alert, **changes)  # type: ignore[arg-type]


def _flag(data: Mapping[str, object], key: str) -> bool:
    value = data.get(key)
    if not isinstance(value, bool):
        raise ValueError(f"event data needs a true/false {key!r}, got {value!r}")
    return value
