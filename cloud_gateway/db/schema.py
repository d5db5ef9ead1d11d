"""The cloud database's tables: the DDL both backends run, and the SQLite upgrades of
before versioning (schema version 1; the numbered migrations are in `migrations.py`).

The tables of alerts (`cloud_gateway/alerts/store.py`), retail (`cloud_gateway/retail.py`),
accounts (`cloud_gateway/accounts.py`) and store profiles (`cloud_gateway/stores.py`) are
created beside these, by whoever opens the database (`connection.py`); being new tables,
CREATE TABLE IF NOT EXISTS is their migration.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .. import (
    accounts,
    health,
    maintenance_alerts,
    resident_notices,
    residents,
    rollout_tables,
    shop,
    sql,
    stores,
)
from .. import retail as retail_store
from ..alerts import store as alert_store
from ..supply import receiving
from ..supply import scheduler as supply_jobs
from ..supply import settings as supply_tables
from . import migrations

# Column types SQLite and PostgreSQL both understand. Only `id INTEGER PRIMARY KEY` (an
# identity column in PostgreSQL) and BLOB (bytea) differ: sql.pg_schema rewrites them.
SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    store TEXT NOT NULL,
    device TEXT NOT NULL,
    boot BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    fseq INTEGER NOT NULL,
    dev_ms BIGINT NOT NULL,
    wall DOUBLE PRECISION NOT NULL,
    synced BOOLEAN NOT NULL,
    air_c DOUBLE PRECISION,
    product_c DOUBLE PRECISION,
    probes TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    wall_corrected DOUBLE PRECISION,
    time_method TEXT,
    PRIMARY KEY (store, device, boot, seq)
);
-- Readings the edge compacted under disk pressure during a long outage: one row stands for
-- seq_first..seq_last of the readings stream, with per-probe min/mean/max. Kept apart from
-- `readings` so nobody mistakes a mean for a measurement; the gaps count the range as present.
CREATE TABLE IF NOT EXISTS reading_aggregates (
    store TEXT NOT NULL,
    device TEXT NOT NULL,
    boot BIGINT NOT NULL,
    seq_first BIGINT NOT NULL,
    seq_last BIGINT NOT NULL,
    count INTEGER NOT NULL,
    dev_ms_first BIGINT NOT NULL,
    dev_ms_last BIGINT NOT NULL,
    wall_first DOUBLE PRECISION NOT NULL,
    wall_last DOUBLE PRECISION NOT NULL,
    synced BOOLEAN NOT NULL,
    probes TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (store, device, boot, seq_first)
);
CREATE TABLE IF NOT EXISTS events (
    store TEXT NOT NULL,
    device TEXT NOT NULL,
    boot BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    type TEXT NOT NULL,
    fseq INTEGER,
    dev_ms BIGINT,
    wall DOUBLE PRECISION NOT NULL,
    synced BOOLEAN NOT NULL,
    data TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    wall_corrected DOUBLE PRECISION,
    time_method TEXT,
    PRIMARY KEY (store, device, boot, seq)
);
CREATE INDEX IF NOT EXISTS events_by_type ON events (store, device, type, boot, seq);
CREATE TABLE IF NOT EXISTS store_state (
    store TEXT PRIMARY KEY,
    online BOOLEAN NOT NULL,
    boot BIGINT NOT NULL,
    wall DOUBLE PRECISION NOT NULL,
    agent_version TEXT NOT NULL,
    devices TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    config_hash TEXT
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    worker TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL
);
-- One row per record stream: the highest seq stored and how many records (seq >= 1) there
-- are, so max_seq - records is the number of records still missing below max_seq. The row
-- is also the stream's lock: every batch of the stream updates it in its transaction.
CREATE TABLE IF NOT EXISTS streams (
    store TEXT NOT NULL,
    kind TEXT NOT NULL,
    device TEXT NOT NULL,
    boot BIGINT NOT NULL,
    max_seq BIGINT NOT NULL,
    records BIGINT NOT NULL,
    first_received_at DOUBLE PRECISION NOT NULL,
    last_received_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (store, kind, device, boot)
);
-- Missing stretches of a stream, open (filled_at NULL) or filled. A partly filled gap is
-- shrunk and its other pieces become rows with parent_id pointing at it: the rows of a
-- stream partition every seq that was ever missing, and nothing is deleted.
CREATE TABLE IF NOT EXISTS data_gaps (
    id INTEGER PRIMARY KEY,
    store TEXT NOT NULL,
    kind TEXT NOT NULL,
    device TEXT NOT NULL,
    boot BIGINT NOT NULL,
    first_missing_seq BIGINT NOT NULL,
    last_missing_seq BIGINT NOT NULL,
    detected_at DOUBLE PRECISION NOT NULL,
    detected_by TEXT NOT NULL,
    filled_at DOUBLE PRECISION,
    filled_by TEXT,
    parent_id BIGINT
);
CREATE INDEX IF NOT EXISTS data_gaps_by_stream
    ON data_gaps (store, kind, device, boot, first_missing_seq);
CREATE INDEX IF NOT EXISTS data_gaps_open ON data_gaps (store) WHERE filled_at IS NULL;
-- The current clock offset estimate of a store terminal per agent boot (clock.py), with the
-- sliding window it was computed from.
CREATE TABLE IF NOT EXISTS clock_estimates (
    store TEXT NOT NULL,
    boot BIGINT NOT NULL,
    offset_s DOUBLE PRECISION NOT NULL,
    synced BOOLEAN,
    method TEXT NOT NULL,
    samples TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (store, boot)
);
-- Every notable change of an estimate, for an auditor: when was this clock off, by how much.
CREATE TABLE IF NOT EXISTS clock_history (
    id INTEGER PRIMARY KEY,
    store TEXT NOT NULL,
    boot BIGINT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    offset_s DOUBLE PRECISION NOT NULL,
    synced BOOLEAN,
    method TEXT NOT NULL,
    source TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS clock_history_by_store ON clock_history (store, boot, id);
-- Signed commands issued to stores and what became of them (cloud_gateway/commands.py).
-- state: sent (issued; published_at says when the broker took it), answered, refused
-- (the store's reason in `reason`), expired (no answer by expires_at + grace), unsent
-- (never handed to the broker). `wire` is the signed payload exactly as published.
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY,
    store TEXT NOT NULL,
    action TEXT NOT NULL,
    params TEXT NOT NULL,
    key_id TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    issued_by TEXT NOT NULL,
    wire BLOB NOT NULL,
    state TEXT NOT NULL,
    published_at DOUBLE PRECISION,
    result TEXT,
    reason TEXT,
    answered_at DOUBLE PRECISION,
    answered_by TEXT
);
CREATE INDEX IF NOT EXISTS commands_by_store ON commands (store, issued_at);
CREATE INDEX IF NOT EXISTS commands_sent ON commands (expires_at) WHERE state = 'sent';
"""
SCHEMA_VERSION = 2

