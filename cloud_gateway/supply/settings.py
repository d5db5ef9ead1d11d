"""The supply tables, and the settings the engine plans with: per store (zone, fridge and
pickup capacity), per zone (timetable), per item (lot, case, volume, shelf life, cost,
price, pre-sale minimum).

Kept apart from the store profiles (`cloud_gateway/stores.py`: name, zone of time,
address for residents): these are the depot's numbers, set by an operator
(`xiaodian supply store|zone|item set`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, time

from xiaodian.i18n import DEFAULT_TZ
from xiaodian.wire import ids

from .. import sql
from .cycles import Schedule, parse_hhmm
from .model import Item, Store, SupplyError

# New tables: CREATE TABLE IF NOT EXISTS is their migration (db/schema.py runs it on open).
SCHEMA = """
CREATE TABLE IF NOT EXISTS supply_stores (
    store TEXT PRIMARY KEY,
    zone TEXT NOT NULL,
    fridge_capacity DOUBLE PRECISION NOT NULL,
    pickup_capacity INTEGER NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS supply_zones (
    zone TEXT PRIMARY KEY,
    cutoff TEXT NOT NULL,
    tz TEXT NOT NULL,
    lead_time_days INTEGER NOT NULL,
    pickup_from TEXT NOT NULL,
    pickup_until TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS supply_items (
    item TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    shelf_life_days INTEGER NOT NULL,
    unit_lot INTEGER NOT NULL,
    case_pack INTEGER NOT NULL,
    case_only BOOLEAN NOT NULL,
    unit_volume DOUBLE PRECISION NOT NULL,
    cost BIGINT NOT NULL,
    price BIGINT NOT NULL,
    chilled BOOLEAN NOT NULL,
    presale_min INTEGER NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
-- One row per zone and wave (its cutoff's local date): the cycle's state and when each
-- step was taken (cycles.py).
CREATE TABLE IF NOT EXISTS supply_cycles (
    zone TEXT NOT NULL,
    wave TEXT NOT NULL,
    state TEXT NOT NULL,
    cutoff_at DOUBLE PRECISION NOT NULL,
    delivery TEXT NOT NULL,
    opened_at DOUBLE PRECISION NOT NULL,
    cutoff_done_at DOUBLE PRECISION,
    planned_at DOUBLE PRECISION,
    picked_at DOUBLE PRECISION,
    dispatched_at DOUBLE PRECISION,
    delivered_at DOUBLE PRECISION,
    PRIMARY KEY (zone, wave)
);
-- The wave a pre-order rides, the store it is collected at and the chilled volume it
-- takes there (admission); outcome: held, moved (from `moved_from`), refunded, cancelled.
CREATE TABLE IF NOT EXISTS wave_orders (
    order_id BIGINT PRIMARY KEY,
    zone TEXT NOT NULL,
    wave TEXT NOT NULL,
    store TEXT NOT NULL,
    volume DOUBLE PRECISION NOT NULL,
    outcome TEXT NOT NULL,
    moved_from TEXT,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS wave_orders_by_wave ON wave_orders (zone, wave, store);
-- The plan stored at the cutoff: one row per store and item, the why as JSON
-- (planning.Why), and the lot the depot sends (batch, last day it may be sold).
CREATE TABLE IF NOT EXISTS plan_lines (
    zone TEXT NOT NULL,
    wave TEXT NOT NULL,
    store TEXT NOT NULL,
    item TEXT NOT NULL,
    qty INTEGER NOT NULL,
    why TEXT NOT NULL,
    batch TEXT NOT NULL,
    expiry TEXT NOT NULL,
    PRIMARY KEY (zone, wave, store, item)
);
-- Each store's manifest of a dispatched wave, as sent (dispatch.py); id = the wire's id.
CREATE TABLE IF NOT EXISTS manifests (
    id INTEGER PRIMARY KEY,
    zone TEXT NOT NULL,
    wave TEXT NOT NULL,
    store TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS manifests_by_wave ON manifests (zone, wave, store);
"""
TABLES = ("supply_stores", "supply_zones", "supply_items", "supply_cycles", "wave_orders",
          "plan_lines", "manifests")
# A pre-order's line cancelled at the cutoff (its pre-sale minimum not reached) says so in
# the resident's order: order_lines.line_state ('' = as ordered).
PG_UPGRADE = "ALTER TABLE order_lines ADD COLUMN IF NOT EXISTS line_state TEXT NOT NULL" \
             " DEFAULT '';\n"
LINE_CANCELLED_MIN = "cancelled_below_minimum"

ZONE_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
MAX_NAME = 100


def upgrade_sqlite(conn: sql.Connection) -> None:
    """Add order_lines.line_state to a SQLite database made before it (in the caller's
    write transaction)."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(order_lines)")}
    if "line_state" not in columns:
        conn.execute("ALTER TABLE order_lines ADD COLUMN line_state TEXT NOT NULL DEFAULT ''")


def check_zone(zone: str) -> str:
    if not ZONE_RE.fullmatch(zone):
        raise SupplyError(f"zone: {zone[:40]!r} is not a zone name (a-z, 0-9, - and _, up"
                          " to 32)")
    return zone


# ---------------------------------------------------------------- stores


def set_store(conn: sql.Connection, store: str, now: float, *, zone: str | None = None,
              fridge_capacity: float | None = None,
              pickup_capacity: int | None = None) -> Store:
    """Change the given settings of a store (a new one needs all three)."""
    if not ids.is_store_id(store):
        raise SupplyError(f"store: {store[:64]!r} is not a store id")
    current = get_store(conn, store)
    if current is None and None in (zone, fridge_capacity, pickup_capacity):
        raise SupplyError(f"{store} has no supply settings yet: give --zone, --fridge and"
                          " --pickup")
    new = Store(store,
                float(fridge_capacity if fridge_capacity is not None
                      else current.fridge_capacity),  # type: ignore[union-attr]
                int(pickup_capacity if pickup_capacity is not None
                    else current.pickup_capacity),  # type: ignore[union-attr]
                check_zone(zone) if zone is not None else current.zone)  # type: ignore[union-attr]
    if new.fridge_capacity > 100_000 or new.pickup_capacity > 10_000:
        raise SupplyError("capacities: at most 100000 (fridge) and 10000 (pickups per wave)")
    conn.execute(
        "INSERT INTO supply_stores (store, zone, fridge_capacity, pickup_capacity, updated_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (store) DO UPDATE SET zone = excluded.zone,"
        " fridge_capacity = excluded.fridge_capacity,"
        " pickup_capacity = excluded.pickup_capacity, updated_at = excluded.updated_at",
        (store, new.zone, new.fridge_capacity, new.pickup_capacity, now))
    return new


def get_store(conn: sql.Connection, store: str) -> Store | None:
    row = conn.execute("SELECT zone, fridge_capacity, pickup_capacity FROM supply_stores"
                       " WHERE store = ?", (store,)).fetchone()
    return None if row is None else Store(store, float(row[1]), int(row[2]), str(row[0]))


def zone_stores(conn: sql.Connection, zone: str) -> list[Store]:
    return [Store(r[0], float(r[2]), int(r[3]), r[1]) for r in conn.execute(
        "SELECT store, zone, fridge_capacity, pickup_capacity FROM supply_stores"
        " WHERE zone = ? ORDER BY store", (zone,))]


def zones(conn: sql.Connection) -> list[str]:
    """Every zone a store is in or a timetable was set for."""
    return sorted({r[0] for r in conn.execute(
        "SELECT zone FROM supply_stores UNION SELECT zone FROM supply_zones")})


# ---------------------------------------------------------------- zones


def set_zone(conn: sql.Connection, zone: str, now: float, *, cutoff: str | None = None,
             tz: str | None = None, lead_time_days: int | None = None,
             pickup_from: str | None = None, pickup_until: str | None = None) -> Schedule:
    check_zone(zone)
    cur = get_zone(conn, zone)
    new = Schedule(
        parse_hhmm(cutoff, "cutoff") if cutoff is not None else cur.cutoff,
        tz if tz is not None else cur.tz,
        lead_time_days if lead_time_days is not None else cur.lead_time_days,
        parse_hhmm(pickup_from, "pickup_from") if pickup_from is not None else cur.pickup_from,
        parse_hhmm(pickup_until, "pickup_until") if pickup_until is not None
        else cur.pickup_until)
    conn.execute(
        "INSERT INTO supply_zones (zone, cutoff, tz, lead_time_days, pickup_from,"
        " pickup_until, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (zone) DO UPDATE"
        " SET cutoff = excluded.cutoff, tz = excluded.tz,"
        " lead_time_days = excluded.lead_time_days, pickup_from = excluded.pickup_from,"
        " pickup_until = excluded.pickup_until, updated_at = excluded.updated_at",
        (zone, _hhmm(new.cutoff), new.tz, new.lead_time_days, _hhmm(new.pickup_from),
         _hhmm(new.pickup_until), now))
    # The zone's open cycles follow the new timetable: their stored cutoff is what
    # admission and the scheduler go by (one now in the past is cut off at the next tick).
    for (wave,) in conn.execute("SELECT wave FROM supply_cycles WHERE zone = ? AND"
                                " state = 'open'", (zone,)).fetchall():
        day = date.fromisoformat(wave)
        conn.execute("UPDATE supply_cycles SET cutoff_at = ?, delivery = ? WHERE zone = ?"
                     " AND wave = ?", (new.cutoff_at(day), new.delivery(day).isoformat(),
                                       zone, wave))
    return new


def get_zone(conn: sql.Connection, zone: str) -> Schedule:
    """The zone's timetable; the defaults (23:00 Asia/Shanghai, next day) if never set."""
    row = conn.execute("SELECT cutoff, tz, lead_time_days, pickup_from, pickup_until"
                       " FROM supply_zones WHERE zone = ?", (zone,)).fetchone()
    if row is None:
        return Schedule(tz=DEFAULT_TZ)
    return Schedule(parse_hhmm(row[0], "cutoff"), row[1], int(row[2]),
                    parse_hhmm(row[3], "pickup_from"), parse_hhmm(row[4], "pickup_until"))


def _hhmm(t: time) -> str:
    return f"{t.hour:02d}:{t.minute:02d}"


def schedule_text(s: Schedule) -> dict[str, object]:
    return {"cutoff": _hhmm(s.cutoff), "tz": s.tz, "lead_time_days": s.lead_time_days,
            "pickup_from": _hhmm(s.pickup_from), "pickup_until": _hhmm(s.pickup_until)}


# ---------------------------------------------------------------- items


@dataclass(frozen=True)
class SupplyItem:
    item: Item
    name: str
    presale_min: int  # pre-sale: fewer pieces pre-ordered in a wave cancel its lines (0: none)


ITEM_FIELDS = ("shelf_life_days", "unit_lot", "case_pack", "case_only", "unit_volume",
               "cost", "price", "chilled")


def set_item(conn: sql.Connection, item: str, now: float, *, name: str,
             shelf_life_days: int, unit_lot: int, case_pack: int, case_only: bool,
             unit_volume: float, cost: int, price: int, chilled: bool,
             presale_min: int = 0) -> SupplyItem:
    if not ids.is_item_id(item):
        raise SupplyError(f"item: bad item key {item[:40]!r} (a GTIN-14 or 'in:' + number)")
    name = " ".join(name.split())
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise SupplyError(f"name: 1 to {MAX_NAME} printable characters")
    if not 0 <= presale_min <= 100_000:
        raise SupplyError("presale_min: 0 (no minimum) to 100000")
    if shelf_life_days > 3650 or unit_lot > 1000 or case_pack > 1000 or unit_volume > 1000:
        raise SupplyError("item: shelf life at most 3650 days, lot and case at most 1000,"
                          " volume at most 1000")
    it = SupplyItem(Item(item, shelf_life_days, unit_lot, case_pack, unit_volume, cost, price,
                         chilled, case_only), name, presale_min)
    conn.execute(
        "INSERT INTO supply_items (item, name, shelf_life_days, unit_lot, case_pack, case_only,"
        " unit_volume, cost, price, chilled, presale_min, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (item) DO UPDATE SET"
        " name = excluded.name, shelf_life_days = excluded.shelf_life_days,"
        " unit_lot = excluded.unit_lot, case_pack = excluded.case_pack,"
        " case_only = excluded.case_only, unit_volume = excluded.unit_volume,"
        " cost = excluded.cost, price = excluded.price, chilled = excluded.chilled,"
        " presale_min = excluded.presale_min, updated_at = excluded.updated_at",
        (item, name, shelf_life_days, unit_lot, case_pack, case_only, unit_volume, cost,
         price, chilled, presale_min, now))
    return it


def items(conn: sql.Connection, only: Sequence[str] | None = None) -> list[SupplyItem]:
    """The depot's items, by key (all, or `only` those)."""
    rows = conn.execute(
        "SELECT item, name, shelf_life_days, unit_lot, case_pack, case_only, unit_volume,"
        " cost, price, chilled, presale_min FROM supply_items ORDER BY item").fetchall()
    out = [SupplyItem(Item(r[0], int(r[2]), int(r[3]), int(r[4]), float(r[6]), int(r[7]),
                           int(r[8]), bool(r[9]), bool(r[5])), r[1], int(r[10]))
           for r in rows]
    return out if only is None else [i for i in out if i.item.id in set(only)]


def item_dict(i: SupplyItem) -> dict[str, object]:
    it = i.item
    return {"item": it.id, "name": i.name, "shelf_life_days": it.shelf_life_days,
            "unit_lot": it.unit_lot, "case_pack": it.case_pack, "case_only": it.case_only,
            "unit_volume": it.unit_volume, "cost": it.cost, "price": it.price,
            "chilled": it.chilled, "presale_min": i.presale_min}

