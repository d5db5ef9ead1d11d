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

The tables live in `cloud_gateway.retail_tables` and the stores' events in
`cloud_gateway.retail_events`; this module keeps the catalogues, orders and stock views and
re-exports the others' names, so callers import everything from here.

SQL is portable like cloud_gateway/db's, except `MAX`/`MIN` with two arguments, avoided here (CASE).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from xiaodian.wire import retail
from xiaodian.wire.payloads import PayloadError

from . import sql
from .retail_events import apply_events, expire_orders, recent_events
from .retail_tables import (
    CLOUD_STATES,
    MAX_CUSTOMER_CHARS,
    MAX_EXPIRES_IN_S,
    MAX_MOVEMENT_GRAMS,
    MAX_MOVEMENT_QTY,
    MIN_EXPIRES_IN_S,
    RESERVING,
    SCHEMA,
    Refusal,
    RetailError,
    requeue_unconfirmed,
)
from .retail_tables import check_store as _check_store
from .retail_tables import queue as _queue
from .retail_tables import set_state as _set_state

# Re-exported: callers import these from cloud_gateway.retail.
__all__ = [
    "CLOUD_STATES",
    "MAX_CUSTOMER_CHARS",
    "MAX_EXPIRES_IN_S",
    "MAX_MOVEMENT_GRAMS",
    "MAX_MOVEMENT_QTY",
    "MIN_EXPIRES_IN_S",
    "ORDER_FIELDS",
    "RESERVING",
    "SCHEMA",
    "OrderRequest",
    "Refusal",
    "RetailError",
    "apply_events",
    "availability",
    "cancel_order",
    "catalogue",
    "check_price",
    "create_order",
    "expire_orders",
    "fold_old_prices",
    "get_order",
    "list_orders",
    "parse_catalogue",
    "parse_catalogue_items",
    "parse_order_request",
    "prices",
    "put_catalogue",
    "recent_events",
    "requeue_unconfirmed",
    "set_price",
    "stock_view",
]


# ---------------------------------------------------------------- catalogue


MAX_PRICE_FEN = 10_000_000  # ¥100,000.00 a piece: anything more is a typo


def check_price(fen: Any, what: str) -> int:
    """A price in whole fen, 1..MAX_PRICE_FEN; RetailError (400) naming `what` if not."""
    if isinstance(fen, bool) or not isinstance(fen, int) or not 1 <= fen <= MAX_PRICE_FEN:
        hint = f" (write {round(fen * 100)} for ¥{fen:.2f})" if isinstance(
            fen, float) and 0 < fen < MAX_PRICE_FEN / 100 else ""
        raise RetailError(Refusal.INVALID, f"{what}: a price in whole fen, 1 to {MAX_PRICE_FEN}"
                          f" (1250 = ¥12.50); got {str(fen)[:40]!r}{hint}")
    return fen


def parse_catalogue_items(store: str, items: Any) -> tuple[retail.CatalogueItem, ...]:
    """Check catalogue items exactly as a store will (by parsing the message it would get);
    their prices are checked too, and left out (`parse_catalogue` returns them)."""
    return parse_catalogue(store, items)[0]


def parse_catalogue(store: str, items: Any
                    ) -> tuple[tuple[retail.CatalogueItem, ...], dict[str, int]]:
    """(items as the store gets them, price in fen per item that has one).

    A price (`price_fen`) is the cloud's: what residents pay. The store's message carries
    none (the wire contract has no price), so it is taken off each item before the item is
    checked as the store would check it."""
    if not isinstance(items, list):
        raise RetailError(Refusal.INVALID, "items: expected a list of catalogue items")
    bare: list[Any] = []
    priced: dict[int, int] = {}
    for n, it in enumerate(items):
        if isinstance(it, dict) and "price_fen" in it:
            it = {k: v for k, v in it.items() if k != "price_fen"}
            priced[n] = check_price(items[n]["price_fen"], f"items[{n}].price_fen")
        bare.append(it)
    parsed = _parse_items(store, bare)
    return parsed, {parsed[n].item: fen for n, fen in priced.items()}


def _parse_items(store: str, items: list[Any]) -> tuple[retail.CatalogueItem, ...]:
    body = json.dumps({"v": 1, "type": "catalogue", "store": store, "version": 0,
                       "items": items}, separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) > retail.MAX_CATALOGUE_BYTES:
        raise RetailError(Refusal.TOO_LARGE, f"catalogue is {len(body)} bytes as a message; at most"
                               f" {retail.MAX_CATALOGUE_BYTES} fit in one")
    try:
        parsed = retail.parse_downlink(f"xd/v1/{store}/catalogue", body)
        assert isinstance(parsed, retail.Catalogue)
        retail.catalogue_payload(parsed)  # what the store gets must fit too
    except PayloadError as exc:
        raise RetailError(Refusal.INVALID, str(exc)) from None
    return parsed.items