TABLES = ("readings", "events", "store_state", "dead_letters", "streams", "data_gaps",
          "clock_estimates", "clock_history", "commands", "alerts", "alert_acks",
          "alert_notifications", "alert_deliveries", "catalogues", "orders", "order_lines",
          "order_history", "movements", "stock", "downlink", *accounts.TABLES,
          *stores.TABLES, *residents.TABLES, *shop.TABLES, *supply_tables.TABLES,
          *health.TABLES, *rollout_tables.TABLES, *receiving.TABLES,
          *resident_notices.TABLES, *supply_jobs.TABLES, *maintenance_alerts.TABLES)

# PostgreSQL only: SQLite's commands table orders same-second commands by rowid, which
# PostgreSQL has not; this column (filled by the database) is its stand-in.
PG_EXTRA_DDL = """
ALTER TABLE commands ADD COLUMN IF NOT EXISTS issue_order BIGINT GENERATED ALWAYS AS IDENTITY;
ALTER TABLE store_state ADD COLUMN IF NOT EXISTS config_hash TEXT;
"""
_pg_ready: set[str] = set()  # URLs whose schema this process has created or checked
_pg_ready_lock = threading.Lock()


def create_sqlite(conn: sqlite3.Connection) -> None:
    """Create every missing table and index in a SQLite database."""
    conn.executescript(SCHEMA)
    conn.executescript(alert_store.SCHEMA)  # tables of cloud_gateway/alerts
    conn.executescript(retail_store.SCHEMA)  # catalogues, orders, stock (retail.py)
    conn.executescript(accounts.SCHEMA)  # people, sessions, tokens, audit (accounts.py)
    conn.executescript(stores.SCHEMA)  # store profiles: name, time zone (stores.py)
    conn.executescript(residents.SCHEMA)  # residents, their codes and sessions
    conn.executescript(shop.SCHEMA)  # residents' orders (shop.py)
    conn.executescript(supply_tables.SCHEMA)  # supply settings, cycles, plans (supply/)
    conn.executescript(health.SCHEMA)  # fridge vitals per hour (health.py)
    conn.executescript(rollout_tables.SCHEMA)  # staged updates (rollouts.py)
    conn.executescript(receiving.SCHEMA)  # receipts, short pre-orders, refunds
    conn.executescript(resident_notices.SCHEMA)  # residents' notices and their delivery
    conn.executescript(supply_jobs.SCHEMA)  # the scheduler's claims (supply/scheduler.py)
    conn.executescript(maintenance_alerts.SCHEMA)  # technicians' alerts (maintenance_alerts.py)
    conn.executescript(migrations.TABLE)  # which numbered migrations are applied


