"""The cloud's side of retail: catalogues, orders and their reservations, per-store stock.

Contract (message shapes, topics) in `xiaodian/wire/retail.py`; this module keeps the tables.

- Stock is *derived*: every `stock` event from a store is one ledger movement, kept once
  per movement id in `movements`, and `stock` (per store, item, batch, expiry) is the sum
  of those movements. Both change in the transaction that inserts the event, and only for
  an event that is new, so a redelivered message never moves stock twice
  (`apply_events`, called from `Database.store_batch`).
- An order reserves what it asks for while it is open (`open`: not yet confirmed by the
  store, `received`: waiting at the store) and unexpired: available = on hand - reserved.
  What the store already moved out for the order (pickup/dispatch movements naming it)
  no longer counts as reserved, so a movement and the order's state change can arrive in
  either order without counting the goods twice.
- Order messages to the store go through `downlink` (a small outbox): the row is written
  in the order's transaction, published by `cloud_gateway/downlink.py`, and marked when
  the broker PUBACKs it. Republishing is harmless: the store ignores a known order id and a
  catalogue version it already has.

SQL is portable like cloud_gateway/db's, except `MAX`/`MIN` with two arguments, avoided here (CASE).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from xiaodian.wire import ids, retail
from xiaodian.wire.payloads import Event, PayloadError

from . import sql

SCHEMA = """
-- Every catalogue a store was given; the highest version is the current one.
CREATE TABLE IF NOT EXISTS catalogues (
    store TEXT NOT NULL,
    version BIGINT NOT NULL,
    items TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (store, version)
);
-- state: open (not yet confirmed by the store), then the store's states (xiaodian.wire.retail
-- ORDER_STATES); the cloud itself sets cancelled and expired.
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY,
    store TEXT NOT NULL,
    mode TEXT NOT NULL,
    customer TEXT NOT NULL,
    lines TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    expires DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL,
    state_at DOUBLE PRECISION NOT NULL,
    created_by TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_store ON orders (store, state, expires);
