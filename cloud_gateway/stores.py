"""A store's profile: the name people see and the store's own time zone.

Every time a person reads about a store (the owner page, the HACCP record and its CSV, the
acknowledgement form, the dashboard) is shown in the store's zone, never the server's or
the browser's: an owner in Shanghai reading on a phone set to another zone, or an auditor
reading the record elsewhere, must see the shop's own clock. A store without a profile is
called by its id and is in `Asia/Shanghai` (`xiaodian.i18n.DEFAULT_TZ`).

Set with `xiaodian cloud store set STORE --name ... --tz ...` (cloud_gateway/cli_store.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from xiaodian.i18n import DEFAULT_TZ
from xiaodian.wire import ids

from . import sql
from .errors import CloudError

# A new table: CREATE TABLE IF NOT EXISTS is its migration (db/schema.py runs it on open).
SCHEMA = """
CREATE TABLE IF NOT EXISTS store_profiles (
    store TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    tz TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
"""
TABLES = ("store_profiles",)
MAX_NAME = 64


class ProfileError(CloudError):
    """A profile that cannot be stored: a bad store id, name or time zone."""


@dataclass(frozen=True)
class Profile:
    store: str
    name: str
    tz: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)


def default(store: str) -> Profile:
    return Profile(store, store, DEFAULT_TZ)


def check_tz(name: str) -> str:
    """`name` if it is an IANA zone this machine knows (Asia/Shanghai); else ProfileError."""
    try:
        ZoneInfo(name)
    except (ValueError, OSError, ZoneInfoNotFoundError):
        raise ProfileError(f"tz: unknown time zone {name[:64]!r} (e.g. Asia/Shanghai)") from None
    return name


def get(conn: sql.Connection, store: str) -> Profile:
    """The store's profile, or the default one (its id, Asia/Shanghai)."""
    if "tz" not in sql.columns(conn, "store_profiles"):  # a database opened read-only
        return default(store)                            # before this table existed
    row = conn.execute("SELECT name, tz FROM store_profiles WHERE store = ?",
                       (store,)).fetchone()
    if row is None:
        return default(store)
    return Profile(store, str(row[0]), str(row[1]))


def set_profile(conn: sql.Connection, store: str, now: float, *, name: str | None = None,
                tz: str | None = None) -> Profile:
    """Change the given fields of a store's profile (creating it) and return the result."""
    if not ids.is_store_id(store):
        raise ProfileError(f"store: {store[:64]!r} is not a store id")
    current = get(conn, store)
    if name is not None:
        name = " ".join(name.split())
        if not name or len(name) > MAX_NAME:
            raise ProfileError(f"name: 1 to {MAX_NAME} characters")
    new = Profile(store, name if name is not None else current.name,
                  check_tz(tz) if tz is not None else current.tz)
    conn.execute(
        "INSERT INTO store_profiles (store, name, tz, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (store) DO UPDATE SET name = excluded.name, tz = excluded.tz,"
        " updated_at = excluded.updated_at", (store, new.name, new.tz, now))
    return new
