"""HACCP statistics: pure computations over readings and alert events.

`mkt`, `day_stats`, `excursions`, `intervals`, `downsample`, `fold_alerts` and the records
they return (`FridgeDay` gathers one fridge's day) take plain values and are what the tests
pin down; `cloud_gateway.haccp` feeds them from the database and re-exports them.

Time is `wall_corrected` (the terminal's wall clock corrected by the cloud's offset estimate;
`wall` for records stored before correction existed). Statistics are **time-weighted**: each
sample stands for half the interval to each neighbour, and an interval longer than
`MAX_GAP_S` counts only as `MAX_GAP_S` (a data gap is not filled with the last value). With
evenly spaced samples this is the plain mean.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

DH_R_K = 10_000.0  # ΔH/R for mean kinetic temperature (USP <1079>: 83.144 kJ/mol)
KELVIN = 273.15
MAX_GAP_S = 900.0  # longest interval one sample may stand for (each side), seconds
WARM_C, HOT_C, FREEZE_C = 5.0, 8.0, -0.5  # the limits drawn and reported (docs/design.md)
MAX_HISTORY_POINTS = 1000
EVENT_STATE_FIELD = {"door": "open", "compressor": "on", "defrost": "active"}


# ---------------------------------------------------------------- pure: statistics


def _weights(times: Sequence[float], max_gap_s: float) -> list[float]:
    """Half the (capped) interval to each neighbour; equal weights if all times coincide."""
    n = len(times)
    if n == 1:
        return [1.0]
    gaps = [min(max(times[i + 1] - times[i], 0.0), max_gap_s) for i in range(n - 1)]
    w = [((gaps[i - 1] if i > 0 else 0.0) + (gaps[i] if i < n - 1 else 0.0)) / 2
         for i in range(n)]
    return w if sum(w) > 0 else [1.0] * n


def mkt(samples: Sequence[tuple[float, float]], *, dh_r: float = DH_R_K,
        max_gap_s: float = MAX_GAP_S) -> float:
    """Mean kinetic temperature (°C) of (time, °C) samples, time-weighted.

    MKT = (ΔH/R) / −ln(Σ wᵢ·exp(−ΔH/(R·Tᵢ)) / Σ wᵢ), Tᵢ in kelvin.
    """
    if not samples:
        raise ValueError("mkt of no samples")
    ordered = sorted(samples)
    w = _weights([t for t, _ in ordered], max_gap_s)
    # Factor out the largest exponent so exp() cannot underflow for cold samples.
    exps = [-dh_r / (c + KELVIN) for _, c in ordered]
    top = max(exps)
    s = sum(wi * math.exp(e - top) for wi, e in zip(w, exps, strict=True)) / sum(w)
    return dh_r / -(top + math.log(s)) - KELVIN


@dataclass(frozen=True)
class DayStats:
    samples: int
    min_c: float
    max_c: float
    mean_c: float  # time-weighted, like the MKT
    mkt_c: float
    first_t: float
    last_t: float


def day_stats(samples: Sequence[tuple[float, float]],
              max_gap_s: float = MAX_GAP_S) -> DayStats | None:
    """Min, max, time-weighted mean and MKT of (time, °C) samples; None without samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    values = [c for _, c in ordered]
    w = _weights([t for t, _ in ordered], max_gap_s)
    mean = sum(wi * c for wi, c in zip(w, values, strict=True)) / sum(w)
    return DayStats(len(ordered), min(values), max(values), mean,
                    mkt(ordered, max_gap_s=max_gap_s), ordered[0][0], ordered[-1][0])


# When an excursion is over, and which are too short to record: a single reading on the
# limit, or a probe dithering across it, is measurement noise, not food that was warm. Why
# these values, with sources: docs/design.md, "HACCP excursions".
HYSTERESIS_C = 0.5  # the DS18B20's stated accuracy (±0.5 °C), half EN 12830 class 1's ±1 K
RETURN_S = 600.0  # back at or below the limit this long (and not HYSTERESIS_C below) ends one
MIN_EXCURSION_S = 600.0  # 10 min: ten 1-min readings, a third of the warm alert's 30 min


