"""Schema migrations: numbered steps, each applied once, in one transaction, in order.

`schema_migrations` says which steps a database has (version, name, applied_at). Each step
runs in its own transaction together with the row that records it, under the schema lock
(PostgreSQL: an advisory lock; SQLite: BEGIN IMMEDIATE, its one write lock); the applied
versions are read again under that lock, so two workers starting together apply a step
once, and a step that fails leaves nothing behind and nothing recorded.

Version 1 is the schema as it was before versioning: every module's `CREATE TABLE IF NOT
EXISTS` script and the ad-hoc upgrades of `schema.py` (columns added when missing). Being
idempotent, it is asserted at every start as it always was, so a new table in a module's
SCHEMA still needs nothing more; it is recorded as version 1 the first time. Any change to
an existing table (a column, a constraint, an index on a big table, rewriting data) is a
new numbered step here (docs/cloud.md, "Schema migrations").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from .. import sql
from . import partitions

log = logging.getLogger(__name__)

TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL
)"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    # (connection inside the step's transaction, now): PostgreSQL and SQLite alike, or
    # branching on sql.is_postgres where they differ.
    apply: Callable[[sql.Connection, float], None]


def applied(conn: sql.Connection) -> set[int]:
    return {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations")}


def record(conn: sql.Connection, m: Migration, now: float) -> None:
    conn.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                 (m.version, m.name, now))


# ---------------------------------------------------------------- 2: readings by time

# Old readings whose month is further back than this go to the default partition rather
# than make a partition of their own (a terminal that once said 1970).
MAX_BACKFILL_MONTHS = 120
# The partitioned table is made LIKE the one it replaces (schema.py's readings, with
# whatever columns it has), so the column list is written once; only the partition key
# must not be NULL (a reading without a time could be placed in no month).
PG_PARTITIONED = ("CREATE TABLE readings (LIKE readings_unpartitioned INCLUDING DEFAULTS)"
                  " PARTITION BY RANGE (wall_corrected);"
                  " ALTER TABLE readings ALTER COLUMN wall_corrected SET NOT NULL")
# PostgreSQL: a unique key of a partitioned table must contain the partition key, so the
# primary key gains wall_corrected. It no longer stops a second copy of a reading whose
# corrected time differs (another partition, or the same one): exactly-once never rested on
# it, ingest looks every seq up under the stream's lock first, across every partition
# (writes.store_batches, docs/cloud.md); the key stays as the index of that lookup.
PG_READINGS_INDEX = """
CREATE INDEX readings_by_time ON readings (store, device, wall_corrected)
    INCLUDE (product_c, air_c);
"""
PG_KEYS = ("ALTER TABLE readings ADD PRIMARY KEY (store, device, boot, seq, wall_corrected);"
           + PG_READINGS_INDEX)
# The owner's chart and the HACCP record: one fridge's readings between two times, with its
# temperatures in the index (PostgreSQL: INCLUDE; SQLite: key columns) so the rows need
# not be visited. Alerts and door/compressor/defrost spans: one type of a store's events by
# time (the expression `haccp._T` selects on).
SQLITE_READINGS_INDEX = ("CREATE INDEX IF NOT EXISTS readings_by_time ON readings"
                         " (store, device, wall_corrected, product_c, air_c)")
EVENTS_INDEX = ("CREATE INDEX IF NOT EXISTS events_by_time ON events"
                " (store, type, device, (COALESCE(wall_corrected, wall)))")


def _readings_by_time(conn: sql.Connection, now: float) -> None:
    conn.execute(EVENTS_INDEX)
    if not sql.is_postgres(conn):
        # Rows from before time correction were backfilled by version 1; the chart now
        # selects on wall_corrected itself, so none may be left without.
        conn.execute("UPDATE readings SET wall_corrected = wall WHERE wall_corrected IS NULL")
        conn.execute(SQLITE_READINGS_INDEX)
        return
    assert isinstance(conn, sql.PgConnection)
    if partitions.is_partitioned(conn):
        return
    conn.execute("ALTER TABLE readings RENAME TO readings_unpartitioned")
    conn.execute("ALTER INDEX IF EXISTS readings_pkey RENAME TO readings_unpartitioned_pkey")
    conn.script(PG_PARTITIONED)
    conn.execute(f"CREATE TABLE {partitions.DEFAULT} PARTITION OF readings DEFAULT")
    current = partitions.month_of(now)
    ahead = [partitions.add_months(current, i) for i in range(partitions.AHEAD_MONTHS + 1)]
    lo = partitions.bounds(partitions.add_months(current, -MAX_BACKFILL_MONTHS))[0]
    hi = partitions.bounds(ahead[-1])[1]
    # A partition for each month that holds readings, and the coming ones; a month without
    # readings needs none (a late one for it waits in the default partition, as do
    # readings stamped beyond the coming months).
    held = {(int(r[0]), int(r[1])) for r in conn.execute(
        "SELECT DISTINCT EXTRACT(YEAR FROM d), EXTRACT(MONTH FROM d) FROM"
        " (SELECT to_timestamp(COALESCE(wall_corrected, wall)) AT TIME ZONE 'UTC' AS d"
        " FROM readings_unpartitioned WHERE COALESCE(wall_corrected, wall) >= ?"
        " AND COALESCE(wall_corrected, wall) < ?) AS t", (lo, hi))}
    months = sorted(held | set(ahead))
    for m in months:
        start, end = partitions.bounds(m)
        conn.execute(f"CREATE TABLE {partitions.name(m)} PARTITION OF readings"
                     f" FOR VALUES FROM ({start}) TO ({end}) {partitions.OPTIONS}")
    cols = ", ".join(str(r[0]) for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = "
        "'readings_unpartitioned' AND table_schema = current_schema()"
        " ORDER BY ordinal_position"))
    old = cols.replace("wall_corrected", "COALESCE(wall_corrected, wall)")
    moved = conn.execute(f"INSERT INTO readings ({cols}) SELECT {old}"
                         " FROM readings_unpartitioned").rowcount
    conn.execute("DROP TABLE readings_unpartitioned")
    conn.script(PG_KEYS)  # built once over the copied rows: faster than row by row
    log.info("readings partitioned by month: %d readings moved, %d partitions from %s",
             moved, len(months), partitions.name(months[0]))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(2, "readings by time: monthly partitions (PostgreSQL), chart and HACCP"
                 " indexes", _readings_by_time),
)
BASELINE = Migration(1, "schema before versioning (CREATE IF NOT EXISTS, ad-hoc upgrades)",
                     lambda conn, now: None)


def pending(conn: sql.Connection) -> list[Migration]:
    have = applied(conn)
    return [m for m in MIGRATIONS if m.version not in have]


def apply_each(conn: sql.Connection,
               begin: Callable[[], AbstractContextManager[sql.Connection]],
               now: float | None = None) -> list[int]:
    """Apply every pending step, each in a transaction of its own from `begin()` (which
    holds the schema lock); returns the versions this call applied."""
    done: list[int] = []
    for m in pending(conn):
        with begin() as conn:
            if m.version in applied(conn):
                continue  # already there, or another worker got here first
            at = time.time() if now is None else now
            m.apply(conn, at)
            record(conn, m, at)
            done.append(m.version)
            log.info("schema migration %d applied: %s", m.version, m.name)
    return done