def put_catalogue(conn: sql.Connection, store: str, items: Sequence[retail.CatalogueItem],
                  now: float, by: str, prices: Mapping[str, int] | None = None
                  ) -> retail.Catalogue:
    """Store a new version of a store's catalogue and queue it (retained) for the store.

    `prices` (fen per item) are kept with the cloud's copy of the items (`price_fen`) and
    replace the previous version's: an item without one is not offered to residents."""
    _check_store(store)
    row = conn.execute("SELECT MAX(version) FROM catalogues WHERE store = ?",
                       (store,)).fetchone()
    cat = retail.Catalogue(store, int(row[0] or 0) + 1, tuple(items))
    payload = retail.catalogue_payload(cat)
    stored = json.loads(payload)["items"]
    for it in stored:
        if (prices or {}).get(it["item"]) is not None:
            it["price_fen"] = check_price((prices or {})[it["item"]], f"{it['item']} price")
    unknown = sorted(set(prices or {}) - {it["item"] for it in stored})
    if unknown:
        raise RetailError(Refusal.INVALID, f"a price for {unknown[0]}, which is not in the"
                          " catalogue")
    conn.execute("INSERT INTO catalogues (store, version, items, created_at, created_by)"
                 " VALUES (?, ?, ?, ?, ?)", (store, cat.version, json.dumps(stored), now, by))
    # An older version still unpublished must never overwrite this one as the retained copy.
    conn.execute("UPDATE downlink SET published_at = ?, last_error = 'superseded'"
                 " WHERE store = ? AND kind = 'catalogue' AND published_at IS NULL",
                 (now, store))
    _queue(conn, store, "catalogue", cat.version, f"xd/v1/{store}/catalogue", payload,
           retain=True, expires=None, now=now)
    return cat


def set_price(conn: sql.Connection, store: str, item: str, price_fen: int | None,
              now: float) -> int:
    """Set (None: take away) the price of one item of the store's current catalogue, in
    place: the store's copy carries no price, so this is no new version for it. Returns
    the version changed."""
    _check_store(store)
    row = conn.execute("SELECT version, items FROM catalogues WHERE store = ?"
                       " ORDER BY version DESC LIMIT 1", (store,)).fetchone()
    if row is None:
        raise RetailError(Refusal.NOT_FOUND, f"{store} has no catalogue yet")
    items = json.loads(row[1])
    it = next((i for i in items if i["item"] == item), None)
    if it is None:
        raise RetailError(Refusal.INVALID, f"{item[:40]!r} is not in {store}'s catalogue",
                          {"not_in_catalogue": [item[:40]]})
    if price_fen is None:
        it.pop("price_fen", None)
    else:
        it["price_fen"] = check_price(price_fen, "price_fen")
    conn.execute("UPDATE catalogues SET items = ? WHERE store = ? AND version = ?",
                 (json.dumps(items), store, row[0]))
    return int(row[0])


def prices(conn: sql.Connection, store: str) -> dict[str, int]:
    """Fen per item of the store's current catalogue, for the items that have a price."""
    cat = catalogue(conn, store)
    return {} if cat is None else {i["item"]: int(i["price_fen"]) for i in cat["items"]
                                   if i.get("price_fen") is not None}


