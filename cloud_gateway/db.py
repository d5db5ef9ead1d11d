"""The cloud database: every record kept exactly once, dead letters beside them.

SQLite by default, PostgreSQL when opened with a `postgresql://` URL. Queries are plain SQL
with parameters that both understand (the upsert `ON CONFLICT ... DO NOTHING / DO UPDATE`
and `RETURNING` included); `cloud_gateway/sql.py` is the thin layer that runs them on either
(placeholders, rows by name, errors, locks, the two DDL words that differ). Each thread opens
its own `Database`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xiaodian.wire.payloads import Batch, Event, Reading, State

from . import gaps, sql
from . import retail as retail_store
from . import sql as sql_layer  # `sql` is also the name of many a local query
from .alerts import store as alert_store
from .clock import ClockPolicy, ClockWindow, correct, newsworthy

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
    updated_at DOUBLE PRECISION NOT NULL
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

# Fields of a reading row in API responses and exports, in CSV column order.
READING_FIELDS = (
    "store", "device", "boot", "seq", "fseq", "dev_ms", "wall", "synced", "air_c", "product_c",
    "wall_corrected", "time_method",
)
GAP_FIELDS = (
    "id", "store", "kind", "device", "boot", "first_missing_seq", "last_missing_seq",
    "detected_at", "detected_by", "filled_at", "filled_by", "parent_id",
)
TABLES = ("readings", "events", "store_state", "dead_letters", "streams", "data_gaps",
          "clock_estimates", "clock_history", "commands", "alerts", "alert_acks",
          "alert_notifications", "alert_deliveries", "catalogues", "orders", "order_lines",
          "order_history", "movements", "stock", "downlink")
# A parked payload larger than this is truncated (the broker caps packets anyway; this only
# bounds what one hostile message can cost us).
MAX_PARKED_BYTES = 1024 * 1024
DEFAULT_POLICY = ClockPolicy()
INSERT_SQL = {
    "readings": "INSERT INTO readings (store, device, boot, seq, fseq, dev_ms, wall, synced,"
                " air_c, product_c, probes, received_at, wall_corrected, time_method)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (store, device, boot, seq) DO NOTHING",
    "events": "INSERT INTO events (store, device, boot, seq, type, fseq, dev_ms, wall, synced,"
              " data, received_at, wall_corrected, time_method)"
              " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
              " ON CONFLICT (store, device, boot, seq) DO NOTHING",
}
# Probe 0 is the air probe and probe 1 the product-simulating one (contracts.md).
AIR_PROBE, PRODUCT_PROBE = 0, 1


@dataclass(frozen=True)
class DeadLetter:
    id: int
    topic: str
    payload: bytes
    reason: str
    worker: str
    received_at: float


# PostgreSQL only: SQLite's commands table orders same-second commands by rowid, which
# PostgreSQL has not; this column (filled by the database) is its stand-in.
PG_EXTRA_DDL = """
ALTER TABLE commands ADD COLUMN IF NOT EXISTS issue_order BIGINT GENERATED ALWAYS AS IDENTITY;
"""
_pg_ready: set[str] = set()  # URLs whose schema this process has created or checked
_pg_ready_lock = threading.Lock()


class Database:
    def __init__(self, conn: sql.Connection) -> None:
        self.conn = conn

    @property
    def postgres(self) -> bool:
        return sql.is_postgres(self.conn)

    @classmethod
    def open(cls, path: Path | str, *, busy_timeout_s: float = 5.0) -> Database:
        """Open (creating if needed) the database at `path`: a SQLite file (":memory:" for
        tests) or a `postgresql://` URL (the schema is created in it if missing)."""
        if sql.is_url(path):
            return cls._open_pg(str(path), busy_timeout_s)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly
        # what the code says, not what the driver guesses.
        conn = sqlite3.connect(str(path), timeout=busy_timeout_s, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL, not NORMAL: we acknowledge a message to the broker right after COMMIT, and the
        # broker then forgets it. With NORMAL a power cut can roll back the last commits in WAL
        # mode, losing acknowledged data for good. One fsync per commit is the price; edges
        # batch many records per message so commits are few.
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
        conn.executescript(alert_store.SCHEMA)  # tables of cloud_gateway/alerts
        conn.executescript(retail_store.SCHEMA)  # catalogues, orders, stock (retail.py)
        db = cls(conn)
        db._migrate()
        return db

    @classmethod
    def _open_pg(cls, url: str, busy_timeout_s: float) -> Database:
        conn = sql.PgConnection.connect(url, timeout_s=busy_timeout_s)
        try:
            with _pg_ready_lock:
                if url not in _pg_ready:
                    # Several workers may start at once, and CREATE TABLE IF NOT EXISTS is
                    # not safe against a concurrent twin in PostgreSQL: one at a time.
                    with conn.transaction():
                        sql.lock(conn, sql.SCHEMA_LOCK)
                        for ddl in (SCHEMA, alert_store.SCHEMA, retail_store.SCHEMA):
                            conn.script(sql.pg_schema(ddl))
                        conn.script(PG_EXTRA_DDL)
                    _pg_ready.add(url)
        except BaseException:
            conn.close()
            raise
        # Commits are durable by PostgreSQL's defaults (synchronous_commit = on, fsync):
        # the same promise as SQLite's synchronous=FULL above, which the PUBACK relies on.
        return cls(conn)

    @classmethod
    def open_readonly(cls, path: Path | str, *, busy_timeout_s: float = 5.0) -> Database:
        """Open an existing database for reading (API, export); sqlite3.Error if missing
        (sql.PgError for a PostgreSQL URL that cannot be reached)."""
        if sql.is_url(path):
            return cls(sql.PgConnection.connect(str(path), timeout_s=busy_timeout_s,
                                                readonly=True))
        uri = Path(path).resolve().as_uri() + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout_s, isolation_level=None)
        conn.row_factory = sqlite3.Row
        return cls(conn)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        """Bring a database written before gap tracking and time correction up to date.

        Several workers may start at once: the check runs under the write lock.
        """
        with self.transaction() as conn:
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
                self._backfill_streams(conn, table)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @staticmethod
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

    @contextmanager
    def transaction(self, *, exclusive: bool = True) -> Iterator[sql.Connection]:
        """One transaction. SQLite: BEGIN IMMEDIATE, the database's write lock. PostgreSQL:
        READ COMMITTED plus, when `exclusive` (the default), the same one-writer-at-a-time
        lock (an advisory lock), so every read-then-write here is as serialised as on
        SQLite. `store_batch` and `store_state` pass exclusive=False and lock only what they
        touch (the stream's row, the terminal's clock), so workers ingesting different
        stores commit in parallel.
        """
        if isinstance(self.conn, sql.PgConnection):
            with self.conn.transaction() as pg:
                if exclusive:
                    sql.lock(pg, sql.WRITE_LOCK)
                yield pg
            return
        conn = self.conn
        assert isinstance(conn, sqlite3.Connection)
        # IMMEDIATE: take the write lock up front. A deferred transaction that reads and then
        # writes fails at once (SQLITE_BUSY, no waiting) if another worker committed between
        # its read and its write; every write here reads first (dedupe, gaps, clock).
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # COMMIT itself can fail (busy): never leave the transaction open behind us.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------ writes

    def store_batch(self, batch: Batch, received_at: float, *, worker: str = "",
                    policy: ClockPolicy = DEFAULT_POLICY) -> tuple[int, int]:
        """Insert every new record of `batch`, update its stream's gaps and the terminal's
        clock estimate, all in one transaction: (inserted, duplicates).

        One transaction is what makes the gaps right with several workers: the stream's
        gaps change exactly when its records do, under the stream's lock, so no worker acts
        on a view another is about to change, and a crash leaves neither half. With SQLite
        the lock is the database write lock (BEGIN IMMEDIATE); with PostgreSQL it is the
        stream row (`SELECT ... FOR UPDATE` below), READ COMMITTED then shows each worker
        what the one before it committed. Work is proportional to the batch and the gaps it
        touches, not to the stream's length (recomputing from all stored seqs would be).
        """
        records: list[Reading | Event] = list(batch.records)
        seqs = [r.seq for r in records]
        table = "readings" if batch.kind == "readings" else "events"
        key = (batch.store, batch.kind, batch.device, batch.boot)
        with self.transaction(exclusive=False) as conn:
            max_seq = self._lock_stream(conn, key, received_at)
            wall, synced = max(((r.seq, r.wall, r.synced) for r in records),
                               key=lambda t: t[0])[1:]
            offset = self._clock_sample(conn, batch.store, batch.boot, received_at, wall,
                                        synced, policy, f"{batch.kind}/{batch.device}")
            top = max(getattr(r, "seq_last", None) or r.seq for r in records)
            existing = {row[0] for row in conn.execute(
                f"SELECT seq FROM {table} WHERE store = ? AND device = ? AND boot = ?"
                " AND seq BETWEEN ? AND ?",
                (batch.store, batch.device, batch.boot, min(seqs), top))}
            aggregates: set[int] = set()
            if table == "readings":
                aggregates = {row[0] for row in conn.execute(
                    "SELECT seq_first FROM reading_aggregates WHERE store = ? AND device = ?"
                    " AND boot = ? AND seq_first BETWEEN ? AND ?",
                    (batch.store, batch.device, batch.boot, min(seqs), top))}
            fresh: dict[int, Reading | Event] = {}
            for r in records:  # the first copy of a seq wins, as ON CONFLICT DO NOTHING would
                # An aggregate may start at a seq the cloud has raw (sent before the outage):
                # it is a duplicate only of an aggregate.
                is_agg = isinstance(r, Reading) and r.seq_last is not None
                seen = aggregates if is_agg else existing | aggregates
                if r.seq not in seen and r.seq not in fresh:
                    fresh[r.seq] = r
            rows = []
            covered: list[int] = []
            for r in fresh.values():
                corrected, method = correct(r.wall, r.synced, offset, policy)
                if isinstance(r, Reading) and r.seq_last is not None and r.agg is not None:
                    conn.execute(INSERT_AGGREGATE_SQL, _aggregate_row(batch, r, received_at))
                    # Seqs of the range the cloud already has raw (sent before the outage,
                    # their receipt lost) are not counted twice.
                    covered += [s for s in range(r.seq, r.seq_last + 1) if s not in existing]
                elif isinstance(r, Reading):
                    rows.append(_reading_row(batch, r, received_at, corrected, method))
                    covered.append(r.seq)
                else:
                    rows.append(_event_row(batch, r, received_at, corrected, method))
                    covered.append(r.seq)
            conn.executemany(INSERT_SQL[table], rows)
            self._update_gaps(conn, key, max_seq, covered, received_at, worker)
            if table == "events":
                # Stock movements and order progress, only for events new here: a
                # redelivered copy is not in `fresh`, so it moves nothing twice. They read
                # and change orders like the API's writers: under the same write lock.
                sql.lock(conn, sql.WRITE_LOCK)
                retail_store.apply_events(
                    conn, batch.store, batch.device, batch.boot,
                    [r for r in fresh.values() if isinstance(r, Event)], received_at, worker)
        return len(fresh), len(records) - len(fresh)

    def _lock_stream(self, conn: sql.Connection, key: tuple[str, str, str, int],
                     received_at: float) -> int:
        conn.execute(
            "INSERT INTO streams (store, kind, device, boot, max_seq, records,"
            " first_received_at, last_received_at) VALUES (?, ?, ?, ?, 0, 0, ?, ?)"
            " ON CONFLICT DO NOTHING", (*key, received_at, received_at))
        # PostgreSQL: FOR UPDATE, the row lock that serialises the batches of one stream.
        # SQLite has one writer at a time already and no FOR UPDATE.
        row = conn.execute(
            "SELECT max_seq FROM streams WHERE store = ? AND kind = ? AND device = ?"
            " AND boot = ?" + (" FOR UPDATE" if sql.is_postgres(conn) else ""), key).fetchone()
        return int(row[0])

    def _update_gaps(self, conn: sql.Connection, key: tuple[str, str, str, int],
                     max_seq: int, inserted: list[int], at: float, worker: str) -> None:
        below = [s for s in inserted if gaps.FIRST_SEQ <= s <= max_seq]
        open_gaps: list[gaps.OpenGap] = []
        if below:
            open_gaps = [gaps.OpenGap(r[0], r[1], r[2]) for r in conn.execute(
                "SELECT id, first_missing_seq, last_missing_seq FROM data_gaps"
                " WHERE store = ? AND kind = ? AND device = ? AND boot = ?"
                " AND filled_at IS NULL AND last_missing_seq >= ? AND first_missing_seq <= ?",
                (*key, min(below), max(below)))]
        plan = gaps.plan(max_seq, open_gaps, inserted)
        insert = ("INSERT INTO data_gaps (store, kind, device, boot, first_missing_seq,"
                  " last_missing_seq, detected_at, detected_by, filled_at, filled_by,"
                  " parent_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        for first, last in plan.opened:
            conn.execute(insert, (*key, first, last, at, worker, None, None, None))
        for fill in plan.fills:
            detected_at, detected_by = conn.execute(
                "SELECT detected_at, detected_by FROM data_gaps WHERE id = ?", (fill.gap_id,)
            ).fetchone()
            if not fill.remaining:
                conn.execute("UPDATE data_gaps SET filled_at = ?, filled_by = ? WHERE id = ?",
                             (at, worker, fill.gap_id))
                continue
            (first, last), *others = fill.remaining
            conn.execute("UPDATE data_gaps SET first_missing_seq = ?, last_missing_seq = ?"
                         " WHERE id = ?", (first, last, fill.gap_id))
            for first, last in others:
                conn.execute(insert, (*key, first, last, detected_at, detected_by, None, None,
                                      fill.gap_id))
            for first, last in fill.filled:
                conn.execute(insert, (*key, first, last, detected_at, detected_by, at, worker,
                                      fill.gap_id))
        for first, last in plan.untracked:
            conn.execute(insert, (*key, first, last, at, worker, at, worker, None))
        counted = sum(1 for s in inserted if s >= gaps.FIRST_SEQ)
        conn.execute(
            "UPDATE streams SET max_seq = ?, records = records + ?, last_received_at = ?"
            " WHERE store = ? AND kind = ? AND device = ? AND boot = ?",
            (plan.max_seq, counted, at, *key))

    def _clock_sample(self, conn: sql.Connection, store: str, boot: int,
                      received_at: float, wall: float, synced: bool | None,
                      policy: ClockPolicy, source: str) -> float:
        """Add one observation of a terminal's clock; returns the offset estimate after it."""
        # PostgreSQL: batches of a store's streams and its state messages commit in
        # parallel; the terminal's window is read, changed and written by one at a time (an
        # advisory lock, since the row may not exist yet). Taken after the stream's row lock.
        sql.lock(conn, f"clock:{store}/{boot}")
        row = conn.execute(
            "SELECT synced, samples FROM clock_estimates WHERE store = ? AND boot = ?",
            (store, boot)).fetchone()
        window = ClockWindow.loads(row["samples"]) if row else ClockWindow()
        window = window.add(received_at, wall, policy)
        offset = window.offset
        assert offset is not None  # a window with a sample just added is never empty
        if synced is None and row is not None and row["synced"] is not None:
            synced = bool(row["synced"])  # a state message says nothing about sync
        method = correct(0.0, bool(synced), offset, policy)[1]
        conn.execute(
            "INSERT INTO clock_estimates (store, boot, offset_s, synced, method, samples,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (store, boot) DO UPDATE SET offset_s = excluded.offset_s,"
            " synced = excluded.synced, method = excluded.method, samples = excluded.samples,"
            " updated_at = excluded.updated_at",
            (store, boot, offset, synced, method, window.dumps(), received_at))
        last = conn.execute(
            "SELECT offset_s, synced FROM clock_history WHERE store = ? AND boot = ?"
            " ORDER BY id DESC LIMIT 1", (store, boot)).fetchone()
        last_synced = None if last is None or last[1] is None else bool(last[1])
        if newsworthy(None if last is None else float(last[0]), last_synced, offset, synced,
                      policy):
            conn.execute(
                "INSERT INTO clock_history (store, boot, at, offset_s, synced, method, source)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (store, boot, received_at, offset, synced, method, source))
        return offset

    def store_state(self, state: State, received_at: float, *, retained: bool = False,
                    policy: ClockPolicy = DEFAULT_POLICY) -> bool:
        """Upsert a store's birth/death message; False if it was older than what we have.

        Every worker sees every state message (it is not a shared subscription), so a slow
        worker may apply an old one late: a message from an earlier agent boot never
        overwrites a later boot's state.

        A live birth message is a clock sample (the agent stamps it as it connects). A death
        message is not: it is the Will, stamped at connect time and sent by the broker when
        the link dies; nor is a retained copy, which may be days old.
        """
        with self.transaction(exclusive=False) as conn:
            cur = conn.execute(
                "INSERT INTO store_state (store, online, boot, wall, agent_version, devices,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (store) DO UPDATE SET online = excluded.online,"
                " boot = excluded.boot, wall = excluded.wall,"
                " agent_version = excluded.agent_version, devices = excluded.devices,"
                " updated_at = excluded.updated_at"
                " WHERE excluded.boot >= store_state.boot",
                (state.store, state.online, state.boot, state.wall, state.agent_version,
                 json.dumps(list(state.devices)), received_at),
            )
            if state.online and not retained:
                self._clock_sample(conn, state.store, state.boot, received_at, state.wall,
                                   None, policy, "state")
            return cur.rowcount == 1

    def park(self, topic: str, payload: bytes, reason: str, worker: str,
             received_at: float) -> int:
        """Keep a message we will not ingest, with why; returns its dead-letter id."""
        if len(payload) > MAX_PARKED_BYTES:
            reason = f"{reason} (payload truncated from {len(payload)} bytes)"
            payload = payload[:MAX_PARKED_BYTES]
        with self.transaction(exclusive=False) as conn:
            row = conn.execute(
                "INSERT INTO dead_letters (topic, payload, reason, worker, received_at)"
                " VALUES (?, ?, ?, ?, ?) RETURNING id",
                (topic, payload, reason, worker, received_at),
            ).fetchone()
            return int(row[0])

    # ------------------------------------------------------------ reads

    def ping(self) -> bool:
        return self.conn.execute("SELECT 1").fetchone() is not None

    def stores(self) -> list[dict[str, Any]]:
        """Every store we know of, from its state message or from its data."""
        names = [r[0] for r in self.conn.execute(
            "SELECT store FROM store_state UNION SELECT store FROM readings"
            " UNION SELECT store FROM events ORDER BY store"
        )]
        out = []
        for name in names:
            st = self.conn.execute(
                "SELECT online, boot, wall, agent_version, devices, updated_at"
                " FROM store_state WHERE store = ?", (name,)
            ).fetchone()
            last = self.conn.execute(
                "SELECT MAX(t) FROM (SELECT MAX(received_at) AS t FROM readings WHERE store = ?"
                " UNION ALL SELECT MAX(received_at) FROM events WHERE store = ?) AS m",
                (name, name),
            ).fetchone()[0]
            open_gaps, open_missing = self.open_gap_totals(name)
            out.append({
                "store": name,
                "online": bool(st["online"]) if st else None,
                "boot": st["boot"] if st else None,
                "agent_version": st["agent_version"] if st else None,
                "devices": json.loads(st["devices"]) if st else [],
                "state_wall": st["wall"] if st else None,
                "updated_at": st["updated_at"] if st else None,
                "last_received_at": last,
                "clock": self.clock(name),
                "open_gaps": open_gaps,
                "missing_records": open_missing,
            })
        return out

    def has_store(self, store: str) -> bool:
        """Whether `store` has ever sent us anything (a state message or data)."""
        row = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM store_state WHERE store = ?)"
            " OR EXISTS (SELECT 1 FROM streams WHERE store = ?)", (store, store)).fetchone()
        return bool(row[0])

    def open_gap_totals(self, store: str) -> tuple[int, int]:
        """(open gaps, records missing in them) of a store."""
        n, missing = self.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(last_missing_seq - first_missing_seq + 1), 0)"
            " FROM data_gaps WHERE store = ? AND filled_at IS NULL", (store,)).fetchone()
        return int(n), int(missing)

    def clock(self, store: str) -> dict[str, Any] | None:
        """The newest boot's clock estimate: offset (cloud minus terminal), synced, method."""
        row = self.conn.execute(
            "SELECT boot, offset_s, synced, method, updated_at FROM clock_estimates"
            " WHERE store = ? ORDER BY boot DESC LIMIT 1", (store,)).fetchone()
        if row is None:
            return None
        return {"boot": row["boot"], "offset_s": row["offset_s"],
                "synced": None if row["synced"] is None else bool(row["synced"]),
                "method": row["method"], "updated_at": row["updated_at"]}

    def clock_history(self, store: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """How the estimate of a store's terminal clock moved, newest first."""
        sql = ("SELECT boot, at, offset_s, synced, method, source FROM clock_history"
               " WHERE store = ? ORDER BY id DESC")
        params: list[Any] = [store]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [{"boot": r["boot"], "at": r["at"], "offset_s": r["offset_s"],
                 "synced": None if r["synced"] is None else bool(r["synced"]),
                 "method": r["method"], "source": r["source"]}
                for r in self.conn.execute(sql, params)]

    def gaps(self, store: str | None = None, *, state: str = "all",
             limit: int | None = None) -> list[dict[str, Any]]:
        """Data gaps ("open", "filled" or "all"), by store, device, kind, boot and seq."""
        if state not in ("open", "filled", "all"):
            raise ValueError(f"unknown gap state {state!r}")
        where: list[str] = []
        params: list[Any] = []
        if store is not None:
            where.append("store = ?")
            params.append(store)
        if state == "open":
            where.append("filled_at IS NULL")
        elif state == "filled":
            where.append("filled_at IS NOT NULL")
        sql = f"SELECT {', '.join(GAP_FIELDS)} FROM data_gaps"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY store, device, kind, boot, first_missing_seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        out = []
        for r in self.conn.execute(sql, params):
            d = {k: r[k] for k in GAP_FIELDS}
            d["missing"] = r["last_missing_seq"] - r["first_missing_seq"] + 1
            d["state"] = "open" if r["filled_at"] is None else "filled"
            out.append(d)
        return out

    def streams(self, store: str) -> list[dict[str, Any]]:
        return [dict(r) | {"missing": r["max_seq"] - r["records"]} for r in self.conn.execute(
            "SELECT kind, device, boot, max_seq, records, first_received_at, last_received_at"
            " FROM streams WHERE store = ? ORDER BY device, kind, boot", (store,))]

    def fridges(self, store: str) -> list[dict[str, Any]]:
        """Each fridge of `store` (a device with readings or door/compressor events)."""
        devices = [r[0] for r in self.conn.execute(
            "SELECT device FROM readings WHERE store = ?"
            " UNION SELECT device FROM events WHERE store = ? AND type IN ('door', 'compressor')"
            " ORDER BY device",
            (store, store),
        )]
        out = []
        for device in devices:
            count = self.conn.execute(
                "SELECT COUNT(*) FROM readings WHERE store = ? AND device = ?", (store, device)
            ).fetchone()[0]
            latest = self.conn.execute(
                "SELECT * FROM readings WHERE store = ? AND device = ?"
                " ORDER BY boot DESC, seq DESC LIMIT 1", (store, device)
            ).fetchone()
            out.append({
                "device": device,
                "readings": count,
                "latest": _reading_dict(latest) if latest else None,
                "door": self._last_event(store, device, "door"),
                "compressor": self._last_event(store, device, "compressor"),
            })
        return out

    def _last_event(self, store: str, device: str, type_: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT boot, seq, dev_ms, wall, synced, data, received_at, wall_corrected,"
            " time_method FROM events"
            " WHERE store = ? AND device = ? AND type = ? ORDER BY boot DESC, seq DESC LIMIT 1",
            (store, device, type_),
        ).fetchone()
        if row is None:
            return None
        return {"boot": row["boot"], "seq": row["seq"], "dev_ms": row["dev_ms"],
                "wall": row["wall"], "synced": bool(row["synced"]),
                "data": json.loads(row["data"]), "received_at": row["received_at"],
                "wall_corrected": row["wall_corrected"], "time_method": row["time_method"]}

    def readings(self, store: str, device: str, *, after: tuple[int, int] | None = None,
                 limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Readings of one fridge in (boot, seq) order, after the cursor (boot, seq) if given.

        A generator over the cursor, so an export of millions of rows streams.
        """
        sql = "SELECT * FROM readings WHERE store = ? AND device = ?"
        params: list[Any] = [store, device]
        if after is not None:
            sql += " AND (boot > ? OR (boot = ? AND seq > ?))"
            params += [after[0], after[0], after[1]]
        sql += " ORDER BY boot, seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        if isinstance(self.conn, sql_layer.PgConnection) and limit is None:
            rows: Iterable[Any] = self.conn.stream(sql, params)  # an unbounded export
        else:
            rows = self.conn.execute(sql, params)
        for row in rows:
            yield _reading_dict(row)

    def dead_letters(self, *, limit: int | None = None) -> list[DeadLetter]:
        """Parked messages, newest first."""
        sql = ("SELECT id, topic, payload, reason, worker, received_at FROM dead_letters"
               " ORDER BY id DESC")
        params: list[Any] = []
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [DeadLetter(r["id"], r["topic"], bytes(r["payload"]), r["reason"], r["worker"],
                           r["received_at"]) for r in self.conn.execute(sql, params)]

    def count(self, table: str) -> int:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}")
        return int(self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _probe_value(reading: Reading, index: int) -> float | None:
    for p in reading.probes:
        if p.index == index and p.status == "ok":
            return p.celsius
    return None


def _reading_row(batch: Batch, r: Reading, received_at: float, wall_corrected: float,
                 method: str) -> tuple[Any, ...]:
    probes = json.dumps([[p.index, p.status, p.celsius] for p in r.probes])
    return (batch.store, batch.device, batch.boot, r.seq, r.fseq, r.dev_ms, r.wall, r.synced,
            _probe_value(r, AIR_PROBE), _probe_value(r, PRODUCT_PROBE), probes, received_at,
            wall_corrected, method)


INSERT_AGGREGATE_SQL = (
    "INSERT INTO reading_aggregates (store, device, boot, seq_first, seq_last, count,"
    " dev_ms_first, dev_ms_last, wall_first, wall_last, synced, probes, received_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)


def _aggregate_row(batch: Batch, r: Reading, received_at: float) -> tuple[Any, ...]:
    assert r.agg is not None and r.seq_last is not None
    a = r.agg
    probes = json.dumps([[p.index, p.minimum, p.mean, p.maximum, p.n_ok, p.n] for p in a.probes])
    return (batch.store, batch.device, batch.boot, r.seq, r.seq_last, a.count, r.dev_ms,
            a.dev_ms_last, r.wall, a.wall_last, r.synced, probes, received_at)


def _event_row(batch: Batch, e: Event, received_at: float, wall_corrected: float,
               method: str) -> tuple[Any, ...]:
    return (batch.store, batch.device, batch.boot, e.seq, e.type, e.fseq, e.dev_ms, e.wall,
            e.synced, json.dumps(e.data, separators=(",", ":")), received_at, wall_corrected,
            method)


def _reading_dict(row: sql.Row) -> dict[str, Any]:
    d = {k: row[k] for k in READING_FIELDS}
    d["synced"] = bool(d["synced"])
    d["probes"] = json.loads(row["probes"])
    d["received_at"] = row["received_at"]
    return d
