"""The cloud's retail tables, order states and the downlink queue shared by its parts.

Split out of `cloud_gateway.retail` (which re-exports every public name here): the schema,
the limits on what a request may ask, the one way an order's state moves, and the queue
of messages to the stores.
"""

from __future__ import annotations

import enum
from typing import Any

from xiaodian.wire import ids, retail

from . import sql
from .errors import CloudError

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
-- state: preorder (riding a delivery wave, supply/waves.py), open (not yet confirmed by
-- the store), then the store's states (xiaodian.wire.retail
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
# "preorder": a pre-order riding a delivery wave (cloud_gateway/supply/waves.py): it holds
# no stock (its goods come with the wave) and reaches the store, as "open", when the wave
# is dispatched.
CLOUD_STATES = ("preorder", "open", *retail.ORDER_STATES)
# An order only moves forward; the goods leaving the store (picked_up, packed, ...) is
# evidence that beats the cloud's own cancelled/expired (the store may have handed it over
# offline, before it heard of the cancellation).
RANK = {"preorder": -1, "open": 0, "received": 1, "packed": 2, "out_for_delivery": 3,
        "delivered": 4, "picked_up": 4, "cancelled": 4, "expired": 4}
GOODS_MOVED = ("picked_up", "packed", "out_for_delivery", "delivered")
MAX_CUSTOMER_CHARS = 64
MIN_EXPIRES_IN_S = 60
MAX_EXPIRES_IN_S = 14 * 24 * 3600
# The contract bounds neither; sums of absurd values would overflow SQL integers later.
MAX_MOVEMENT_QTY = 1_000_000
MAX_MOVEMENT_GRAMS = 10_000_000


class Refusal(enum.Enum):
    """Why a retail request cannot be carried out; the web layer maps each to a status."""

    INVALID = "invalid"  # the request itself is wrong
    NOT_FOUND = "not_found"  # no such store catalogue or order
    CONFLICT = "conflict"  # the state forbids it: short stock, too late to cancel
    TOO_LARGE = "too_large"  # more than one message can carry
    UNAVAILABLE = "unavailable"  # the deployment lacks what it needs (a pickup key)


class RetailError(CloudError):
    """A retail request that cannot be carried out, with the `Refusal` that says why."""

    def __init__(self, reason: Refusal, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.detail = detail


def set_state(conn: sql.Connection, order_id: int, current: str, new: str, at: float,
              source: str, detail: str | None) -> bool:
    applied = RANK[new] > RANK[current] or (
        current in ("cancelled", "expired") and new in GOODS_MOVED)
    conn.execute("INSERT INTO order_history (order_id, at, state, source, applied, detail)"
                 " VALUES (?, ?, ?, ?, ?, ?)", (order_id, at, new, source, applied, detail))
    if applied:
        conn.execute("UPDATE orders SET state = ?, state_at = ? WHERE id = ?",
                     (new, at, order_id))
    return applied


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


def queue(conn: sql.Connection, store: str, kind: str, ref: int, topic: str,
          payload: bytes, *, retain: bool, expires: float | None, now: float) -> None:
    conn.execute(
        "INSERT INTO downlink (store, kind, ref, topic, payload, retain, expires, created_at,"
        " attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
        (store, kind, ref, topic, payload, retain, expires, now))


def check_store(store: str) -> None:
    if not ids.is_store_id(store):
        raise RetailError(Refusal.INVALID, f"{store!r} is not a store id")
