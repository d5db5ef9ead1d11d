"""The technician's fleet: every fridge of every store a person covers, online or not, and
one fridge's trends and event log (issue #16). Reads only; the pages are in `web/fleet.py`.

Online: the cloud hears from a fridge through its terminal, which sends each fridge's
readings every `readings_interval_s` (240 s by default since the compact format, 60 s
before: `edge/config.py`), so those batches
are the fridge's heartbeat here. A fridge is offline after three missed heartbeats (no
record for HEARTBEAT_S × 3), or at once when its terminal's Will says the terminal is gone.
"""

from __future__ import annotations

import json
from typing import Any

from xiaodian.wire.health import HOUR_S

from . import haccp, health, maintenance_alerts, sql

HEARTBEAT_S = 240.0  # the edge's default readings_interval_s
MISSED_BEATS = 3
OFFLINE_AFTER_S = HEARTBEAT_S * MISSED_BEATS
EVENT_TYPES = ("door", "compressor", "defrost", "power", "hello", "link", "lock")
TREND_DAYS = (7, 28)


def fridges(conn: sql.Connection, store_names: list[str], now: float) -> list[dict[str, Any]]:
    """One row per fridge: store, device, online, last seen, firmware, link, open alerts
    (cold-chain), open maintenance alerts (their rules), and its terminal's agent version and
    configuration hash (the inventory)."""
    latest = health.latest(conn)
    maint: dict[tuple[str, str], list[str]] = {}
    for m in maintenance_alerts.open_alerts(conn, store_names):
        maint.setdefault((m["store"], m["fridge"]), []).append(str(m["rule"]))
    out = []
    for store in store_names:
        state = conn.execute("SELECT online, agent_version, config_hash FROM store_state"
                             " WHERE store = ?", (store,)).fetchone()
        terminal_up = state is None or bool(state[0])
        alerts: dict[str, list[Any]] = {}
        for a in haccp.load_alerts(conn, store):
            if a.active:
                alerts.setdefault(a.fridge, []).append(a)
        devices = conn.execute(
            "SELECT device, MAX(last_received_at) FROM streams WHERE store = ? AND device IN"
            " (SELECT device FROM readings WHERE store = ? UNION SELECT device FROM events"
            " WHERE store = ? AND type IN ('door', 'compressor', 'hello'))"
            " GROUP BY device ORDER BY device", (store, store, store)).fetchall()
        for device, last_seen in devices:
            vitals = latest.get((store, device))
            hello = _latest_hello(conn, store, device)
            firmware = None if hello is None else ".".join(
                str(x) for x in hello.get("firmware", ()))
            link = None if vitals is None else vitals.get("link")
            seen = None if last_seen is None else float(last_seen)
            online = terminal_up and seen is not None and now - seen <= OFFLINE_AFTER_S
            mine = alerts.get(device, [])
            out.append({
                "store": store, "device": device, "online": online, "last_seen": seen,
                "firmware": firmware or (vitals or {}).get("firmware"),
                "link_per_10k": None if link is None else link.get("per_10k"),
                "alerts": len(mine),
                "critical": any(a.severity == "critical" for a in mine),
                "duty": None if vitals is None else vitals.get("duty"),
                "agent_version": None if state is None else state[1],
                "config_hash": None if state is None else state[2],
                "maintenance": maint.get((store, device), []),
            })
    return out


def _latest_hello(conn: sql.Connection, store: str, device: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT data FROM events WHERE store = ? AND device = ? AND type = 'hello'"
        " ORDER BY boot DESC, seq DESC LIMIT 1", (store, device)).fetchone()
    return None if row is None else dict(json.loads(row[0]))


def trends(conn: sql.Connection, store: str, device: str, now: float,
           days: int) -> dict[str, Any]:
    """Hourly duty cycle, longest defrost and median pull-down over the last `days`, as
    columns a chart draws: x in unix seconds (the hour's start)."""
    since = int(now // HOUR_S) - days * 24
    rows = health.trend(conn, store, device, since)
    return {
        "since": since * HOUR_S, "until": (int(now // HOUR_S) + 1) * HOUR_S,
        "x": [r.hour * HOUR_S for r in rows],
        "duty": [None if r.duty is None else round(r.duty * 100, 1) for r in rows],
        "defrost_min": [None if r.defrost_max_s is None else round(r.defrost_max_s / 60, 1)
                        for r in rows],
        "pulldown_min": [None if r.pulldown_median_s is None
                         else round(r.pulldown_median_s / 60, 1) for r in rows],
        "door_openings": [r.door_openings for r in rows],
        "defrost_timeouts": sum(r.defrost_timeouts for r in rows),
        "defrosts": sum(r.defrosts for r in rows),
    }


def event_log(conn: sql.Connection, store: str, device: str,
              limit: int = 100) -> list[dict[str, Any]]:
    """The device's newest events (and its alerts' changes), newest first."""
    marks = ", ".join("?" for _ in EVENT_TYPES)
    rows = conn.execute(
        "SELECT COALESCE(wall_corrected, wall), type, data FROM events WHERE store = ?"
        f" AND device = ? AND type IN ({marks}) ORDER BY COALESCE(wall_corrected, wall) DESC"
        " LIMIT ?", (store, device, *EVENT_TYPES, limit)).fetchall()
    return [{"t": float(r[0]), "type": r[1], "data": json.loads(r[2])} for r in rows]
