"""Retail at a glance for `xiaodian edge status`: read-only queries on the agent's file.

Plain SELECTs on a read-only connection, so it can run beside the agent (SQLite WAL) and
never takes a lock the agent waits for. Time comes in as an argument.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import date
from typing import Any

from edge.retail import ledger

MISMATCHES_SHOWN = 5
REFUSALS_WINDOW_S = 3600.0


def retail_status(db: sqlite3.Connection, wall: float, today: date,
                  window_days: int) -> dict[str, Any] | None:
    """None when the file has no retail tables (an agent that never ran retail)."""
    try:
        version = ledger.catalogue_version(db)
    except sqlite3.OperationalError:
        return None
    waiting = [{"order": o, "customer": c, "expires": e} for o, c, e in db.execute(
        "SELECT id, customer, expires FROM orders WHERE mode='pickup' AND state='received' "
        "ORDER BY expires")]
    deliveries = {s: n for s, n in db.execute(
        "SELECT state, count(*) FROM orders WHERE mode='delivery' GROUP BY state")}
    expiring = [{"item": lot.item, "batch": lot.batch, "expiry": lot.expiry, "qty": lot.qty}
                for lot in ledger.expiring(ledger.lots(db), today, window_days)]
    mismatches = []
    for device, w, data in db.execute(
            "SELECT device, wall, data FROM events WHERE type='lane_check' "
            "AND json_extract(data, '$.verdict')='mismatch' "
            "ORDER BY wall DESC LIMIT ?", (MISMATCHES_SHOWN,)):
        d = json.loads(data)
        mismatches.append({"fridge": device, "wall": w, "lane": d.get("lane"),
                           "order": d.get("order"), "note": d.get("note")})
    refusals = {str(r): n for r, n in db.execute(
        "SELECT json_extract(data, '$.reason'), count(*) FROM events WHERE device='counter' "
        "AND type='pickup' AND json_extract(data, '$.result')='refused' AND wall >= ? "
        "GROUP BY 1", (wall - REFUSALS_WINDOW_S,))}
    saved = db.execute("SELECT order_id, state FROM handover").fetchone()
    handover = None if saved is None else {
        "order": saved[0],
        "fridges": {k: v[0] for k, v in json.loads(saved[1])["fridges"].items()}}
    return {
        "catalogue_version": version,
        "orders_waiting": waiting,
        "deliveries": deliveries,
        "expiring": {"window_days": window_days, "lots": expiring},
        "lane_mismatches": mismatches,
        "pickup_refusals_last_hour": {"total": sum(refusals.values()), "by_reason": refusals},
        "handover": handover,
    }