@dataclass(frozen=True)
class Excursion:
    threshold_c: float
    start: float  # time of the first sample above the threshold
    end: float  # time of the first sample back at or below it (or the last sample)
    peak_c: float
    ongoing: bool  # still above at the last sample: `end` is only the last sample's time

    @property
    def duration_s(self) -> float:
        return self.end - self.start


def excursions(samples: Sequence[tuple[float, float]], threshold_c: float, *,
               hysteresis_c: float = HYSTERESIS_C, return_s: float = RETURN_S,
               min_duration_s: float = MIN_EXCURSION_S) -> list[Excursion]:
    """Periods above `threshold_c`, in time order.

    One starts at the first sample strictly above the threshold. It ends at the first sample
    back at or below it, once the temperature has either reached `threshold_c - hysteresis_c`
    or stayed at or below the threshold for `return_s`; going above again before that
    continues the same excursion (a dithering probe is one excursion, not many). It is kept
    if it lasted at least `min_duration_s` (an ongoing one: if it has already).
    """
    ordered = sorted(samples)
    out: list[Excursion] = []
    start: float | None = None
    back: float | None = None  # first sample at or below the threshold, not yet confirmed
    peak = -math.inf
    for t, c in ordered:
        if c > threshold_c:
            if start is None:
                start, peak = t, c
            back = None
            peak = max(peak, c)
            continue
        if start is None:
            continue
        back = t if back is None else back
        if c <= threshold_c - hysteresis_c or t - back >= return_s:
            out.append(Excursion(threshold_c, start, back, peak, False))
            start = back = None
    if start is not None:  # the data ends during one (or before its return was confirmed)
        end = back if back is not None else ordered[-1][0]
        out.append(Excursion(threshold_c, start, end, peak, back is None))
    return [e for e in out if e.duration_s >= min_duration_s]


def intervals(changes: Sequence[tuple[float, bool]], since: float,
              until: float) -> list[tuple[float, float]]:
    """[start, end) spans where a state was on, clipped to [since, until].

    `changes` are (time, on) in time order and may start before `since` (the state then).
    """
    out: list[tuple[float, float]] = []
    on_since: float | None = None
    for t, on in changes:
        if on and on_since is None:
            on_since = t
        elif not on and on_since is not None:
            if t > since and on_since < until:
                out.append((max(on_since, since), min(t, until)))
            on_since = None
    if on_since is not None and on_since < until:
        out.append((max(on_since, since), until))
    return out


@dataclass(frozen=True)
class Sample:
    t: float
    product_c: float | None
    air_c: float | None


def chart_buckets(since: float, until: float, max_points: int) -> tuple[int, float]:
    """(number of buckets, their width in s) for a chart of at most `max_points` over
    [since, until): two samples a bucket. Buckets of equal time, not of equal count, so a
    gap in the data stays a gap on the chart."""
    if max_points < 2:
        raise ValueError(f"a chart needs at least 2 points, not {max_points}")
    buckets = max_points // 2
    return buckets, max(until - since, 1e-9) / buckets


def bucket_of(t: float, since: float, width: float, buckets: int) -> int:
    """A reading's bucket: the database computes the very same expression (haccp)."""
    return min(math.floor((t - since) / width), buckets - 1)


def _air_key(s: Sample) -> float:
    """NULL air last, as PostgreSQL orders arrays and the SQLite query says."""
    return math.inf if s.air_c is None else s.air_c