CREATE TABLE IF NOT EXISTS order_lines (
    order_id BIGINT NOT NULL,
    store TEXT NOT NULL,
    item TEXT NOT NULL,
    qty INTEGER NOT NULL,
    PRIMARY KEY (order_id, item)
);
CREATE INDEX IF NOT EXISTS order_lines_by_item ON order_lines (store, item);
-- Every state an order was reported in, applied or not (applied = became its state).
CREATE TABLE IF NOT EXISTS order_history (
    id INTEGER PRIMARY KEY,
    order_id BIGINT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL,
    source TEXT NOT NULL,
    applied BOOLEAN NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS order_history_by_order ON order_history (order_id, id);
-- The stores' stock ledgers, one row per movement id; (device, boot, seq) is the event.
CREATE TABLE IF NOT EXISTS movements (
    store TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    item TEXT NOT NULL,
    qty BIGINT NOT NULL,
    grams BIGINT,
    batch TEXT,
    expiry TEXT,
    order_id BIGINT,
    note TEXT,
    device TEXT NOT NULL,
    boot BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    wall DOUBLE PRECISION NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (store, id)
);
CREATE INDEX IF NOT EXISTS movements_by_order ON movements (store, order_id);
-- On hand per store, item, batch and expiry: the sum of `movements` ('' = none given).
CREATE TABLE IF NOT EXISTS stock (
    store TEXT NOT NULL,
    item TEXT NOT NULL,
    batch TEXT NOT NULL,
    expiry TEXT NOT NULL,
    on_hand BIGINT NOT NULL,
    grams BIGINT NOT NULL,
    movements BIGINT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (store, item, batch, expiry)
);
-- Messages for the stores, published until the broker PUBACKs them (downlink.py).
CREATE TABLE IF NOT EXISTS downlink (
    id INTEGER PRIMARY KEY,
    store TEXT NOT NULL,
    kind TEXT NOT NULL,
    ref BIGINT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain BOOLEAN NOT NULL,
    expires DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    published_at DOUBLE PRECISION,
    attempts INTEGER NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS downlink_pending ON downlink (id) WHERE published_at IS NULL;
"""

# States in which an order holds its reservation (if not yet expired).
RESERVING = ("open", "received")
CLOUD_STATES = ("open", *retail.ORDER_STATES)
# An order only moves forward; the goods leaving the store (picked_up, packed, ...) is
# evidence that beats the cloud's own cancelled/expired (the store may have handed it over
# offline, before it heard of the cancellation).
_RANK = {"open": 0, "received": 1, "packed": 2, "out_for_delivery": 3, "delivered": 4,
         "picked_up": 4, "cancelled": 4, "expired": 4}
_GOODS_MOVED = ("picked_up", "packed", "out_for_delivery", "delivered")
MAX_CUSTOMER_CHARS = 64
MIN_EXPIRES_IN_S = 60
MAX_EXPIRES_IN_S = 14 * 24 * 3600
# The contract bounds neither; sums of absurd values would overflow SQL integers later.
MAX_MOVEMENT_QTY = 1_000_000
MAX_MOVEMENT_GRAMS = 10_000_000


class RetailError(Exception):
    """A request that cannot be carried out; `status` is the HTTP status that says why."""

    def __init__(self, status: int, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail


# ---------------------------------------------------------------- ingest (stores' events)


# Retail events the cloud keeps only as events; their shape is still checked on the way in.
_CHECKED_ONLY: dict[str, Callable[[dict[str, Any]], object]] = {
    "lane_check": retail.parse_lane_check,
    "expiry": retail.parse_expiry,
    "pickup": retail.parse_pickup_refusal,
}


def apply_events(conn: sql.Connection, store: str, device: str, boot: int,
                 events: Iterable[Event], received_at: float, worker: str) -> int:
    """Apply the *new* `stock` and `order` events of a batch inside its transaction.

    A record that does not parse is parked in dead_letters (same transaction) with its
    identity and reason; the batch's other records are stored and applied as usual, and the
    event row itself is kept, so nothing is lost and the store gets its receipt. Returns how
    many records were parked.
    """
    parked = 0
    for e in events:
        if e.type not in ("stock", "order", *_CHECKED_ONLY):
            continue
        try:
            if e.type == "stock":
                _apply_movement(conn, store, device, boot, e, received_at)
            elif e.type == "order":
                _apply_progress(conn, store, e, received_at)
            else:  # stored as events and read through the API: checked, so none is garbage
                _CHECKED_ONLY[e.type](e.data)
        except PayloadError as exc:
            reason = f"{e.type} event {device}/{boot}/{e.seq}: {exc}"
            record = json.dumps({"seq": e.seq, "type": e.type, "wall": e.wall,
                                 "data": e.data}, separators=(",", ":")).encode()
            conn.execute(
                "INSERT INTO dead_letters (topic, payload, reason, worker, received_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (f"xd/v1/{store}/events", record, reason, worker, received_at))
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


def _set_state(conn: sql.Connection, order_id: int, current: str, new: str, at: float,
               source: str, detail: str | None) -> bool:
    applied = _RANK[new] > _RANK[current] or (
        current in ("cancelled", "expired") and new in _GOODS_MOVED)
    conn.execute("INSERT INTO order_history (order_id, at, state, source, applied, detail)"
                 " VALUES (?, ?, ?, ?, ?, ?)", (order_id, at, new, source, applied, detail))
    if applied:
        conn.execute("UPDATE orders SET state = ?, state_at = ? WHERE id = ?",
                     (new, at, order_id))
    return applied


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


# ---------------------------------------------------------------- catalogue


def parse_catalogue_items(store: str, items: Any) -> tuple[retail.CatalogueItem, ...]:
    """Check catalogue items exactly as a store will (by parsing the message it would get)."""
    if not isinstance(items, list):
        raise RetailError(400, "items: expected a list of catalogue items")
    body = json.dumps({"v": 1, "type": "catalogue", "store": store, "version": 0,
                       "items": items}, separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) > retail.MAX_CATALOGUE_BYTES:
        raise RetailError(413, f"catalogue is {len(body)} bytes as a message; at most"
                               f" {retail.MAX_CATALOGUE_BYTES} fit in one")
    try:
        parsed = retail.parse_downlink(f"xd/v1/{store}/catalogue", body)
        assert isinstance(parsed, retail.Catalogue)
        retail.catalogue_payload(parsed)  # what the store gets must fit too
    except PayloadError as exc:
        raise RetailError(400, str(exc)) from None
    return parsed.items


def put_catalogue(conn: sql.Connection, store: str, items: Sequence[retail.CatalogueItem],
                  now: float, by: str) -> retail.Catalogue:
    """Store a new version of a store's catalogue and queue it (retained) for the store."""
    _check_store(store)
    row = conn.execute("SELECT MAX(version) FROM catalogues WHERE store = ?",
                       (store,)).fetchone()
    cat = retail.Catalogue(store, int(row[0] or 0) + 1, tuple(items))
    payload = retail.catalogue_payload(cat)
    conn.execute("INSERT INTO catalogues (store, version, items, created_at, created_by)"
                 " VALUES (?, ?, ?, ?, ?)",
                 (store, cat.version, json.dumps(json.loads(payload)["items"]), now, by))
    # An older version still unpublished must never overwrite this one as the retained copy.
    conn.execute("UPDATE downlink SET published_at = ?, last_error = 'superseded'"
                 " WHERE store = ? AND kind = 'catalogue' AND published_at IS NULL",
                 (now, store))
    _queue(conn, store, "catalogue", cat.version, f"xd/v1/{store}/catalogue", payload,
           retain=True, expires=None, now=now)
    return cat


def catalogue(conn: sql.Connection, store: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT version, items, created_at, created_by FROM catalogues WHERE store = ?"
        " ORDER BY version DESC LIMIT 1", (store,)).fetchone()
    if row is None:
        return None
    pub = conn.execute(
        "SELECT published_at FROM downlink WHERE store = ? AND kind = 'catalogue' AND ref = ?"
        " ORDER BY id DESC LIMIT 1", (store, row[0])).fetchone()
    return {"store": store, "version": row[0], "items": json.loads(row[1]),
            "created_at": row[2], "created_by": row[3],
            "published_at": None if pub is None else pub[0]}


# ---------------------------------------------------------------- orders


@dataclass(frozen=True)
class OrderRequest:
    lines: tuple[retail.OrderLine, ...]
    mode: retail.OrderMode
    customer: str
    expires_in_s: int


def parse_order_request(body: Mapping[str, Any]) -> OrderRequest:
    """{"items": [{"item", "qty"}], "mode", "customer", "expires_in_s"}; RetailError 400."""
    unknown = sorted(set(body) - {"items", "mode", "customer", "expires_in_s"})
    if unknown:
        raise RetailError(400, f"{unknown[0]}: unknown field"
                               " (known: items, mode, customer, expires_in_s)")
    mode = body.get("mode", "pickup")
    if mode not in retail.ORDER_MODES:
        raise RetailError(400, f"mode: one of {', '.join(retail.ORDER_MODES)}")
    customer = body.get("customer")
    if not isinstance(customer, str) or not 0 < len(customer.strip()) <= MAX_CUSTOMER_CHARS:
        raise RetailError(400, f"customer: a display name of 1 to {MAX_CUSTOMER_CHARS}"
                               " characters")
    expires_in = body.get("expires_in_s", 24 * 3600)
    if (isinstance(expires_in, bool) or not isinstance(expires_in, int)
            or not MIN_EXPIRES_IN_S <= expires_in <= MAX_EXPIRES_IN_S):
        raise RetailError(400, f"expires_in_s: whole seconds, {MIN_EXPIRES_IN_S} to"
                               f" {MAX_EXPIRES_IN_S}")
    items = body.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= retail.MAX_LINES:
        raise RetailError(400, f"items: a list of 1 to {retail.MAX_LINES} {{item, qty}}")
    lines: list[retail.OrderLine] = []
    for n, it in enumerate(items):
        if not isinstance(it, dict) or set(it) != {"item", "qty"}:
            raise RetailError(400, f"items[{n}]: exactly item and qty")
        qty = it["qty"]
        if isinstance(qty, bool) or not isinstance(qty, int) or not 1 <= qty <= 1000:
            raise RetailError(400, f"items[{n}].qty: a whole number 1..1000")
        try:
            item = retail.check_item(it["item"], f"items[{n}].item")
        except PayloadError as exc:
            raise RetailError(400, str(exc)) from None
        lines.append(retail.OrderLine(item, qty))
    if len({ln.item for ln in lines}) != len(lines):
        raise RetailError(400, "items: an item appears twice")
    return OrderRequest(tuple(lines), mode, customer.strip(), expires_in)


def create_order(conn: sql.Connection, store: str, req: OrderRequest, now: float,
                 by: str) -> retail.Order:
    """Reserve, store and queue an order in one transaction (the caller's).

    RetailError 404 without a catalogue, 400 for items not in it, 409 with what is short
    (per item: wanted, available). The order expires at a whole minute, the resolution of
    the pickup code, so the code and the reservation end at the same instant.
    """
    _check_store(store)
    cat = catalogue(conn, store)
    if cat is None:
        raise RetailError(404, f"{store} has no catalogue yet")
    known = {i["item"] for i in cat["items"]}
    missing = [ln.item for ln in req.lines if ln.item not in known]
    if missing:
        raise RetailError(400, f"not in {store}'s catalogue: {', '.join(missing)}",
                          {"not_in_catalogue": missing})
    avail = availability(conn, store, now, [ln.item for ln in req.lines])
    short = [{"item": ln.item, "wanted": ln.qty, "available": avail[ln.item]["available"]}
             for ln in req.lines if ln.qty > avail[ln.item]["available"]]
    if short:
        raise RetailError(409, "not enough stock: " + ", ".join(
            f"{s['item']} wanted {s['wanted']}, available {s['available']}" for s in short),
            {"short": short})
    expires = math.floor((now + req.expires_in_s) / 60) * 60
    lines_json = json.dumps([{"item": ln.item, "qty": ln.qty} for ln in req.lines])
    oid = int(conn.execute(
        "INSERT INTO orders (store, mode, customer, lines, created, expires, state, state_at,"
        " created_by) VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?) RETURNING id",
        (store, req.mode, req.customer, lines_json, now, expires, now, by)).fetchone()[0])
    conn.executemany("INSERT INTO order_lines (order_id, store, item, qty) VALUES (?, ?, ?, ?)",
                     [(oid, store, ln.item, ln.qty) for ln in req.lines])
    conn.execute("INSERT INTO order_history (order_id, at, state, source, applied, detail)"
                 " VALUES (?, ?, 'open', 'cloud', ?, ?)", (oid, now, True, by))
    order = retail.Order(oid, store, req.mode, req.customer, now, float(expires), req.lines)
    _queue(conn, store, "order", oid, f"xd/v1/{store}/orders", retail.order_payload(order),
           retain=False, expires=float(expires), now=now)
    return order


def cancel_order(conn: sql.Connection, store: str, order_id: int, reason: str,
                 now: float, by: str) -> dict[str, Any]:
    row = conn.execute("SELECT state FROM orders WHERE id = ? AND store = ?",
                       (order_id, store)).fetchone()
    if row is None:
        raise RetailError(404, f"{store} has no order {order_id}")
    if row[0] not in RESERVING:
        raise RetailError(409, f"order {order_id} is {row[0]}: too late to cancel")
    reason = reason.strip()[:200] or "cancelled"
    _set_state(conn, order_id, row[0], "cancelled", now, "cloud",
               json.dumps({"reason": reason, "by": by}))
    payload = retail.cancel_payload(retail.Cancel(order_id, store, reason))
    _queue(conn, store, "cancel", order_id, f"xd/v1/{store}/orders", payload, retain=False,
           expires=None, now=now)
    got = get_order(conn, store, order_id)
    assert got is not None
    return got


def availability(conn: sql.Connection, store: str, now: float,
                 items: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
    """Per item: on_hand, reserved (by open, unexpired orders), available."""
    on_hand = {r[0]: int(r[1]) for r in conn.execute(
        "SELECT item, SUM(on_hand) FROM stock WHERE store = ? GROUP BY item", (store,))}
    # Reserved = ordered minus already moved out for the order, never below zero.
    reserved = {r[0]: int(r[1]) for r in conn.execute(
        "SELECT l.item, SUM(CASE WHEN l.qty - COALESCE(mv.moved, 0) > 0"
        "   THEN l.qty - COALESCE(mv.moved, 0) ELSE 0 END)"
        " FROM orders o JOIN order_lines l ON l.order_id = o.id"
        " LEFT JOIN (SELECT order_id, item, -SUM(qty) AS moved FROM movements"
        "   WHERE store = ? AND kind IN ('pickup', 'dispatch') GROUP BY order_id, item) mv"
        "   ON mv.order_id = o.id AND mv.item = l.item"
        " WHERE o.store = ? AND o.state IN ('open', 'received') AND o.expires > ?"
        " GROUP BY l.item", (store, store, now))}
    names = set(on_hand) | set(reserved) if items is None else set(items)
    return {i: {"on_hand": on_hand.get(i, 0), "reserved": reserved.get(i, 0),
                "available": on_hand.get(i, 0) - reserved.get(i, 0)} for i in sorted(names)}


def stock_view(conn: sql.Connection, store: str, now: float) -> dict[str, Any]:
    """What the API and `cloud stock` show: per item the totals and its batches."""
    avail = availability(conn, store, now)
    cat = catalogue(conn, store)
    names = {i["item"]: i["name"] for i in cat["items"]} if cat else {}
    batches: dict[str, list[dict[str, Any]]] = {}
    for r in conn.execute("SELECT item, batch, expiry, on_hand, grams FROM stock"
                          " WHERE store = ? AND on_hand != 0 ORDER BY item, expiry, batch",
                          (store,)):
        batches.setdefault(r[0], []).append({"batch": r[1] or None, "expiry": r[2] or None,
                                             "on_hand": r[3], "grams": r[4]})
    items = [{"item": i, "name": names.get(i), **v, "batches": batches.get(i, [])}
             for i, v in avail.items()]
    return {"store": store, "at": now, "items": items}


ORDER_FIELDS = ("id", "store", "mode", "customer", "lines", "created", "expires", "state",
                "state_at", "created_by")


def get_order(conn: sql.Connection, store: str, order_id: int) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {', '.join(ORDER_FIELDS)} FROM orders WHERE id = ? AND"
                       " store = ?", (order_id, store)).fetchone()
    if row is None:
        return None
    out = _order_dict(conn, row)
    out["history"] = [
        {"at": h[0], "state": h[1], "source": h[2], "applied": bool(h[3]),
         "detail": None if h[4] is None else _maybe_json(h[4])}
        for h in conn.execute("SELECT at, state, source, applied, detail FROM order_history"
                              " WHERE order_id = ? ORDER BY id", (order_id,))]
    return out


def list_orders(conn: sql.Connection, store: str, *, state: str | None = None,
                limit: int = 100) -> list[dict[str, Any]]:
    sql = f"SELECT {', '.join(ORDER_FIELDS)} FROM orders WHERE store = ?"
    params: list[Any] = [store]
    if state is not None:
        sql += " AND state = ?"
        params.append(state)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(limit)
    return [_order_dict(conn, r) for r in conn.execute(sql, params).fetchall()]


def _order_dict(conn: sql.Connection, row: Any) -> dict[str, Any]:
    d = dict(zip(ORDER_FIELDS, tuple(row), strict=True))
    d["lines"] = json.loads(d["lines"])
    pub = conn.execute("SELECT published_at FROM downlink WHERE kind = 'order' AND ref = ?"
                       " ORDER BY id LIMIT 1", (d["id"],)).fetchone()
    d["published_at"] = None if pub is None else pub[0]
    return d


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


# ---------------------------------------------------------------- downlink queue


def requeue_unconfirmed(conn: sql.Connection, now: float, store: str | None = None) -> int:
    """Put back in line every unexpired order no store has confirmed (still `open`) and the
    cancellation of every unexpired cancelled order, of one store or all: the broker they
    went through may have lost them. The store ignores what it has. Returns how many."""
    only = "" if store is None else " AND store = ?"
    cur = conn.execute(
        "UPDATE downlink SET published_at = NULL WHERE published_at IS NOT NULL AND ("
        "(kind = 'order' AND expires > ? AND ref IN (SELECT id FROM orders WHERE state = 'open'))"
        " OR (kind = 'cancel' AND ref IN (SELECT id FROM orders WHERE state = 'cancelled'"
        f" AND expires > ?))){only}", (now, now) if store is None else (now, now, store))
    return int(cur.rowcount)



def _queue(conn: sql.Connection, store: str, kind: str, ref: int, topic: str,
           payload: bytes, *, retain: bool, expires: float | None, now: float) -> None:
    conn.execute(
        "INSERT INTO downlink (store, kind, ref, topic, payload, retain, expires, created_at,"
        " attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
        (store, kind, ref, topic, payload, retain, expires, now))


def _check_store(store: str) -> None:
    if not ids.is_store_id(store):
        raise RetailError(400, f"{store!r} is not a store id")
