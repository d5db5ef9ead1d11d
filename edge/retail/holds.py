"""Pieces held at the store for pre-orders (docs/supply.md, "The hold").

A manifest arrives at the cutoff. Each of its lines says, per pre-order it serves, how
many pieces the store adds from its own stock (`from_stock`): from that moment those
pieces are held, so a walk-in sale cannot take them before the customer comes. Once the
delivery is received, the pieces of the order's bag are held too (`bag`). A hold lasts
while its order waits at the store (`received`); before the order itself has arrived
(it comes at dispatch) it lasts until `until`. Picked up, cancelled or expired, it ends:
the pickup takes the pieces out of stock as usual; an uncollected order's pieces go back
to stock or to waste (`settle`).

A hold is a count per item, not a lot: the pieces leave FEFO like any other.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from xiaodian.wire.retail import Manifest

from . import ledger

SCHEMA = """
-- Pieces held for a pre-order (per manifest, order and item): from_stock from the manifest's
-- arrival, bag once it is received; outcome set when an uncollected order's hold ended.
CREATE TABLE IF NOT EXISTS holds (
    manifest INTEGER NOT NULL, order_id INTEGER NOT NULL, item TEXT NOT NULL,
    from_stock INTEGER NOT NULL, bag INTEGER NOT NULL DEFAULT 0, until REAL NOT NULL,
    outcome TEXT, PRIMARY KEY (manifest, order_id, item)
);
CREATE INDEX IF NOT EXISTS holds_item ON holds (item);
"""

# Active: its order waits at the store, or has not arrived and `until` is ahead.
_ACTIVE = ("h.outcome IS NULL AND (o.state = 'received' OR (o.state IS NULL AND h.until > ?))")
# Before its order arrives (at dispatch, hours after the manifest), a hold lasts until this
# long after the delivery day begins: the order's pickup window is on the delivery day.
HOLD_PAST_DELIVERY_S = 2 * 86400


def create(db: sqlite3.Connection) -> None:
    db.executescript(SCHEMA)


def hold_manifest(db: sqlite3.Connection, m: Manifest, wall: float, today: date) -> int:
    """Hold every line's `from_stock` for its pre-orders; pieces held."""
    days = max(0, (date.fromisoformat(m.delivery) - today).days)
    until = wall + days * 86400 + HOLD_PAST_DELIVERY_S
    rows = [(m.id, s.order, ln.item, s.from_stock, until)
            for ln in m.lines for s in ln.serves]
    db.executemany("INSERT INTO holds (manifest, order_id, item, from_stock, until) VALUES"
                   " (?,?,?,?,?) ON CONFLICT DO NOTHING", rows)
    return sum(r[3] for r in rows)


def set_bags(db: sqlite3.Connection, manifest: int, bags: dict[tuple[int, str], int]) -> None:
    """The delivery is received: the pieces in each pre-order's bag are held too."""
    db.executemany("UPDATE holds SET bag = ? WHERE manifest = ? AND order_id = ? AND item = ?",
                   [(n, manifest, o, i) for (o, i), n in bags.items()])


def held(db: sqlite3.Connection, item: str, wall: float) -> int:
    row = db.execute(
        "SELECT COALESCE(SUM(h.from_stock + h.bag), 0) FROM holds h LEFT JOIN orders o ON"
        f" o.id = h.order_id WHERE h.item = ? AND {_ACTIVE}", (item, wall)).fetchone()
    return int(row[0])


def of_order(db: sqlite3.Connection, order: int) -> dict[str, int]:
    """{item: pieces} held for an order, whatever its state (outcome not yet set)."""
    out: dict[str, int] = {}
    for item, n in db.execute("SELECT item, from_stock + bag FROM holds WHERE order_id = ?"
                              " AND outcome IS NULL", (order,)):
        out[item] = out.get(item, 0) + int(n)
    return {i: n for i, n in out.items() if n > 0}


@dataclass(frozen=True)
class Settled:
    """What became of an uncollected order's held pieces of one item."""

    item: str
    back: int  # still within their shelf life: back on the shelf for walk-ins
    wasted: list[tuple[ledger.Lot, int]]  # past their last day: thrown away


def settle(lots: Iterable[ledger.Lot], pieces: dict[str, int], today: date) -> list[Settled]:
    """An uncollected order's held pieces, taken FEFO from the lots on hand: those of a lot
    whose last day has passed go to waste, the rest back to stock (pure)."""
    lots = list(lots)
    out = []
    for item, n in sorted(pieces.items()):
        back, wasted = 0, list[tuple[ledger.Lot, int]]()
        for lot, k in ledger.allocate(lots, item, n):
            if lot is None:
                continue  # not on record (sold below zero): nothing there to put back
            if lot.expiry is not None and lot.expiry < today.isoformat():
                wasted.append((lot, k))
            else:
                back += k
        out.append(Settled(item, back, wasted))
    return out


def end(db: sqlite3.Connection, order: int, outcome: str) -> None:
    db.execute("UPDATE holds SET outcome = ? WHERE order_id = ? AND outcome IS NULL",
               (outcome, order))
