"""Maintenance findings from a fridge's hourly vitals (pure: the series and the hour in).

A technician's early warning, not the cold chain: nothing here is about the food being
warm now (the edge's rules say that, at once), but about a cabinet getting worse over days,
while it still holds its temperature (docs/technician.md, "Maintenance alerts"):

- `duty_rising`: the compressor's duty cycle over the last 7 days at least 10 % above the
  28 days before them, at similar door activity (each recent hour is compared with the
  baseline hours that had about as many door openings): a dirty condenser, a leak, ice;
- `defrost_timeouts`: two or more defrosts in 24 h ended on their timer, on a controller
  that has ended defrosts on temperature (it has a termination probe; without one every
  defrost ends on its timer and says nothing): ice, a heater, the termination probe;
- `pulldown_slower`: the pull-down after ordinary door openings trending up: the last 3
  days' median at least 25 % (and 30 s) above the 28-day baseline, with the 7 daily
  medians rising (Theil–Sen slope > 0);
- `probe_dropouts`: a probe that drops out now and then: missing or CRC readings in 3 or
  more separate episodes in 7 days while it reads well in between (a probe that is simply
  gone is the cold-chain `probe_fault`).

Each rule clears with hysteresis (`active` says which findings are open), so a fridge on the
line does not raise and clear every hour. Windows end with the hour `now_hour` (included).
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Literal

from xiaodian.wire.health import Vitals

Rule = Literal["duty_rising", "defrost_timeouts", "pulldown_slower", "probe_dropouts"]
RULES: tuple[Rule, ...] = ("duty_rising", "defrost_timeouts", "pulldown_slower",
                           "probe_dropouts")
DAY_H = 24
UNRECOVERED_S = 1800.0  # a pull-down not done in 30 min counts as this long (edge/vitals.py)
# Door openings in an hour, in classes of similar activity (a quiet hour, a busy one...).
_DOOR_EDGES = (0, 2, 5, 9, 15, 25)


@dataclass(frozen=True)
class Thresholds:
    recent_days: int = 7
    baseline_days: int = 28
    min_baseline_days: float = 7.0  # fewer judged hours in the baseline: no judgement yet
    min_recent_days: float = 4.0
    min_bucket_hours: int = 6  # baseline hours of a door class for it to be compared
    duty_rise: float = 0.10
    duty_clear: float = 0.05
    timeouts_per_day: int = 2
    pulldown_rise: float = 0.25
    pulldown_clear: float = 0.10
    pulldown_min_s: float = 30.0
    pulldown_recent_days: int = 3
    min_pulldowns_per_day: int = 5
    min_pulldowns_baseline: int = 50
    dropout_episodes: int = 3
    dropout_dead_share: float = 0.5  # more of its readings bad: gone, not intermittent
    dropout_clear_h: int = 72


DEFAULTS = Thresholds()


@dataclass(frozen=True)
class Finding:
    rule: Rule
    key: str  # the rule, or "probe_dropouts:INDEX": one alert per key
    evidence: dict[str, float | int] = field(default_factory=dict)


def _door_class(openings: int) -> int:
    return sum(openings > e for e in _DOOR_EDGES)


def _window(series: Sequence[Vitals], start: int, end: int) -> list[Vitals]:
    return [v for v in series if start <= v.hour < end]


def _settled_duty(v: Vitals) -> bool:
    # Hours with a defrost or a mains failure are not ordinary running: left out of both sides.
    return v.duty is not None and v.defrost_s == 0 and v.mains_off_s == 0


def duty_rising(series: Sequence[Vitals], now_hour: int, active: bool = False,
                th: Thresholds = DEFAULTS) -> Finding | None:
    end = now_hour + 1
    split = end - th.recent_days * DAY_H
    recent = [v for v in _window(series, split, end) if _settled_duty(v)]
    base = [v for v in _window(series, split - th.baseline_days * DAY_H, split)
            if _settled_duty(v)]
    if len(base) < th.min_baseline_days * DAY_H or len(recent) < th.min_recent_days * DAY_H:
        return None
    by_class: dict[int, list[float]] = {}
    for v in base:
        assert v.duty is not None
        by_class.setdefault(_door_class(v.door_openings), []).append(v.duty)
    means = {c: statistics.fmean(d) for c, d in by_class.items() if len(d) >= th.min_bucket_hours}
    matched = [v for v in recent if _door_class(v.door_openings) in means]
    if len(matched) < th.min_recent_days * DAY_H:
        return None
    expected = statistics.fmean(means[_door_class(v.door_openings)] for v in matched)
    observed = statistics.fmean(v.duty for v in matched if v.duty is not None)
    if expected <= 0.02:
        return None
    rise = observed / expected - 1.0
    if rise >= (th.duty_clear if active else th.duty_rise):
        return Finding("duty_rising", "duty_rising", {
            "duty_pct": round(observed * 100, 1), "baseline_pct": round(expected * 100, 1),
            "rise_pct": round(rise * 100, 1), "hours": len(matched)})
    return None


def defrost_timeouts(series: Sequence[Vitals], now_hour: int, active: bool = False,
                     th: Thresholds = DEFAULTS) -> Finding | None:
    end = now_hour + 1
    history = _window(series, end - (th.recent_days + th.baseline_days) * DAY_H, end)
    if not any(d.ended_on == "temperature" for v in history for d in v.defrosts):
        return None  # no termination probe: a timer is how every defrost ends
    day = _window(series, end - DAY_H, end)
    timeouts = sum(d.ended_on == "timeout" for v in day for d in v.defrosts)
    ended = sum(len(v.defrosts) for v in day)
    if timeouts >= (1 if active else th.timeouts_per_day):
        return Finding("defrost_timeouts", "defrost_timeouts",
                       {"timeouts": timeouts, "defrosts": ended})
    return None


def _pulls(hours: Sequence[Vitals]) -> list[float]:
    out = [float(p) for v in hours for p in v.pulldowns_s]
    return out + [UNRECOVERED_S] * sum(v.pulldown_unrecovered for v in hours)


def _theil_sen(points: Sequence[tuple[float, float]]) -> float:
    slopes = [(y2 - y1) / (x2 - x1) for (x1, y1), (x2, y2) in combinations(points, 2)
              if x2 != x1]
    return statistics.median(slopes) if slopes else 0.0


def pulldown_slower(series: Sequence[Vitals], now_hour: int, active: bool = False,
                    th: Thresholds = DEFAULTS) -> Finding | None:
    end = now_hour + 1
    split = end - th.recent_days * DAY_H
    base = _pulls(_window(series, split - th.baseline_days * DAY_H, split))
    if len(base) < th.min_pulldowns_baseline:
        return None
    daily: list[tuple[float, float]] = []
    for d in range(th.recent_days):
        pulls = _pulls(_window(series, split + d * DAY_H, split + (d + 1) * DAY_H))
        if len(pulls) >= th.min_pulldowns_per_day:
            daily.append((float(d), statistics.median(pulls)))
    last = _pulls(_window(series, end - th.pulldown_recent_days * DAY_H, end))
    if len(daily) < 4 or len(last) < th.min_pulldowns_per_day * th.pulldown_recent_days:
        return None
    baseline, now = statistics.median(base), statistics.median(last)
    slope = _theil_sen(daily)
    rise = th.pulldown_clear if active else th.pulldown_rise
    if now >= baseline * (1 + rise) and now >= baseline + th.pulldown_min_s and (
            active or slope > 0):
        return Finding("pulldown_slower", "pulldown_slower", {
            "median_s": round(now), "baseline_s": round(baseline),
            "slope_s_per_day": round(slope, 1)})
    return None


def _episodes(bad_hours: Sequence[int]) -> int:
    """Runs of consecutive hours: one long outage is one episode."""
    hours = sorted(bad_hours)
    return sum(1 for i, h in enumerate(hours) if i == 0 or h != hours[i - 1] + 1)


def probe_dropouts(series: Sequence[Vitals], now_hour: int, active: Collection[int] = (),
                   th: Thresholds = DEFAULTS) -> list[Finding]:
    end = now_hour + 1
    week = _window(series, end - th.recent_days * DAY_H, end)
    out: list[Finding] = []
    indexes = sorted({p.index for v in week for p in v.probes})
    for index in indexes:
        bad_hours: list[int] = []
        bad = total = 0
        for v in week:
            for p in v.probes:
                if p.index != index:
                    continue
                n_bad = p.missing + p.crc
                bad += n_bad
                total += p.ok + p.crc + p.missing + p.suspect
                if n_bad:
                    bad_hours.append(v.hour)
        if not bad_hours or total == 0 or bad / total > th.dropout_dead_share:
            continue
        episodes = _episodes(bad_hours)
        recent = max(bad_hours) >= end - th.dropout_clear_h
        if recent and (episodes >= th.dropout_episodes or index in active):
            out.append(Finding("probe_dropouts", f"probe_dropouts:{index}", {
                "probe": index, "episodes": episodes, "hours": len(bad_hours),
                "bad_readings": bad, "readings": total}))
    return out


def evaluate(series: Sequence[Vitals], now_hour: int, active: Collection[str] = (),
             th: Thresholds = DEFAULTS) -> list[Finding]:
    """Every finding at the end of hour `now_hour`; `active`: the keys already open."""
    found = [duty_rising(series, now_hour, "duty_rising" in active, th),
             defrost_timeouts(series, now_hour, "defrost_timeouts" in active, th),
             pulldown_slower(series, now_hour, "pulldown_slower" in active, th)]
    probes = {int(k.partition(":")[2]) for k in active if k.startswith("probe_dropouts:")}
    return [f for f in found if f is not None] + probe_dropouts(series, now_hour, probes, th)
