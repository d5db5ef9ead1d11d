"""HACCP record renderers: the CSV export, the SVG chart and the printable HTML page.

Pure: they take `FridgeDay` records and `history()` dicts (cloud_gateway.haccp builds both
from the database) and return text; `cloud_gateway.haccp` re-exports them. Every time is in
the record's zone (the store's own, cloud_gateway/stores.py): the CSV's ISO times carry its
offset, the chart's axis names it. The page (templates/haccp.html) is in the reader's
language; the CSV is for machines and stays English.
"""

from __future__ import annotations

import csv
import html
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from xiaodian.i18n import Translator
from xiaodian.i18n.templates import render

from .haccp_stats import (
    DH_R_K,
    FREEZE_C,
    HOT_C,
    HYSTERESIS_C,
    MAX_GAP_S,
    MIN_EXCURSION_S,
    RETURN_S,
    WARM_C,
    FridgeDay,
)
from .page_text import TEMPLATE_HELPERS

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


def svg_chart(hist: dict[str, Any], tz: ZoneInfo, width: int = 360, height: int = 230) -> str:
    """A static SVG of a history(): product and air lines, limits, event bands; the time
    axis in `tz` (the store's zone), which its last label names."""
    # Sized for a phone: drawn at about its own size there (12 px text), scaled up on paper.
    x0, x1, y0, y1 = 30.0, width - 6.0, 8.0, height - 24.0
    t0, t1 = float(hist["since"]), float(hist["until"])
    vals = [float(v) for r in hist["readings"] for v in r[1:] if v is not None]
    lo = math.floor(min([FREEZE_C - 1.5, *vals]))
    hi = math.ceil(max([HOT_C + 2.0, *vals]))

    def x(t: float) -> float:
        return x0 + (t - t0) / max(t1 - t0, 1.0) * (x1 - x0)

    def y(c: float) -> float:
        return y1 - (c - lo) / (hi - lo) * (y1 - y0)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} '
             f'{height}" width="{width}" height="{height}" font-size="12" '
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
        parts.append(f'<text x="{x0 - 3}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick}</text>')
    for c, color, name in ((HOT_C, "#b42318", "hot"), (WARM_C, "#dc6803", "warm"),
                           (FREEZE_C, "#175cd3", "freeze")):
        parts.append(f'<line class="limit limit-{name}" x1="{x0}" x2="{x1}" y1="{y(c):.1f}" '
                     f'y2="{y(c):.1f}" stroke="{color}" stroke-dasharray="5 4"/>'
                     f'<text x="{x1 - 2}" y="{y(c) - 2:.1f}" text-anchor="end" fill="{color}">'
                     f'{c:g}\u00a0°C</text>')
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
        label = datetime.fromtimestamp(t, tz).strftime("%H:%M")
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(f'<text class="tick" x="{x(t):.1f}" y="{height - 10}" '
                     f'text-anchor="{anchor}">{label}</text>')
    parts.append(f'<text class="zone" x="{x0 + 4:.1f}" y="{y0 + 14:.1f}" text-anchor="start" '
                 f'fill="#5b6570">{html.escape(tz.key)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(days: Sequence[FridgeDay], charts: Sequence[str], t: Translator, *,
                store_name: str = "", switch: Sequence[dict[str, Any]] = ()) -> str:
    """A printable page: per fridge a summary, the chart, excursions and alerts."""
    rows = []
    for d, chart in zip(days, charts, strict=True):
        rows.append({"day": d, "chart": chart, "alerts": [
            {"record": a, "row": a.to_dict()} for a in d.alerts]})
    return render("cloud_gateway", "templates", "haccp.html", t, days=rows,
                  store=days[0].store if days else "", day=days[0].day if days else None,
                  tz=days[0].tz if days else "", dh_r=DH_R_K, warm_c=WARM_C, hot_c=HOT_C,
                  hysteresis_c=HYSTERESIS_C, return_min=round(RETURN_S / 60),
                  min_min=round(MIN_EXCURSION_S / 60), switch=list(switch),
                  store_name=store_name or (days[0].store if days else ""),
                  **TEMPLATE_HELPERS)
