"""HACCP record and owner views: pure computations over readings and events, plus queries.

The pure part (`mkt`, `day_stats`, `excursions`, `intervals`, `downsample`, `fold_alerts`,
the CSV/HTML/SVG renderers) takes plain values and is what the tests pin down. The query part
reads the cloud database (read-only) and feeds it.

Time is `wall_corrected` (the terminal's wall clock corrected by the cloud's offset estimate;
`wall` for records stored before correction existed). Statistics are **time-weighted**: each
sample stands for half the interval to each neighbour, and an interval longer than
`MAX_GAP_S` counts only as `MAX_GAP_S` (a data gap is not filled with the last value). With
evenly spaced samples this is the plain mean.
"""

from __future__ import annotations

import csv
import html
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import sql

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


def excursions(samples: Sequence[tuple[float, float]], threshold_c: float) -> list[Excursion]:
    """Periods with the temperature strictly above `threshold_c`, in time order."""
    out: list[Excursion] = []
    start: float | None = None
    peak = -math.inf
    for t, c in sorted(samples):
        if c > threshold_c:
            if start is None:
                start, peak = t, c
            peak = max(peak, c)
        elif start is not None:
            out.append(Excursion(threshold_c, start, t, peak, False))
            start = None
    if start is not None:
        out.append(Excursion(threshold_c, start, sorted(samples)[-1][0], peak, True))
    return out


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


def downsample(samples: Sequence[Sample], max_points: int = MAX_HISTORY_POINTS) -> list[Sample]:
    """At most `max_points` samples: per bucket the coldest and warmest product sample.

    Keeping both extremes (not a mean) keeps every peak visible on the chart.
    """
    if len(samples) <= max_points:
        return list(samples)
    buckets = max(max_points // 2, 1)
    size = math.ceil(len(samples) / buckets)
    out: list[Sample] = []
    for i in range(0, len(samples), size):
        chunk = samples[i:i + size]
        valued = [s for s in chunk if s.product_c is not None]
        if not valued:
            out.append(chunk[0])
            continue
        lo = min(valued, key=lambda s: s.product_c or 0.0)
        hi = max(valued, key=lambda s: s.product_c or 0.0)
        out.extend(sorted({lo, hi}, key=lambda s: s.t))
    return out[:max_points]


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
                "acked_by": self.acked_by, "corrective_action": self.corrective_action}


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
            cleared_at=t if change == "cleared" else None, peak_c=peak)
    return list(out.values())


def fridge_state(alerts: Iterable[AlertRecord]) -> str:
    """ok / warning / critical from the active alerts the owner hears about."""
    levels = {a.severity for a in alerts if a.active and a.audience != "terminal"}
    return "critical" if "critical" in levels else "warning" if levels else "ok"


# ---------------------------------------------------------------- queries (read-only)

_T = "COALESCE(wall_corrected, wall)"