def create_pg(conn: sql.PgConnection, url: str) -> None:
    """Create every missing table and index in the PostgreSQL database at `url` (schema
    version 1), then apply the numbered migrations (`migrations.py`); once per process."""
    with _pg_ready_lock:
        if url not in _pg_ready:
            # Several workers may start at once, and CREATE TABLE IF NOT EXISTS is
            # not safe against a concurrent twin in PostgreSQL: one at a time.
            with conn.transaction():
                sql.lock(conn, sql.SCHEMA_LOCK)
                conn.script(migrations.TABLE)
                baseline_pg(conn)
                if migrations.BASELINE.version not in migrations.applied(conn):
                    migrations.record(conn, migrations.BASELINE, time.time())
            migrations.apply_each(conn, lambda: _pg_step(conn))
            _pg_ready.add(url)


def baseline_pg(conn: sql.PgConnection) -> None:
    """Schema version 1 on PostgreSQL: every table and index if missing, and the upgrades
    of before versioning (inside the caller's transaction, under the schema lock)."""
    for ddl in (SCHEMA, alert_store.SCHEMA, retail_store.SCHEMA, accounts.SCHEMA,
                stores.SCHEMA, residents.SCHEMA, shop.SCHEMA, supply_tables.SCHEMA,
                health.SCHEMA, rollout_tables.SCHEMA, receiving.SCHEMA,
                resident_notices.SCHEMA, supply_jobs.SCHEMA, maintenance_alerts.SCHEMA):
        conn.script(sql.pg_schema(ddl))
    conn.script(PG_EXTRA_DDL)
    conn.script(alert_store.PG_UPGRADE)
    conn.script(stores.PG_UPGRADE)
    conn.script(supply_tables.PG_UPGRADE)
    retail_store.fold_old_prices(conn)  # shop_prices into the catalogue items


@contextmanager
def _pg_step(conn: sql.PgConnection) -> Iterator[sql.Connection]:
    """One migration's transaction, under the schema lock."""
    with conn.transaction():
        sql.lock(conn, sql.SCHEMA_LOCK)
        yield conn


def migrate(conn: sql.Connection) -> None:
    """Bring a SQLite database written before gap tracking and time correction up to date
    (schema version 1, recorded in schema_migrations the first time).

    Runs inside the caller's write transaction: several workers may start at once, and the
    check must see what the one before committed.
    """
    alert_store.upgrade_sqlite(conn)  # its own column check: no version of its own
    stores.upgrade_sqlite(conn)  # the resident columns of store profiles: likewise
    supply_tables.upgrade_sqlite(conn)  # order_lines.line_state, likewise
    retail_store.fold_old_prices(conn)  # shop_prices into the catalogue items, likewise
    # The agent's configuration hash (inventory, docs/deploy.md): likewise.
    if "config_hash" not in sql.columns(conn, "store_state"):
        conn.execute("ALTER TABLE store_state ADD COLUMN config_hash TEXT")
    if migrations.BASELINE.version not in migrations.applied(conn):
        migrations.record(conn, migrations.BASELINE, time.time())
    if conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    for table in ("readings", "events"):
        columns = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        if "wall_corrected" not in columns:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN wall_corrected DOUBLE PRECISION")
            conn.execute(f"ALTER TABLE {table} ADD COLUMN time_method TEXT")
        # Stored before anyone checked the clock: say so rather than guess.
        conn.execute(f"UPDATE {table} SET wall_corrected = wall, time_method = 'unchecked'"
                     " WHERE wall_corrected IS NULL")
        _backfill_streams(conn, table)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _backfill_streams(conn: sql.Connection, table: str) -> None:
    """Streams and open gaps of data stored before tracking (recomputed from the seqs)."""
    conn.execute(
        "INSERT INTO streams (store, kind, device, boot, max_seq, records,"
        " first_received_at, last_received_at)"
        f" SELECT store, '{table}', device, boot, MAX(seq), COUNT(*), MIN(received_at),"
        f" MAX(received_at) FROM {table} WHERE seq >= 1 GROUP BY store, device, boot"
        " ON CONFLICT DO NOTHING"
    )
    holes = conn.execute(
        "SELECT store, device, boot, prev + 1, seq - 1, received_at FROM ("
        " SELECT store, device, boot, seq, received_at, LAG(seq, 1, 0) OVER"
        "  (PARTITION BY store, device, boot ORDER BY seq) AS prev"
        f" FROM {table} WHERE seq >= 1) AS s WHERE seq > prev + 1"
    ).fetchall()
    conn.executemany(
        "INSERT INTO data_gaps (store, kind, device, boot, first_missing_seq,"
        " last_missing_seq, detected_at, detected_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(st, table, dev, boot, a, b, at, "migration") for st, dev, boot, a, b, at in holes],
    )
