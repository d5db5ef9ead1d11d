"""HACCP record and owner views: queries over the cloud database, feeding pure computations.

The pure part lives in `cloud_gateway.haccp_stats` (`mkt`, `day_stats`, `excursions`,
`intervals`, `downsample`, `fold_alerts`) and `cloud_gateway.haccp_render` (the CSV/HTML/SVG
renderers); both are re-exported here, so `haccp.mkt` and `haccp.write_csv` keep working.
This module reads the cloud database (read-only) and feeds them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from xiaodian.i18n import Translator

from . import sql
from .haccp_render import CSV_FIELDS, render_html, svg_chart, write_csv
from .haccp_stats import (
    DH_R_K,
    EVENT_STATE_FIELD,
    FREEZE_C,
    HOT_C,
    HYSTERESIS_C,
    KELVIN,
    MAX_GAP_S,
    MAX_HISTORY_POINTS,
    MIN_EXCURSION_S,
    RETURN_S,
    WARM_C,
    AlertRecord,
    DayStats,
    Excursion,
    FridgeDay,
    Sample,
    chart_buckets,
    day_stats,
    downsample,
    excursions,
    fold_alerts,
    fridge_state,
    intervals,
    mkt,
)

__all__ = [
    "CSV_FIELDS", "DH_R_K", "EVENT_STATE_FIELD", "FREEZE_C", "HOT_C", "HYSTERESIS_C", "KELVIN",
    "MAX_GAP_S", "MAX_HISTORY_POINTS", "MIN_EXCURSION_S", "RETURN_S", "WARM_C", "AlertRecord",
    "DayStats", "Excursion", "FridgeDay",
    "Sample", "day_bounds", "day_stats", "downsample", "excursions", "fold_alerts",
    "fridge_day", "fridge_ids", "fridge_state", "history", "intervals", "latest_day",
    "latest_reading", "load_alerts", "load_chart_samples", "load_intervals", "load_samples",
    "mkt", "owner_view",
    "parse_day", "parse_tz", "render_html", "report", "report_html", "svg_chart", "write_csv",
]


# ---------------------------------------------------------------- queries (read-only)

# An event's time (`wall` for events stored before time correction; events_by_time indexes
# this very expression). A reading's is `wall_corrected` itself: never NULL (migration 2),
# and PostgreSQL's partition key, which a query must name as it is for the planner to skip
# the months it does not need.
_T = "COALESCE(wall_corrected, wall)"
_RT = "wall_corrected"


def fridge_ids(conn: sql.Connection, store: str) -> list[str]:
    """The store's fridges with readings: one index probe per fridge (a loose index scan)
    instead of reading every reading of the store as DISTINCT would."""
    return [r[0] for r in conn.execute(
        "WITH RECURSIVE d(device) AS (SELECT MIN(device) FROM readings WHERE store = ?"
        " UNION ALL SELECT (SELECT MIN(device) FROM readings WHERE store = ?"
        " AND device > d.device) FROM d WHERE d.device IS NOT NULL)"
        " SELECT device FROM d WHERE device IS NOT NULL ORDER BY device", (store, store))]


def latest_reading(conn: sql.Connection, store: str, fridge: str) -> Sample | None:
    row = conn.execute(
        f"SELECT {_RT}, product_c, air_c FROM readings WHERE store = ? AND device = ?"
        f" ORDER BY {_RT} DESC LIMIT 1", (store, fridge)).fetchone()
    return None if row is None else Sample(row[0], row[1], row[2])


def load_samples(conn: sql.Connection, store: str, fridge: str, since: float,
                 until: float) -> list[Sample]:
    """Readings with since <= t < until, in time order."""
    return [Sample(t, product_c, air_c) for t, product_c, air_c in sql.tuples(
        conn, f"SELECT {_RT} AS t, product_c, air_c FROM readings WHERE store = ?"
        f" AND device = ? AND {_RT} >= ? AND {_RT} < ? ORDER BY t",
        (store, fridge, since, until))]


def load_chart_samples(conn: sql.Connection, store: str, fridge: str, since: float,
                       until: float, max_points: int = MAX_HISTORY_POINTS
                       ) -> tuple[int, list[Sample]]:
    """(readings with since <= t < until, the chart's samples, `haccp_stats.downsample`d).

    On PostgreSQL the database downsamples, so a fridge-day of 8,640 readings crosses the
    network as at most `max_points` rows (tests hold it equal to the pure rule). SQLite
    runs in this process: its rows cost no round trip, and the pure rule is applied as is."""
    buckets, width = chart_buckets(since, until, max_points)
    if sql.is_postgres(conn):
        where = f"FROM readings WHERE store = ? AND device = ? AND {_RT} >= ? AND {_RT} < ?"
        total, extremes = _pg_extremes(conn, where, (store, fridge, since, until), since,
                                       width, buckets)
        if total > max_points:
            return total, extremes
    samples = load_samples(conn, store, fridge, since, until)
    return len(samples), downsample(samples, since, until, max_points)


def _pg_extremes(conn: sql.Connection, where: str, key: tuple[Any, ...], since: float,
                 width: float, buckets: int) -> tuple[int, list[Sample]]:
    """PostgreSQL: (readings counted, each bucket's extremes) from one hash aggregate, no
    sort. An array compares element by element (NULL above any number), so
    MIN(ARRAY[product, t, air]) is the coldest, earliest sample and MAX(ARRAY[product, -t,
    air]) the warmest, earliest: ~3x less server time than ranking with window functions,
    ~2x less in all than sending every reading to Python (bench.pg_scale)."""
    total, out = 0, set()
    for n, lo, hi, first in sql.tuples(
            conn,
            "SELECT COUNT(*), MIN(ARRAY[product_c, t, air_c]) FILTER (WHERE product_c IS NOT"
            " NULL), MAX(ARRAY[product_c, -t, air_c]) FILTER (WHERE product_c IS NOT NULL),"
            " MIN(ARRAY[t, air_c])"
            f" FROM (SELECT {_RT} AS t, product_c, air_c,"
            f"  LEAST(FLOOR(({_RT} - ?) / ?)::INTEGER, ?) AS b {where}) AS s GROUP BY b",
            (since, width, buckets - 1, *key)):
        total += n
        if lo is None:
            out.add(Sample(first[0], None, first[1]))
            continue
        out.add(Sample(lo[1], lo[0], lo[2]))
        out.add(Sample(-hi[1], hi[0], hi[2]))
    return total, sorted(out, key=lambda s: s.t)


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
    total, shown = load_chart_samples(conn, store, fridge, since, until + 0.001, max_points)
    return {
        "store": store, "fridge": fridge, "since": since, "until": until, "hours": hours,
        "total": total, "downsampled": len(shown) < total,
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
    # Per fridge: the newest of each is one index probe, the store's newest a scan.
    newest = [s.t for f in fridge_ids(conn, store)
              if (s := latest_reading(conn, store, f)) is not None]
    return datetime.fromtimestamp(max(newest), tz).date() if newest else None


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


def report(conn: sql.Connection, store: str, day: date, tz: ZoneInfo,
           fridge: str | None = None) -> list[FridgeDay]:
    """HACCP records of one day for every fridge of the store (or one)."""
    fridges = [fridge] if fridge is not None else fridge_ids(conn, store)
    return [fridge_day(conn, store, f, day, tz) for f in fridges]


def report_html(conn: sql.Connection, days: Sequence[FridgeDay], t: Translator,
                **page: Any) -> str:
    """The printable record in `t`'s language (`page`: store_name, switch)."""
    charts = [svg_chart(history(conn, d.store, d.fridge, (d.until - d.since) / 3600,
                                until=d.until), ZoneInfo(d.tz)) for d in days]
    return render_html(days, charts, t, **page)