def fridge_ids(conn: sql.Connection, store: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT DISTINCT device FROM readings WHERE store = ? ORDER BY device", (store,))]


def latest_reading(conn: sql.Connection, store: str, fridge: str) -> Sample | None:
    row = conn.execute(
        f"SELECT {_T}, product_c, air_c FROM readings WHERE store = ? AND device = ?"
        f" ORDER BY {_T} DESC LIMIT 1", (store, fridge)).fetchone()
    return None if row is None else Sample(row[0], row[1], row[2])


def load_samples(conn: sql.Connection, store: str, fridge: str, since: float,
                 until: float) -> list[Sample]:
    """Readings with since <= t < until, in time order."""
    return [Sample(r[0], r[1], r[2]) for r in conn.execute(
        f"SELECT {_T} AS t, product_c, air_c FROM readings WHERE store = ? AND device = ?"
        f" AND {_T} >= ? AND {_T} < ? ORDER BY t", (store, fridge, since, until))]


def load_intervals(conn: sql.Connection, store: str, fridge: str, since: float,
                   until: float) -> dict[str, list[tuple[float, float]]]:
    """Door-open, compressor-on and defrost spans within [since, until]."""
    out: dict[str, list[tuple[float, float]]] = {}
    for type_, key in EVENT_STATE_FIELD.items():
        # The last change before the window gives the state at its start.
        rows = conn.execute(
            f"SELECT t, data FROM (SELECT {_T} AS t, data FROM events WHERE store = ?"
            f" AND device = ? AND type = ? AND {_T} < ? ORDER BY t DESC LIMIT 1) AS before"
            f" UNION ALL SELECT {_T} AS t, data FROM events WHERE store = ? AND device = ?"
            f" AND type = ? AND {_T} >= ? AND {_T} < ? ORDER BY t",
            (store, fridge, type_, since, store, fridge, type_, since, until)).fetchall()
        changes = [(float(t), bool(json.loads(data).get(key))) for t, data in rows]
        out[type_] = intervals(changes, since, until)
    return out


def load_alerts(conn: sql.Connection, store: str,
                fridge: str | None = None) -> list[AlertRecord]:
    """Alerts of a store (or one fridge) from its alert events, with acks if recorded.

    The fridge is the one the alert names: agents send alerts as the stream of device
    `alerts` (older ones as events of the fridge itself), so the device says nothing."""
    sql = f"SELECT device, {_T} AS t, data FROM events WHERE store = ? AND type = 'alert'"
    params: list[Any] = [store]
    changes = []
    for device, t, data in conn.execute(sql + " ORDER BY t, boot, seq", params):
        try:
            d = json.loads(data)
        except ValueError:
            continue
        if isinstance(d, dict):
            changes.append((str(device), float(t), d))
    records = fold_alerts(changes)
    if fridge is not None:
        records = [a for a in records if a.fridge == fridge]
    return _with_acks(conn, store, records)


def _with_acks(conn: sql.Connection, store: str,
               alerts: list[AlertRecord]) -> list[AlertRecord]:
    """Acknowledgements from the escalation's `alerts` table (cloud_gateway.alerts), if any."""
    cols = sql.columns(conn, "alerts")
    if not alerts or not {"store", "id", "acked_at", "acked_by", "corrective_action"} <= cols:
        return alerts
    acks = {r[0]: r for r in conn.execute(
        "SELECT id, acked_at, acked_by, corrective_action FROM alerts"
        " WHERE store = ? AND acked_at IS NOT NULL", (store,))}
    out = []
    for a in alerts:
        row = acks.get(a.id)
        if row is not None:
            a = replace(a, acked_at=float(row[1]), acked_by=row[2], corrective_action=row[3])
        out.append(a)
    return out


# ---------------------------------------------------------------- views


def history(conn: sql.Connection, store: str, fridge: str, hours: float,
            until: float | None = None, max_points: int = MAX_HISTORY_POINTS) -> dict[str, Any]:
    """The owner chart's data: readings (≤ max_points) and event spans over `hours`.

    The window ends at `until`, by default at the fridge's newest reading, so a fridge whose
    data stopped still shows its last day (and the page says how old it is).
    """
    if until is None:
        last = latest_reading(conn, store, fridge)
        until = last.t if last else datetime.now(UTC).timestamp()
    since = until - hours * 3600
    samples = load_samples(conn, store, fridge, since, until + 0.001)
    shown = downsample(samples, max_points)
    return {
        "store": store, "fridge": fridge, "since": since, "until": until, "hours": hours,
        "total": len(samples), "downsampled": len(shown) < len(samples),
        "readings": [[s.t, s.product_c, s.air_c] for s in shown],
        "intervals": {k: [list(iv) for iv in v]
                      for k, v in load_intervals(conn, store, fridge, since, until).items()},
        "limits": {"warm_c": WARM_C, "hot_c": HOT_C, "freeze_c": FREEZE_C},
    }


def owner_view(conn: sql.Connection, store: str) -> dict[str, Any]:
    """Each fridge's newest product/air temperature, state and active alerts."""
    alerts = load_alerts(conn, store)
    fridges = []
    for f in sorted(set(fridge_ids(conn, store)) | {a.fridge for a in alerts if a.active}):
        mine = [a for a in alerts if a.fridge == f and a.active]
        last = latest_reading(conn, store, f)
        fridges.append({
            "fridge": f, "state": fridge_state(mine),
            "latest": None if last is None else {"t": last.t, "product_c": last.product_c,
                                                 "air_c": last.air_c},
            "alerts": [a.to_dict() for a in sorted(mine, key=lambda a: a.started_at)],
        })
    return {"store": store, "fridges": fridges}


def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text) if len(text) == 10 else date.fromisoformat("x")
    except ValueError:
        raise ValueError(f"day: expected YYYY-MM-DD, got {text[:32]!r}") from None