def fold_old_prices(conn: sql.Connection) -> int:
    """Migration: the prices of the `shop_prices` table (before prices were part of the
    catalogue item) go into each store's current catalogue, where an item has none yet,
    and the table is dropped; nothing if it is gone. In the caller's write transaction.
    A price for an item that is not in the store's catalogue was never shown and is not
    kept. Returns how many prices were folded in."""
    if not sql.columns(conn, "shop_prices"):
        return 0
    by_store: dict[str, dict[str, int]] = {}
    for store, item, fen in conn.execute("SELECT store, item, price_fen FROM shop_prices"):
        by_store.setdefault(str(store), {})[str(item)] = int(fen)
    folded = 0
    for store, got in sorted(by_store.items()):
        row = conn.execute("SELECT version, items FROM catalogues WHERE store = ?"
                           " ORDER BY version DESC LIMIT 1", (store,)).fetchone()
        if row is None:
            continue
        items = json.loads(row[1])
        for it in items:
            fen = got.get(it["item"])
            if fen is not None and it.get("price_fen") is None and 0 < fen <= MAX_PRICE_FEN:
                it["price_fen"] = fen
                folded += 1
        conn.execute("UPDATE catalogues SET items = ? WHERE store = ? AND version = ?",
                     (json.dumps(items), store, row[0]))
    conn.execute("DROP TABLE shop_prices")
    return folded


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
        raise RetailError(Refusal.INVALID, f"{unknown[0]}: unknown field"
                               " (known: items, mode, customer, expires_in_s)")
    mode = body.get("mode", "pickup")
    if mode not in retail.ORDER_MODES:
        raise RetailError(Refusal.INVALID, f"mode: one of {', '.join(retail.ORDER_MODES)}")
    customer = body.get("customer")
    if not isinstance(customer, str) or not 0 < len(customer.strip()) <= MAX_CUSTOMER_CHARS:
        raise RetailError(Refusal.INVALID, f"customer: a display name of 1 to {MAX_CUSTOMER_CHARS}"
                               " characters")
    expires_in = body.get("expires_in_s", 24 * 3600)
    if (isinstance(expires_in, bool) or not isinstance(expires_in, int)
            or not MIN_EXPIRES_IN_S <= expires_in <= MAX_EXPIRES_IN_S):
        raise RetailError(Refusal.INVALID, f"expires_in_s: whole seconds, {MIN_EXPIRES_IN_S} to"
                               f" {MAX_EXPIRES_IN_S}")
    items = body.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= retail.MAX_LINES:
        raise RetailError(Refusal.INVALID,
                          f"items: a list of 1 to {retail.MAX_LINES} {{item, qty}}")
    lines: list[retail.OrderLine] = []
    for n, it in enumerate(items):
        if not isinstance(it, dict) or set(it) != {"item", "qty"}:
            raise RetailError(Refusal.INVALID, f"items[{n}]: exactly item and qty")
        qty = it["qty"]
        if isinstance(qty, bool) or not isinstance(qty, int) or not 1 <= qty <= 1000:
            raise RetailError(Refusal.INVALID, f"items[{n}].qty: a whole number 1..1000")
        try:
            item = retail.check_item(it["item"], f"items[{n}].item")
        except PayloadError as exc:
            raise RetailError(Refusal.INVALID, str(exc)) from None
        lines.append(retail.OrderLine(item, qty))
    if len({ln.item for ln in lines}) != len(lines):
        raise RetailError(Refusal.INVALID, "items: an item appears twice")
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
        raise RetailError(Refusal.NOT_FOUND, f"{store} has no catalogue yet")
    known = {i["item"] for i in cat["items"]}
    missing = [ln.item for ln in req.lines if ln.item not in known]
    if missing:
        raise RetailError(Refusal.INVALID, f"not in {store}'s catalogue: {', '.join(missing)}",
                          {"not_in_catalogue": missing})
    avail = availability(conn, store, now, [ln.item for ln in req.lines])
    short = [{"item": ln.item, "wanted": ln.qty, "available": avail[ln.item]["available"]}
             for ln in req.lines if ln.qty > avail[ln.item]["available"]]
    if short:
        raise RetailError(Refusal.CONFLICT, "not enough stock: " + ", ".join(
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
        raise RetailError(Refusal.NOT_FOUND, f"{store} has no order {order_id}")
    reason = reason.strip()[:200] or "cancelled"
    if row[0] == "preorder":
        return _cancel_preorder(conn, store, order_id, reason, now, by)
    if row[0] not in RESERVING:
        raise RetailError(Refusal.CONFLICT, f"order {order_id} is {row[0]}: too late to cancel")
    _set_state(conn, order_id, row[0], "cancelled", now, "cloud",
               json.dumps({"reason": reason, "by": by}))
    payload = retail.cancel_payload(retail.Cancel(order_id, store, reason))
    _queue(conn, store, "cancel", order_id, f"xd/v1/{store}/orders", payload, retain=False,
           expires=None, now=now)
    got = get_order(conn, store, order_id)
    assert got is not None
    return got


def _cancel_preorder(conn: sql.Connection, store: str, order_id: int, reason: str,
                     now: float, by: str) -> dict[str, Any]:
    """A pre-order may be cancelled until its wave is cut off (its place in the wave is
    freed); the store never had it, so nothing is sent (supply/waves.py)."""
    wave = conn.execute(
        "SELECT c.state, c.cutoff_at FROM wave_orders w JOIN supply_cycles c"
        " ON c.zone = w.zone AND c.wave = w.wave WHERE w.order_id = ?", (order_id,)).fetchone()
    if wave is None or wave[0] != "open" or now >= wave[1]:
        raise RetailError(Refusal.CONFLICT, f"order {order_id}'s wave is cut off: too late to"
                          " cancel", {"closed": "cutoff_passed"})
    conn.execute("UPDATE wave_orders SET outcome = 'cancelled', reason = ? WHERE order_id = ?",
                 (reason, order_id))
    _set_state(conn, order_id, "preorder", "cancelled", now, "cloud",
               json.dumps({"reason": reason, "by": by}))
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
    _add_wave(conn, order_id, out)
    return out


def _add_wave(conn: sql.Connection, order_id: int, out: dict[str, Any]) -> None:
    """A pre-order's wave and the lines its cutoff cancelled (a pre-sale minimum not
    reached), for the resident's page to say so (supply/waves.py, supply/cutoff.py)."""
    if "line_state" not in sql.columns(conn, "order_lines"):
        return  # a database opened read-only before the supply tables existed
    wave = conn.execute("SELECT zone, wave, store, outcome, moved_from, reason FROM"
                        " wave_orders WHERE order_id = ?", (order_id,)).fetchone()
    if wave is None:
        return
    out["wave"] = dict(zip(("zone", "wave", "store", "outcome", "moved_from", "reason"),
                           tuple(wave), strict=True))
    out["cancelled_lines"] = [{"item": r[0], "reason": r[1]} for r in conn.execute(
        "SELECT item, line_state FROM order_lines WHERE order_id = ? AND line_state != ''"
        " ORDER BY item", (order_id,))]


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
