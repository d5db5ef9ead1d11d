"""The cloud's side of the stores' retail events: stock movements and order progress.

Split out of `cloud_gateway.retail`, which re-exports its names: `apply_events` runs inside
the batch's transaction (`Database.store_batch`), so a redelivered event never moves stock
twice; `expire_orders` is the cloud's own progress.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from xiaodian.wire import retail
from xiaodian.wire.payloads import Event, PayloadError

from . import resident_notices, sql
from .dead_letters import park_event
from .retail_tables import MAX_MOVEMENT_GRAMS, MAX_MOVEMENT_QTY
from .retail_tables import set_state as _set_state

# ---------------------------------------------------------------- ingest (stores' events)


# Retail events the cloud keeps only as events; their shape is still checked on the way in.
_CHECKED_ONLY: dict[str, Callable[[dict[str, Any]], object]] = {
    "lane_check": retail.parse_lane_check,
    "expiry": retail.parse_expiry,
    "pickup": retail.parse_pickup_refusal,
}


def apply_events(conn: sql.Connection, store: str, device: str, boot: int,
                 events: Iterable[Event], received_at: float, worker: str) -> int:
    """Apply the *new* `stock`, `order` and `receipt` events of a batch inside its
    transaction (a receipt: supply/receiving.py).

    A record that does not parse is parked in dead_letters (same transaction) with its
    identity and reason; the batch's other records are stored and applied as usual, and the
    event row itself is kept, so nothing is lost and the store gets its receipt. Returns how
    many records were parked.
    """
    parked = 0
    for e in events:
        if e.type not in ("stock", "order", "receipt", *_CHECKED_ONLY):
            continue
        try:
            if e.type == "stock":
                _apply_movement(conn, store, device, boot, e, received_at)
            elif e.type == "order":
                _apply_progress(conn, store, e, received_at)
            elif e.type == "receipt":
                # Imported here: the supply package imports this module's re-exporter.
                from .supply.receiving import apply_receipt

                apply_receipt(conn, store, e.data, received_at)
            else:  # stored as events and read through the API: checked, so none is garbage
                _CHECKED_ONLY[e.type](e.data)
        except PayloadError as exc:
            park_event(conn, store, device, boot, e, exc, worker, received_at)
            parked += 1
    return parked


def _apply_movement(conn: sql.Connection, store: str, device: str, boot: int, e: Event,
                    received_at: float) -> None:
    m = retail.parse_movement(e.data)
    if abs(m.qty) > MAX_MOVEMENT_QTY or abs(m.grams or 0) > MAX_MOVEMENT_GRAMS:
        raise PayloadError(f"data: qty {m.qty} / grams {m.grams} beyond"
                           f" {MAX_MOVEMENT_QTY} / {MAX_MOVEMENT_GRAMS}")
    cur = conn.execute(
        "INSERT INTO movements (store, id, kind, item, qty, grams, batch, expiry, order_id,"
        " note, device, boot, seq, wall, received_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (store, id) DO NOTHING",
        (store, m.id, m.kind, m.item, m.qty, m.grams, m.batch, m.expiry, m.order, m.note,
         device, boot, e.seq, e.wall, received_at))
    if cur.rowcount != 1:
        # The same movement under another event (re-entered after an edge restore): it
        # counts once. A different movement reusing the id is a store bug: say so.
        row = conn.execute("SELECT kind, item, qty FROM movements WHERE store = ? AND id = ?",
                           (store, m.id)).fetchone()
        if (row[0], row[1], row[2]) != (m.kind, m.item, m.qty):
            raise PayloadError(f"movement id {m.id} already used for a different movement")
        return
    conn.execute(
        "INSERT INTO stock (store, item, batch, expiry, on_hand, grams, movements, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, 1, ?)"
        " ON CONFLICT (store, item, batch, expiry) DO UPDATE SET"
        " on_hand = stock.on_hand + excluded.on_hand, grams = stock.grams + excluded.grams,"
        " movements = stock.movements + 1, updated_at = excluded.updated_at",
        (store, m.item, m.batch or "", m.expiry or "", m.qty, _signed_grams(m), received_at))


def _signed_grams(m: retail.Movement) -> int:
    # Grams travel unsigned or signed depending on the scale; give them the qty's sign.
    if m.grams is None:
        return 0
    return abs(m.grams) if m.qty > 0 else -abs(m.grams)


def _apply_progress(conn: sql.Connection, store: str, e: Event, received_at: float) -> None:
    p = retail.parse_progress(e.data)
    row = conn.execute("SELECT state FROM orders WHERE id = ? AND store = ?",
                       (p.order, store)).fetchone()
    if row is None:
        raise PayloadError(f"data.order: {store} has no order {p.order}")
    detail = json.dumps({"differences": [list(d) for d in p.differences], "note": p.note,
                         "wall": e.wall}, separators=(",", ":"))
    _set_state(conn, p.order, row[0], p.state, received_at, "store", detail)
    if p.state != row[0]:
        resident_notices.on_progress(conn, store, p.order, p.state, received_at)


def recent_events(conn: sql.Connection, store: str, type_: str,
                  limit: int) -> list[dict[str, Any]]:
    """A store's newest events of one type (expiry lists, lane checks, refused pickups)."""
    return [{"device": r[0], "boot": r[1], "seq": r[2], "wall": r[3],
             "wall_corrected": r[4], "received_at": r[5], "data": json.loads(r[6])}
            for r in conn.execute(
                "SELECT device, boot, seq, wall, wall_corrected, received_at, data FROM events"
                " WHERE store = ? AND type = ? ORDER BY received_at DESC, boot DESC, seq DESC"
                " LIMIT ?", (store, type_, limit))]


def expire_orders(conn: sql.Connection, now: float) -> int:
    """Mark open orders past their expiry `expired` (their reservation ended already)."""
    rows = conn.execute(
        "SELECT id, state FROM orders WHERE state IN ('open', 'received') AND expires <= ?",
        (now,)).fetchall()
    for oid, state in rows:
        _set_state(conn, oid, state, "expired", now, "cloud", None)
    return len(rows)

