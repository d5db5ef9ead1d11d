"""A store's profile: the name people see, its time zone, and what residents need to find it.

Every time a person reads about a store (the owner page, the HACCP record and its CSV, the
acknowledgement form, the dashboard, the resident pages) is shown in the store's zone, never
the server's or the browser's. A store without a profile is called by its id, is in
`Asia/Shanghai` (`xiaodian.i18n.DEFAULT_TZ`) and is not shown to residents (it has no
position).

For residents (docs/residents.md): the address and district, the position in GCJ-02 (the one
datum the cloud stores: cloud_gateway/geo.py says why), the opening hours in the store's
zone, whether it hands orders over at the counter (pickup), how far it delivers (0: it does
not), and how many orders it can hand over in one pickup hour (its capacity).

Set with `xiaodian cloud store set STORE --name ... --tz ... --address ...`
(cloud_gateway/cli_store.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from xiaodian.i18n import DEFAULT_TZ
from xiaodian.wire import ids

from . import geo, sql
from .errors import CloudError

# A new table: CREATE TABLE IF NOT EXISTS is its migration (db/schema.py runs it on open);
# the resident columns came later: `upgrade` adds them to an older table.
SCHEMA = """
CREATE TABLE IF NOT EXISTS store_profiles (
    store TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    tz TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    address TEXT NOT NULL DEFAULT '',
    district TEXT NOT NULL DEFAULT '',
    lat DOUBLE PRECISION,
    lon DOUBLE PRECISION,
    hours TEXT NOT NULL DEFAULT '',
    pickup BOOLEAN NOT NULL DEFAULT TRUE,
    delivery_radius_m INTEGER NOT NULL DEFAULT 0,
    slot_capacity INTEGER NOT NULL DEFAULT 20
);
"""
# After `upgrade` (an older table has no lat until then): the nearest-store search's box.
INDEX = "CREATE INDEX IF NOT EXISTS store_profiles_by_lat ON store_profiles (lat, lon);\n"
TABLES = ("store_profiles",)
_ADDED = (("address", "TEXT NOT NULL DEFAULT ''"), ("district", "TEXT NOT NULL DEFAULT ''"),
          ("lat", "DOUBLE PRECISION"), ("lon", "DOUBLE PRECISION"),
          ("hours", "TEXT NOT NULL DEFAULT ''"), ("pickup", "BOOLEAN NOT NULL DEFAULT TRUE"),
          ("delivery_radius_m", "INTEGER NOT NULL DEFAULT 0"),
          ("slot_capacity", "INTEGER NOT NULL DEFAULT 20"))
PG_UPGRADE = "".join(f"ALTER TABLE store_profiles ADD COLUMN IF NOT EXISTS {c} {t};\n"
                     for c, t in _ADDED) + INDEX
FIELDS = ("name", "tz", "address", "district", "lat", "lon", "hours", "pickup",
          "delivery_radius_m", "slot_capacity")
MAX_NAME = 64
MAX_ADDRESS = 120
MAX_DISTRICT = 32
MAX_RADIUS_M = 20_000
MAX_SLOT_CAPACITY = 1000
_HOURS = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])\Z")


class ProfileError(CloudError):
    """A profile that cannot be stored: a bad store id, name, zone, position or hours."""


@dataclass(frozen=True)
class Profile:
    store: str
    name: str
    tz: str
    address: str = ""
    district: str = ""
    lat: float | None = None  # GCJ-02
    lon: float | None = None
    hours: str = ""  # "08:00-22:00" in the store's zone; "" = not said; may pass midnight
    pickup: bool = True
    delivery_radius_m: int = 0
    slot_capacity: int = 20

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    @property
    def point(self) -> geo.Point | None:
        return None if self.lat is None or self.lon is None else geo.Point(self.lat, self.lon)

    def as_dict(self) -> dict[str, Any]:
        return {"store": self.store, **{f: getattr(self, f) for f in FIELDS}}


def default(store: str) -> Profile:
    return Profile(store, store, DEFAULT_TZ)


def check_tz(name: str) -> str:
    """`name` if it is an IANA zone this machine knows (Asia/Shanghai); else ProfileError."""
    try:
        ZoneInfo(name)
    except (ValueError, OSError, ZoneInfoNotFoundError):
        raise ProfileError(f"tz: unknown time zone {name[:64]!r} (e.g. Asia/Shanghai)") from None
    return name


def parse_hours(text: str) -> tuple[int, int] | None:
    """"08:00-22:00" -> (480, 1320) minutes of the day; "" -> None (not said).

    An end at or before the start passes midnight ("18:00-02:00"); "00:00-24:00" is all day.
    """
    if text == "":
        return None
    m = _HOURS.match(text)
    if m is None:
        raise ProfileError(f"hours: HH:MM-HH:MM in the store's zone, e.g. 07:00-22:00,"
                           f" not {text[:32]!r}")
    start, end = int(m[1]) * 60 + int(m[2]), int(m[3]) * 60 + int(m[4])
    if end > 24 * 60 or start == end:
        raise ProfileError("hours: the end must differ from the start and be at most 24:00")
    return start, end


def open_at(profile: Profile, ts: float) -> bool | None:
    """Whether the store is open at `ts` on its own clock; None when its hours are unknown."""
    span = parse_hours(profile.hours)
    if span is None:
        return None
    local = datetime.fromtimestamp(ts, profile.zone)
    minute = local.hour * 60 + local.minute
    start, end = span
    return start <= minute < end if start < end else (minute >= start or minute < end)


def get(conn: sql.Connection, store: str) -> Profile:
    """The store's profile, or the default one (its id, Asia/Shanghai)."""
    got = _select(conn, " WHERE store = ?", (store,))
    return got[0] if got else default(store)


