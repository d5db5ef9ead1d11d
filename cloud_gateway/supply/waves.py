"""A zone's cycles in the database, and pre-orders placed on a wave.

A pre-order is a resident's order (the `orders` table, state `preorder`) linked to the
wave it rides (`wave_orders`). It holds no stock (its goods come with the wave) and is
accepted only while the zone's cycle is open and the store has room for it that wave
(`admission.Admission`: pickups per wave, the fridge's share for pre-orders). When either
is reached the store's cycle is closed for new pre-orders and the refusal says which.
It goes to the store, as an ordinary order, when the wave is dispatched (manifest.py).

Refusals are `RetailError`s with a `Refusal` and, in `detail["closed"]`, the reason:
`cutoff_passed`, `pickup_full`, `fridge_full`; the web layer picks the status.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import Any

from xiaodian.wire import retail as contract

from .. import retail, sql
from ..retail_tables import Refusal, RetailError
from ..retail_tables import set_state as set_order_state
from . import settings
from .admission import Admission
from .cycles import RANK, Schedule, step, takes_orders

CUTOFF_PASSED = "cutoff_passed"
HOLDING = ("held", "moved")  # outcomes of a pre-order that still rides its wave

STAMP = {"cutoff": "cutoff_done_at", "planned": "planned_at", "picked": "picked_at",
         "dispatched": "dispatched_at", "delivered": "delivered_at"}
CYCLE_FIELDS = ("zone", "wave", "state", "cutoff_at", "delivery", "opened_at",
                "cutoff_done_at", "planned_at", "picked_at", "dispatched_at", "delivered_at")


def ensure_cycle(conn: sql.Connection, zone: str, wave: date, schedule: Schedule,
                 now: float) -> dict[str, Any]:
    """The zone's cycle for `wave`, opened (created) if it has no row yet."""
    conn.execute(
        "INSERT INTO supply_cycles (zone, wave, state, cutoff_at, delivery, opened_at)"
        " VALUES (?, ?, 'open', ?, ?, ?) ON CONFLICT (zone, wave) DO NOTHING",
        (zone, wave.isoformat(), schedule.cutoff_at(wave),
         schedule.delivery(wave).isoformat(), now))
    got = get_cycle(conn, zone, wave)
    assert got is not None
    return got


def get_cycle(conn: sql.Connection, zone: str, wave: date) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {', '.join(CYCLE_FIELDS)} FROM supply_cycles"
                       " WHERE zone = ? AND wave = ?", (zone, wave.isoformat())).fetchone()
    return None if row is None else dict(zip(CYCLE_FIELDS, tuple(row), strict=True))


def cycles(conn: sql.Connection, zone: str, limit: int = 14) -> list[dict[str, Any]]:
    """The zone's latest cycles, newest first."""
    return [dict(zip(CYCLE_FIELDS, tuple(r), strict=True)) for r in conn.execute(
        f"SELECT {', '.join(CYCLE_FIELDS)} FROM supply_cycles WHERE zone = ?"
        " ORDER BY wave DESC LIMIT ?", (zone, limit))]


def advance(conn: sql.Connection, zone: str, wave: date, target: str, now: float) -> bool:
    """Move the cycle to `target` (the next state); False if it was there already.
    CycleError for a skipped step; SupplyError if the cycle does not exist."""
    cyc = get_cycle(conn, zone, wave)
    if cyc is None:
        raise RetailError(Refusal.NOT_FOUND, f"zone {zone} has no cycle for {wave}")
    if not step(cyc["state"], target):
        return False
    conn.execute(f"UPDATE supply_cycles SET state = ?, {STAMP[target]} = ?"
                 " WHERE zone = ? AND wave = ?", (target, now, zone, wave.isoformat()))
    return True


def reached(state: str, target: str) -> bool:
    return RANK[state] >= RANK[target]


# ---------------------------------------------------------------- pre-orders


def admission_for(conn: sql.Connection, zone: str, wave: date,
                  fridge_share: float = 0.5) -> Admission:
    """The wave's admission bookkeeping as the database has it: every pre-order still
    riding it counted against its store."""
    stores = {s.id: s for s in settings.zone_stores(conn, zone)}
    adm = Admission(stores, {i.item.id: i.item for i in settings.items(conn)}, fridge_share)
    for store, n, vol in conn.execute(
            "SELECT store, COUNT(*), SUM(volume) FROM wave_orders WHERE zone = ? AND wave = ?"
            " AND outcome IN ('held', 'moved') GROUP BY store", (zone, wave.isoformat())):
        adm.orders[store] = int(n)
        adm.volume[store] = float(vol or 0.0)
    return adm


