"""The stock ledger: movements in, lots (item, batch, expiry) on hand out; FEFO (pure core
plus the few SQL statements that keep it in the agent's database)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import cast

import msgspec

from xiaodian.wire import jsonio
from xiaodian.wire.retail import (
    Catalogue,
    CatalogueItem,
    Location,
    Manifest,
    Movement,
    MovementKind,
)

Writer = Callable[[sqlite3.Connection], None]  # rows written in one transaction with others

SCHEMA = """
CREATE TABLE IF NOT EXISTS retail_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS catalogue (
    item TEXT PRIMARY KEY, name TEXT NOT NULL, unit TEXT NOT NULL,
    shelf_life_days INTEGER NOT NULL, storage TEXT NOT NULL,
    fridge TEXT, lane INTEGER, unit_grams INTEGER
);
-- One row per movement, never updated: on hand is their sum (docs/retail.md).
CREATE TABLE IF NOT EXISTS stock_movements (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, item TEXT NOT NULL, qty INTEGER NOT NULL,
    grams INTEGER, batch TEXT, expiry TEXT, order_id INTEGER, note TEXT, wall REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS stock_movements_lot ON stock_movements (item, batch, expiry);
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY, mode TEXT NOT NULL, customer TEXT NOT NULL,
    created REAL NOT NULL, expires REAL NOT NULL, lines TEXT NOT NULL,
    state TEXT NOT NULL, updated REAL NOT NULL, note TEXT
);
-- The handover on the counter (at most one), so that a restarted agent carries on with it:
-- state = Handover.state(); through = {fridge: [boot, seq]} of the last event applied.
CREATE TABLE IF NOT EXISTS handover (
    id INTEGER PRIMARY KEY CHECK (id = 1), order_id INTEGER NOT NULL,
    nonce INTEGER NOT NULL, state TEXT NOT NULL, through TEXT NOT NULL, updated REAL NOT NULL
);
-- Delivery manifests from the cloud (what a wave brings), as received: the counter receives
-- the delivery against them. body = the message's JSON.
CREATE TABLE IF NOT EXISTS manifests (
    id INTEGER PRIMARY KEY, zone TEXT NOT NULL, wave TEXT NOT NULL, delivery TEXT NOT NULL,
    body TEXT NOT NULL, received REAL NOT NULL
);
-- Downlink messages that did not parse: kept with the reason, never retried.
CREATE TABLE IF NOT EXISTS retail_rejects (
    wall REAL NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL, payload BLOB NOT NULL
);
"""


@dataclass(frozen=True)
class Lot:
    item: str
    batch: str | None
    expiry: str | None  # YYYY-MM-DD
    qty: int


def new_id() -> str:
    return uuid.uuid4().hex


def lots_from(movements: Iterable[Movement]) -> list[Lot]:
    """On hand per (item, batch, expiry): the sum of its movements, zero lots left out."""
    sums: dict[tuple[str, str | None, str | None], int] = {}
    for m in movements:
        key = (m.item, m.batch, m.expiry)
        sums[key] = sums.get(key, 0) + m.qty
    return fefo([Lot(i, b, e, q) for (i, b, e), q in sums.items() if q != 0])


def fefo(lots: Iterable[Lot]) -> list[Lot]:
    """First expired, first out: earliest expiry first, lots without a date last."""
    return sorted(lots, key=lambda lot: (lot.item, lot.expiry is None, lot.expiry or "",
                                         lot.batch or ""))


def allocate(lots: Iterable[Lot], item: str, qty: int) -> list[tuple[Lot | None, int]]:
    """Which lots `qty` pieces of `item` come out of, FEFO. What the ledger does not
    have (stock was never received by scanning) comes out of no lot: (None, n)."""
    out: list[tuple[Lot | None, int]] = []
    left = qty
    for lot in fefo(lot for lot in lots if lot.item == item and lot.qty > 0):
        if left <= 0:
            break
        take = min(lot.qty, left)
        out.append((lot, take))
        left -= take
    if left > 0:
        out.append((None, left))
    return out


def outgoing(kind: str, lots: Iterable[Lot], item: str, qty: int, *, order: int | None = None,
             note: str | None = None, grams: int | None = None) -> list[Movement]:
    """Movements for `qty` pieces leaving (sale, waste, pickup, dispatch), one per lot."""
    moves: list[Movement] = []
    # A kind of the caller's choosing: movement_data checks it before anything is written.
    kind_ = cast(MovementKind, kind)
    for lot, n in allocate(lots, item, qty):
        moves.append(Movement(new_id(), kind_, item, -n, grams if len(moves) == 0 else None,
                              None if lot is None else lot.batch,
                              None if lot is None else lot.expiry, order, note))
    return moves


def expiring(lots: Iterable[Lot], today: date, window_days: int) -> list[Lot]:
    """Lots on hand that expire within the window (or already have), FEFO."""
    last = (today + timedelta(days=window_days)).isoformat()
    return fefo(lot for lot in lots
                if lot.qty > 0 and lot.expiry is not None and lot.expiry <= last)


# ---------------------------------------------------------------- SQLite


def create(db: sqlite3.Connection) -> None:
    db.executescript(SCHEMA)


def write_movement(db: sqlite3.Connection, m: Movement, wall: float) -> None:
    db.execute("INSERT INTO stock_movements (id, kind, item, qty, grams, batch, expiry, order_id,"
               " note, wall) VALUES (?,?,?,?,?,?,?,?,?,?)",
               (m.id, m.kind, m.item, m.qty, m.grams, m.batch, m.expiry, m.order, m.note,
                wall))


def lots(db: sqlite3.Connection, item: str | None = None) -> list[Lot]:
    sql = ("SELECT item, batch, expiry, SUM(qty) FROM stock_movements {} "
           "GROUP BY item, batch, expiry HAVING SUM(qty) != 0")
    rows = (db.execute(sql.format("WHERE item=?"), (item,)) if item is not None
            else db.execute(sql.format("")))
    return fefo(Lot(r[0], r[1], r[2], int(r[3])) for r in rows)


def store_manifest(db: sqlite3.Connection, m: Manifest, wall: float) -> bool:
    """Keep a delivery manifest; False if this id is here already (a redelivery)."""
    cur = db.execute("INSERT INTO manifests (id, zone, wave, delivery, body, received)"
                     " VALUES (?,?,?,?,?,?) ON CONFLICT (id) DO NOTHING",
                     (m.id, m.zone, m.wave, m.delivery, jsonio.encode(m).decode(), wall))
    return cur.rowcount == 1


def manifests(db: sqlite3.Connection, since: str | None = None) -> list[Manifest]:
    """The manifests kept, by delivery day then id (only those delivered on or after
    `since`, YYYY-MM-DD, if given)."""
    rows = db.execute("SELECT body FROM manifests WHERE delivery >= ? ORDER BY delivery, id",
                      (since or "",)).fetchall()
    return [msgspec.json.decode(r[0], type=Manifest) for r in rows]


def catalogue_version(db: sqlite3.Connection) -> int | None:
    row = db.execute("SELECT value FROM retail_meta WHERE key='catalogue_version'").fetchone()
    return None if row is None else int(row[0])


def replace_catalogue(db: sqlite3.Connection, c: Catalogue) -> None:
    db.execute("DELETE FROM catalogue")
    db.executemany(
        "INSERT INTO catalogue (item, name, unit, shelf_life_days, storage, fridge, lane,"
        " unit_grams) VALUES (?,?,?,?,?,?,?,?)",
        [(i.item, i.name, i.unit, i.shelf_life_days, i.storage,
          i.location.fridge if i.location else None, i.location.lane if i.location else None,
          i.location.unit_grams if i.location else None) for i in c.items])
    db.execute("INSERT INTO retail_meta (key, value) VALUES ('catalogue_version', ?) "
               "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (str(c.version),))


def load_catalogue(db: sqlite3.Connection) -> dict[str, CatalogueItem]:
    out = {}
    for item, name, unit, days, storage, fridge, lane, grams in db.execute(
            "SELECT item, name, unit, shelf_life_days, storage, fridge, lane, unit_grams "
            "FROM catalogue"):
        loc = Location(fridge, lane, grams) if fridge is not None else None
        out[item] = CatalogueItem(item, name, unit, days, storage, loc)
    return out


def meta(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM retail_meta WHERE key=?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute("INSERT INTO retail_meta (key, value) VALUES (?, ?) "
               "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))


def del_meta(db: sqlite3.Connection, key: str) -> None:
    db.execute("DELETE FROM retail_meta WHERE key=?", (key,))


def save_handover(db: sqlite3.Connection, order: int, nonce: int, state: str, through: str,
                  wall: float) -> None:
    db.execute("INSERT INTO handover (id, order_id, nonce, state, through, updated)"
               " VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
               "order_id=excluded.order_id, nonce=excluded.nonce, state=excluded.state, "
               "through=excluded.through, updated=excluded.updated",
               (order, nonce, state, through, wall))


def clear_handover(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM handover")


def load_handover(db: sqlite3.Connection) -> tuple[int, str, str] | None:
    """(nonce, state, through) of the handover saved, if any."""
    row = db.execute("SELECT nonce, state, through FROM handover").fetchone()
    return None if row is None else (int(row[0]), str(row[1]), str(row[2]))


def last_lane_weights(db: sqlite3.Connection) -> dict[tuple[str, int], tuple[int, float]]:
    """{(fridge, lane): (grams, wall)}: the last settled weight of every lane found in the
    stored `lanes` events (newest by the agent's own order: boot, seq) and when it was
    stored. A fridge reports its lanes once after its own boot and then only on a change,
    so after an agent-only restart this is all there is to start from."""
    rows = db.execute(
        "SELECT device, lane, grams, wall FROM ("
        " SELECT e.device AS device, json_extract(l.value, '$.lane') AS lane,"
        "  json_extract(l.value, '$.grams') AS grams, e.wall AS wall,"
        "  row_number() OVER (PARTITION BY e.device, json_extract(l.value, '$.lane')"
        "   ORDER BY e.boot DESC, e.seq DESC) AS n"
        " FROM events e, json_each(e.data, '$.lanes') l"
        " WHERE e.type = 'lanes' AND json_valid(e.data)"
        "  AND json_type(l.value, '$.lane') = 'integer'"
        "  AND json_type(l.value, '$.grams') IN ('integer', 'real')"
        "  AND json_type(l.value, '$.stable') = 'true'"
        ") WHERE n = 1").fetchall()
    return {(str(d), int(lane)): (round(g), float(w)) for d, lane, g, w in rows}


def pieces_out_since(db: sqlite3.Connection, item: str, wall: float) -> int:
    """Pieces of `item` sold or wasted after `wall` (what the lane watch counts as
    explaining a drop of its lane)."""
    row = db.execute("SELECT COALESCE(-SUM(qty), 0) FROM stock_movements WHERE item=? AND "
                     "kind IN ('sale', 'waste') AND wall > ?", (item, wall)).fetchone()
    return max(0, int(row[0]))