def located(conn: sql.Connection) -> list[Profile]:
    """Every store with a position: the ones residents can find."""
    return _select(conn, " WHERE lat IS NOT NULL AND lon IS NOT NULL ORDER BY store", ())


def located_in(conn: sql.Connection, south: float, north: float, west: float,
               east: float) -> list[Profile]:
    """The stores inside a box of GCJ-02 degrees (west > east: across the 180th meridian)."""
    lon = "lon BETWEEN ? AND ?" if west <= east else "(lon >= ? OR lon <= ?)"
    return _select(conn, f" WHERE lat BETWEEN ? AND ? AND {lon} AND lat IS NOT NULL"
                   " ORDER BY store", (south, north, west, east))


def _select(conn: sql.Connection, where: str, params: tuple[Any, ...]) -> list[Profile]:
    have = sql.columns(conn, "store_profiles")
    if "tz" not in have:  # a database opened read-only before this table existed
        return []
    cols = [f for f in FIELDS if f in have]  # read-only, before `upgrade` added the rest
    if "lat" not in have and "lat" in where:
        return []
    rows = conn.execute(f"SELECT store, {', '.join(cols)} FROM store_profiles{where}",
                        params).fetchall()
    out = []
    for r in rows:
        values = dict(zip(cols, tuple(r)[1:], strict=True))
        if "pickup" in values:
            values["pickup"] = bool(values["pickup"])
        out.append(Profile(str(r[0]), **values))
    return out


def upgrade_sqlite(conn: sql.Connection) -> None:
    """Add the resident columns to a SQLite `store_profiles` made by an older version (in
    the caller's write transaction)."""
    have = sql.columns(conn, "store_profiles")
    for column, ddl in _ADDED:
        if column not in have:
            conn.execute(f"ALTER TABLE store_profiles ADD COLUMN {column} {ddl}")
    conn.execute(INDEX)


def set_profile(conn: sql.Connection, store: str, now: float, *, name: str | None = None,
                tz: str | None = None, address: str | None = None,
                district: str | None = None, position: geo.Point | None = None,
                hours: str | None = None, pickup: bool | None = None,
                delivery_radius_m: int | None = None,
                slot_capacity: int | None = None) -> Profile:
    """Change the given fields of a store's profile (creating it) and return the result.

    `position` is GCJ-02 (convert a WGS-84 one at the edge: geo.to_stored)."""
    if not ids.is_store_id(store):
        raise ProfileError(f"store: {store[:64]!r} is not a store id")
    new = get(conn, store)
    if name is not None:
        new = replace(new, name=_text("name", name, MAX_NAME, empty_ok=False))
    if tz is not None:
        new = replace(new, tz=check_tz(tz))
    if address is not None:
        new = replace(new, address=_text("address", address, MAX_ADDRESS))
    if district is not None:
        new = replace(new, district=_text("district", district, MAX_DISTRICT))
    if position is not None:
        try:
            lat, lon = geo.check(position.lat, position.lon)
        except geo.GeoError as exc:
            raise ProfileError(f"position: {exc}") from None
        new = replace(new, lat=lat, lon=lon)
    if hours is not None:
        parse_hours(hours.strip())
        new = replace(new, hours=hours.strip())
    if pickup is not None:
        new = replace(new, pickup=pickup)
    if delivery_radius_m is not None:
        if not 0 <= delivery_radius_m <= MAX_RADIUS_M:
            raise ProfileError(f"delivery radius: 0 (no delivery) to {MAX_RADIUS_M} m")
        new = replace(new, delivery_radius_m=delivery_radius_m)
    if slot_capacity is not None:
        if not 1 <= slot_capacity <= MAX_SLOT_CAPACITY:
            raise ProfileError(f"capacity: 1 to {MAX_SLOT_CAPACITY} orders per pickup hour")
        new = replace(new, slot_capacity=slot_capacity)
    values = [getattr(new, f) for f in FIELDS]
    conn.execute(
        f"INSERT INTO store_profiles (store, {', '.join(FIELDS)}, updated_at)"
        f" VALUES (?, {', '.join('?' for _ in FIELDS)}, ?) ON CONFLICT (store) DO UPDATE SET "
        + ", ".join(f"{f} = excluded.{f}" for f in (*FIELDS, "updated_at")),
        (store, *values, now))
    return new


def _text(what: str, value: str, most: int, *, empty_ok: bool = True) -> str:
    value = " ".join(value.split())
    if (not value and not empty_ok) or len(value) > most:
        raise ProfileError(f"{what}: {0 if empty_ok else 1} to {most} characters")
    return value