def downsample(samples: Sequence[Sample], since: float, until: float,
               max_points: int = MAX_HISTORY_POINTS) -> list[Sample]:
    """At most `max_points` of `samples` (since <= t < until, in time order): all of them if
    they fit, else per time bucket the coldest and the warmest product sample, the earliest
    of equals (a bucket without a product temperature: its earliest reading).

    Keeping both extremes (not a mean) keeps every peak visible on the chart. The database
    does the same in `haccp.load_chart_samples`; tests hold the two equal."""
    if len(samples) <= max_points:
        return list(samples)
    buckets, width = chart_buckets(since, until, max_points)
    groups: dict[int, list[Sample]] = {}
    for s in samples:
        groups.setdefault(bucket_of(s.t, since, width, buckets), []).append(s)
    out: list[Sample] = []
    for chunk in groups.values():
        valued = [s for s in chunk if s.product_c is not None]
        if not valued:
            out.append(min(chunk, key=lambda s: (s.t, _air_key(s))))
            continue
        lo = min(valued, key=lambda s: (s.product_c or 0.0, s.t, _air_key(s)))
        hi = max(valued, key=lambda s: (s.product_c or 0.0, -s.t, _air_key(s)))
        out.extend(sorted({lo, hi}, key=lambda s: s.t))
    return sorted(out, key=lambda s: s.t)


# ---------------------------------------------------------------- pure: alerts


@dataclass(frozen=True)
class AlertRecord:
    """An alert's life folded from its raised/updated/cleared events."""

    id: str
    fridge: str
    rule: str
    severity: str
    audience: str
    message: str
    started_at: float
    raised_at: float  # when the cloud's copy says the first change happened
    changed_at: float
    cleared_at: float | None
    peak_c: float | None
    acked_at: float | None = None
    acked_by: str | None = None
    corrective_action: str | None = None
    # The newest change's `data`: its reason and numbers, for `xiaodian.wire.alert_text`.
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.cleared_at is None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "fridge": self.fridge, "rule": self.rule,
                "severity": self.severity, "audience": self.audience,
                "message": self.message, "started_at": self.started_at,
                "raised_at": self.raised_at, "changed_at": self.changed_at,
                "cleared_at": self.cleared_at, "peak_c": self.peak_c, "active": self.active,
                "acknowledged": self.acked_at is not None, "acked_at": self.acked_at,
                "acked_by": self.acked_by, "corrective_action": self.corrective_action,
                "data": self.data}


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def fold_alerts(changes: Iterable[tuple[str, float, dict[str, Any]]]) -> list[AlertRecord]:
    """(device, time, alert event data) in time order -> one record per alert id.

    Malformed data (no id or change) is skipped. A change after "cleared" reopens the alert.
    """
    out: dict[str, AlertRecord] = {}
    for device, t, d in changes:
        aid, change = d.get("id"), d.get("change")
        if not isinstance(aid, str) or change not in ("raised", "updated", "cleared"):
            continue
        prev = out.get(aid)
        peak = _num(d.get("peak_c"))
        if prev is not None and prev.peak_c is not None:
            peak = prev.peak_c if peak is None else max(peak, prev.peak_c)
        out[aid] = AlertRecord(
            id=aid, fridge=str(d.get("fridge") or device), rule=str(d.get("rule", "?")),
            severity=str(d.get("severity", "warning")), audience=str(d.get("audience", "owner")),
            message=str(d.get("message", "")),
            started_at=_num(d.get("started_at")) or (prev.started_at if prev else t),
            raised_at=prev.raised_at if prev else t, changed_at=t,
            cleared_at=t if change == "cleared" else None, peak_c=peak,
            data=d["data"] if isinstance(d.get("data"), dict) else {})
    return list(out.values())


def fridge_state(alerts: Iterable[AlertRecord]) -> str:
    """ok / warning / critical from the active alerts the owner hears about."""
    levels = {a.severity for a in alerts if a.active and a.audience != "terminal"}
    return "critical" if "critical" in levels else "warning" if levels else "ok"


@dataclass(frozen=True)
class FridgeDay:
    """One fridge's HACCP record for one local day (product temperature)."""

    store: str
    fridge: str
    day: date
    tz: str
    since: float
    until: float
    stats: DayStats | None
    excursions: list[Excursion] = field(default_factory=list)
    alerts: list[AlertRecord] = field(default_factory=list)