def parse_tz(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ValueError, OSError, ZoneInfoNotFoundError):
        raise ValueError(f"tz: unknown time zone {name[:64]!r} (e.g. Asia/Shanghai)") from None


def day_bounds(day: date, tz: ZoneInfo) -> tuple[float, float]:
    """[start, end) of a local calendar day as Unix seconds (23 or 25 h across DST)."""
    start = datetime.combine(day, time(), tz)
    end = datetime.combine(day + timedelta(days=1), time(), tz)
    return start.timestamp(), end.timestamp()


def latest_day(conn: sql.Connection, store: str, tz: ZoneInfo) -> date | None:
    """The local day of the store's newest reading."""
    t = conn.execute(f"SELECT MAX({_T}) FROM readings WHERE store = ?", (store,)).fetchone()[0]
    return None if t is None else datetime.fromtimestamp(t, tz).date()


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


def fridge_day(conn: sql.Connection, store: str, fridge: str, day: date,
               tz: ZoneInfo) -> FridgeDay:
    since, until = day_bounds(day, tz)
    pts = [(s.t, s.product_c) for s in load_samples(conn, store, fridge, since, until)
           if s.product_c is not None]
    exc = sorted(excursions(pts, WARM_C) + excursions(pts, HOT_C),
                 key=lambda e: (e.start, e.threshold_c))
    # Alerts whose life overlaps the day.
    alerts = [a for a in load_alerts(conn, store, fridge)
              if a.started_at < until and (a.cleared_at is None or a.cleared_at >= since)]
    return FridgeDay(store, fridge, day, tz.key, since, until, day_stats(pts), exc, alerts)


# ---------------------------------------------------------------- renderers

CSV_FIELDS = ("record", "store", "fridge", "day", "tz", "samples", "min_c", "max_c", "mean_c",
              "mkt_c", "threshold_c", "start", "end", "duration_min", "peak_c", "ongoing",
              "alert_id", "rule", "severity", "message", "cleared", "acknowledged",
              "acked_by", "corrective_action")


def _iso(t: float | None, tz: ZoneInfo) -> str:
    return "" if t is None else datetime.fromtimestamp(t, tz).isoformat(timespec="seconds")


def _r(v: float | None, nd: int = 2) -> str:
    return "" if v is None else f"{v:.{nd}f}"


