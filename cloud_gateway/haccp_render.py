"""HACCP record renderers: the CSV export, the SVG chart and the printable HTML page.

Pure: they take `FridgeDay` records and `history()` dicts (cloud_gateway.haccp builds both
from the database) and return text; `cloud_gateway.haccp` re-exports them.
"""

from __future__ import annotations

import csv
import html
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from .haccp_stats import DH_R_K, FREEZE_C, HOT_C, MAX_GAP_S, WARM_C, FridgeDay

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