def place_preorder(conn: sql.Connection, store: str, req: retail.OrderRequest, now: float,
                   by: str) -> tuple[contract.Order, date]:
    """Accept a pre-order on the wave it rides now, in the caller's transaction; returns
    the order and its wave. RetailError with the Refusal (and detail["closed"]) if not."""
    s = settings.get_store(conn, store)
    if s is None:
        raise RetailError(Refusal.NOT_FOUND, f"{store} takes no pre-orders: no supply"
                          " settings (xiaodian supply store set)")
    if req.mode != "pickup":
        raise RetailError(Refusal.INVALID, "mode: pre-orders are collected at the store"
                          " (pickup)")
    schedule = settings.get_zone(conn, s.zone)
    wave = schedule.wave_of(now)
    cyc = ensure_cycle(conn, s.zone, wave, schedule, now)
    if not takes_orders(cyc["state"], cyc["cutoff_at"], now):
        raise RetailError(Refusal.CONFLICT, f"zone {s.zone}'s wave {wave} is closed"
                          f" ({cyc['state']})", {"closed": CUTOFF_PASSED, "wave": str(wave)})
    known = {i.item.id for i in settings.items(conn)}
    cat = retail.catalogue(conn, store)
    listed = {i["item"] for i in cat["items"]} if cat else set()
    missing = [ln.item for ln in req.lines if ln.item not in known or ln.item not in listed]
    if missing:
        raise RetailError(Refusal.INVALID, f"not for pre-order at {store}: "
                          f"{', '.join(missing)}", {"not_in_catalogue": missing})
    adm = admission_for(conn, s.zone, wave)
    lines = [(ln.item, ln.qty) for ln in req.lines]
    why = adm.accept(store, lines)
    if why is not None:
        raise RetailError(Refusal.CONFLICT, f"{store} is full for the wave of {wave} ({why})",
                          {"closed": why, "wave": str(wave)})
    volume = adm.volume_of(lines)
    _, closes = schedule.pickup_window(wave)
    lines_json = json.dumps([{"item": ln.item, "qty": ln.qty} for ln in req.lines])
    oid = int(conn.execute(
        "INSERT INTO orders (store, mode, customer, lines, created, expires, state, state_at,"
        " created_by) VALUES (?, 'pickup', ?, ?, ?, ?, 'preorder', ?, ?) RETURNING id",
        (store, req.customer, lines_json, now, closes, now, by)).fetchone()[0])
    conn.executemany("INSERT INTO order_lines (order_id, store, item, qty) VALUES (?, ?, ?, ?)",
                     [(oid, store, ln.item, ln.qty) for ln in req.lines])
    conn.execute("INSERT INTO order_history (order_id, at, state, source, applied, detail)"
                 " VALUES (?, ?, 'preorder', 'cloud', ?, ?)",
                 (oid, now, True, json.dumps({"by": by, "zone": s.zone, "wave": str(wave)})))
    conn.execute("INSERT INTO wave_orders (order_id, zone, wave, store, volume, outcome)"
                 " VALUES (?, ?, ?, ?, ?, 'held')", (oid, s.zone, wave.isoformat(), store,
                                                     volume))
    order = contract.Order(oid, store, "pickup", req.customer, now, float(closes), req.lines)
    return order, wave


def wave_of_order(conn: sql.Connection, order_id: int) -> dict[str, Any] | None:
    """The wave a pre-order rides and what became of it there (None: not a pre-order)."""
    row = conn.execute("SELECT zone, wave, store, outcome, moved_from, reason FROM wave_orders"
                       " WHERE order_id = ?", (order_id,)).fetchone()
    return None if row is None else {"zone": row[0], "wave": row[1], "store": row[2],
                                     "outcome": row[3], "moved_from": row[4],
                                     "reason": row[5]}


def preorder_lines(conn: sql.Connection, zone: str, wave: date,
                   outcomes: Sequence[str] = HOLDING) -> list[dict[str, Any]]:
    """Every live line of the wave's pre-orders (cancelled lines left out), by order."""
    marks = ", ".join("?" for _ in outcomes)
    return [{"order": int(r[0]), "store": r[1], "item": r[2], "qty": int(r[3]),
             "customer": r[4]} for r in conn.execute(
        "SELECT w.order_id, w.store, l.item, l.qty, o.customer FROM wave_orders w"
        " JOIN order_lines l ON l.order_id = w.order_id JOIN orders o ON o.id = w.order_id"
        f" WHERE w.zone = ? AND w.wave = ? AND w.outcome IN ({marks}) AND l.line_state = ''"
        " ORDER BY w.order_id, l.item", (zone, wave.isoformat(), *outcomes))]


def end_preorder(conn: sql.Connection, order_id: int, outcome: str, reason: str,
                 now: float) -> None:
    """A pre-order leaves its wave (refunded, cancelled): the order is cancelled with the
    reason in its history, for the resident's page to tell them."""
    conn.execute("UPDATE wave_orders SET outcome = ?, reason = ? WHERE order_id = ?",
                 (outcome, reason, order_id))
    row = conn.execute("SELECT state FROM orders WHERE id = ?", (order_id,)).fetchone()
    set_order_state(conn, order_id, row[0], "cancelled", now, "cloud",
                    json.dumps({"reason": reason, "outcome": outcome}))


def move_preorder(conn: sql.Connection, order_id: int, to_store: str, reason: str) -> None:
    """A pre-order now collected at another store of the zone (its own cannot take it)."""
    conn.execute("UPDATE wave_orders SET outcome = 'moved', moved_from = store, store = ?,"
                 " reason = ? WHERE order_id = ?", (to_store, reason, order_id))
    conn.execute("UPDATE orders SET store = ? WHERE id = ?", (to_store, order_id))
    conn.execute("UPDATE order_lines SET store = ? WHERE order_id = ?", (to_store, order_id))