def write_csv(days: Sequence[FridgeDay], out: TextIO) -> None:
    """One "day" row per fridge and day, then one row per excursion and per alert."""
    w = csv.DictWriter(out, CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for d in days:
        tz = ZoneInfo(d.tz)
        base = {"store": d.store, "fridge": d.fridge, "day": d.day.isoformat(), "tz": d.tz}
        s = d.stats
        w.writerow(base | {"record": "day", "samples": s.samples if s else 0,
                           "min_c": _r(s.min_c if s else None),
                           "max_c": _r(s.max_c if s else None),
                           "mean_c": _r(s.mean_c if s else None),
                           "mkt_c": _r(s.mkt_c if s else None)})
        for e in d.excursions:
            w.writerow(base | {"record": "excursion", "threshold_c": f"{e.threshold_c:g}",
                               "start": _iso(e.start, tz), "end": _iso(e.end, tz),
                               "duration_min": _r(e.duration_s / 60, 1),
                               "peak_c": _r(e.peak_c), "ongoing": str(e.ongoing).lower()})
        for a in d.alerts:
            w.writerow(base | {"record": "alert", "alert_id": a.id, "rule": a.rule,
                               "severity": a.severity, "message": a.message,
                               "start": _iso(a.started_at, tz), "peak_c": _r(a.peak_c),
                               "cleared": _iso(a.cleared_at, tz),
                               "acknowledged": _iso(a.acked_at, tz),
                               "acked_by": a.acked_by or "",
                               "corrective_action": a.corrective_action or ""})


def svg_chart(hist: dict[str, Any], width: int = 900, height: int = 260) -> str:
    """A static SVG of a history(): product and air lines, limits, event bands."""
    x0, x1, y0, y1 = 44.0, width - 8.0, 10.0, height - 26.0
    t0, t1 = float(hist["since"]), float(hist["until"])
    vals = [float(v) for r in hist["readings"] for v in r[1:] if v is not None]
    lo = math.floor(min([FREEZE_C - 1.5, *vals]))
    hi = math.ceil(max([HOT_C + 2.0, *vals]))

    def x(t: float) -> float:
        return x0 + (t - t0) / max(t1 - t0, 1.0) * (x1 - x0)

    def y(c: float) -> float:
        return y1 - (c - lo) / (hi - lo) * (y1 - y0)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} '
             f'{height}" width="{width}" height="{height}" font-size="10" '
             'font-family="sans-serif">',
             f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" fill="#fff" '
             'stroke="#ccd"/>']
    spans = hist["intervals"]
    for s, e in spans.get("defrost", []):
        parts.append(f'<rect class="defrost" x="{x(s):.1f}" y="{y0}" '
                     f'width="{max(x(e) - x(s), 1):.1f}" height="{y1 - y0}" fill="#cfe3ff"'
                     ' opacity=".6"/>')
    for s, e in spans.get("compressor", []):
        parts.append(f'<rect class="compressor" x="{x(s):.1f}" y="{y1 - 5}" '
                     f'width="{max(x(e) - x(s), 1):.1f}" height="5" fill="#9aa4ae"/>')
    for s, e in spans.get("door", []):
        parts.append(f'<rect class="door" x="{x(s):.1f}" y="{y0}" '
                     f'width="{max(x(e) - x(s), 2):.1f}" height="7" fill="#c2410c"/>')
    for tick in range(int(lo), int(hi) + 1, 2):
        parts.append(f'<text x="{x0 - 4}" y="{y(tick) + 3:.1f}" text-anchor="end">{tick}</text>')
    for c, color, name in ((HOT_C, "#b42318", "hot"), (WARM_C, "#dc6803", "warm"),
                           (FREEZE_C, "#175cd3", "freeze")):
        parts.append(f'<line class="limit limit-{name}" x1="{x0}" x2="{x1}" y1="{y(c):.1f}" '
                     f'y2="{y(c):.1f}" stroke="{color}" stroke-dasharray="5 4"/>'
                     f'<text x="{x1 - 2}" y="{y(c) - 2:.1f}" text-anchor="end" fill="{color}">'
                     f'{c:g} °C</text>')
    for idx, cls, color, dash in ((2, "air", "#8a94a0", ' stroke-dasharray="2 2"'),
                                  (1, "product", "#12805c", "")):
        runs: list[list[str]] = [[]]
        prev: float | None = None
        for r in hist["readings"]:
            if r[idx] is None or (prev is not None and r[0] - prev > MAX_GAP_S):
                runs.append([])
            if r[idx] is not None:
                runs[-1].append(f"{x(r[0]):.1f},{y(r[idx]):.1f}")
            prev = r[0]
        for run in runs:
            if run:
                parts.append(f'<polyline class="line {cls}" fill="none" stroke="{color}" '
                             f'stroke-width="1.6"{dash} points="{" ".join(run)}"/>')
    for i in range(5):
        t = t0 + (t1 - t0) * i / 4
        label = datetime.fromtimestamp(t, UTC).strftime("%H:%M")
        parts.append(f'<text x="{x(t):.1f}" y="{height - 10}" text-anchor="middle">'
                     f'{label} UTC</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(days: Sequence[FridgeDay], charts: Sequence[str]) -> str:
    """A printable page: per fridge a summary, the chart, excursions and alerts."""
    esc = html.escape
    title = (f"HACCP record · {days[0].store} · {days[0].day.isoformat()}" if days
             else "HACCP record")
    body = [f"<h1>{esc(title)}</h1>"]
    for d, chart in zip(days, charts, strict=True):
        tz = ZoneInfo(d.tz)
        s = d.stats
        body.append(f'<section class="fridge"><h2>{esc(d.fridge)}</h2>'
                    f'<p class="meta">{esc(d.day.isoformat())} ({esc(d.tz)}), product '
                    f'temperature; statistics time-weighted; MKT with ΔH/R = {DH_R_K:g} K</p>')
        if s is None:
            body.append("<p><b>No readings this day.</b></p>")
        else:
            body.append('<table class="stats"><tr><th>samples</th><th>min</th><th>max</th>'
                        '<th>mean</th><th>MKT</th></tr>'
                        f"<tr><td>{s.samples}</td><td>{s.min_c:.1f} °C</td>"
                        f"<td>{s.max_c:.1f} °C</td><td>{s.mean_c:.2f} °C</td>"
                        f"<td>{s.mkt_c:.2f} °C</td></tr></table>")
        body.append(chart)
        body.append("<h3>Excursions</h3>")
        if d.excursions:
            body.append('<table class="excursions"><tr><th>above</th><th>start</th>'
                        '<th>duration</th><th>peak</th></tr>')
            for e in d.excursions:
                more = " (still above at end of data)" if e.ongoing else ""
                body.append(f"<tr><td>{e.threshold_c:g} °C</td><td>{_iso(e.start, tz)}</td>"
                            f"<td>{e.duration_s / 60:.0f} min{more}</td>"
                            f"<td>{e.peak_c:.1f} °C</td></tr>")
            body.append("</table>")
        else:
            body.append("<p>None above 5 °C.</p>")
        body.append("<h3>Alerts</h3>")
        if d.alerts:
            body.append('<table class="alerts"><tr><th>rule</th><th>severity</th>'
                        '<th>started</th><th>cleared</th><th>message</th>'
                        '<th>acknowledged</th><th>corrective action</th></tr>')
            for a in d.alerts:
                ack = (f"{_iso(a.acked_at, tz)} {esc(a.acked_by or '')}" if a.acked_at
                       else "not acknowledged")
                body.append(f"<tr><td>{esc(a.rule)}</td><td>{esc(a.severity)}</td>"
                            f"<td>{_iso(a.started_at, tz)}</td>"
                            f"<td>{_iso(a.cleared_at, tz) or 'active'}</td>"
                            f"<td>{esc(a.message)}</td><td>{ack}</td>"
                            f"<td>{esc(a.corrective_action or '')}</td></tr>")
            body.append("</table>")
        else:
            body.append("<p>No alerts.</p>")
        body.append('<p class="sign">Checked by: ____________________ '
                    'Date: ____________</p></section>')
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>"
            "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d2329}"
            "table{border-collapse:collapse;margin:.4rem 0}"
            "td,th{border:1px solid #ccd;padding:.2rem .5rem;font-size:.85rem;text-align:left}"
            ".meta{color:#5b6570;font-size:.85rem}.chart{max-width:100%;height:auto}"
            "section{page-break-after:always;margin-bottom:2rem}.sign{margin-top:1.5rem}"
            "@media print{body{margin:0}}"
            "</style></head><body>" + "".join(body) + "</body></html>")


def report(conn: sql.Connection, store: str, day: date, tz: ZoneInfo,
           fridge: str | None = None) -> list[FridgeDay]:
    """HACCP records of one day for every fridge of the store (or one)."""
    fridges = [fridge] if fridge is not None else fridge_ids(conn, store)
    return [fridge_day(conn, store, f, day, tz) for f in fridges]


def report_html(conn: sql.Connection, days: Sequence[FridgeDay]) -> str:
    charts = [svg_chart(history(conn, d.store, d.fridge, (d.until - d.since) / 3600,
                                until=d.until)) for d in days]
    return render_html(days, charts)
