"""The cloud database: every record kept exactly once, dead letters beside them.

SQLite by default. Queries are plain SQL with parameters only; the one non-standard piece is
the upsert (`ON CONFLICT ... DO NOTHING / DO UPDATE`), which PostgreSQL spells the same way.
Moving to PostgreSQL means another DDL string (identity column, bytea) and `%s` placeholders
in the driver layer, not a redesign. Each thread opens its own `Database`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xiaodian.payloads import Batch, Event, Reading, State

# Column types SQLite and PostgreSQL both understand. Only dead_letters.id (PostgreSQL:
# BIGINT GENERATED ALWAYS AS IDENTITY) and BLOB (bytea) would differ.
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
    PRIMARY KEY (store, device, boot, seq)
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
"""

# Fields of a reading row in API responses and exports, in CSV column order.
READING_FIELDS = (
    "store", "device", "boot", "seq", "fseq", "dev_ms", "wall", "synced", "air_c", "product_c",
)
# A parked payload larger than this is truncated (the broker caps packets anyway; this only
# bounds what one hostile message can cost us).
MAX_PARKED_BYTES = 1024 * 1024
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


class Database:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @classmethod
    def open(cls, path: Path | str, *, busy_timeout_s: float = 5.0) -> Database:
        """Open (creating if needed) the database at `path`; ":memory:" for tests."""
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
        return cls(conn)

    @classmethod
    def open_readonly(cls, path: Path | str, *, busy_timeout_s: float = 5.0) -> Database:
        """Open an existing database for reading (API, export); sqlite3.Error if missing."""
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

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN")
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException:
            # COMMIT itself can fail (busy): never leave the transaction open behind us.
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------ writes

    def store_batch(self, batch: Batch, received_at: float) -> tuple[int, int]:
        """Insert every record of `batch` in one transaction: (inserted, duplicates)."""
        if batch.kind == "readings":
            sql = (
                "INSERT INTO readings (store, device, boot, seq, fseq, dev_ms, wall, synced,"
                " air_c, product_c, probes, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (store, device, boot, seq) DO NOTHING"
            )
            rows = [_reading_row(batch, r, received_at) for r in batch.records
                    if isinstance(r, Reading)]
        else:
            sql = (
                "INSERT INTO events (store, device, boot, seq, type, fseq, dev_ms, wall, synced,"
                " data, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (store, device, boot, seq) DO NOTHING"
            )
            rows = [_event_row(batch, e, received_at) for e in batch.records
                    if isinstance(e, Event)]
        with self.transaction() as conn:
            # executemany sums the changes; rows skipped by DO NOTHING are not counted.
            inserted = conn.executemany(sql, rows).rowcount
        return inserted, len(rows) - inserted

    def store_state(self, state: State, received_at: float) -> bool:
        """Upsert a store's birth/death message; False if it was older than what we have.

        Every worker sees every state message (it is not a shared subscription), so a slow
        worker may apply an old one late: a message from an earlier agent boot never
        overwrites a later boot's state.
        """
        with self.transaction() as conn:
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
            return cur.rowcount == 1

    def park(self, topic: str, payload: bytes, reason: str, worker: str,
             received_at: float) -> int:
        """Keep a message we will not ingest, with why; returns its dead-letter id."""
        if len(payload) > MAX_PARKED_BYTES:
            reason = f"{reason} (payload truncated from {len(payload)} bytes)"
            payload = payload[:MAX_PARKED_BYTES]
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO dead_letters (topic, payload, reason, worker, received_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (topic, payload, reason, worker, received_at),
            )
            return int(cur.lastrowid or 0)

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
            out.append({
                "store": name,
                "online": bool(st["online"]) if st else None,
                "boot": st["boot"] if st else None,
                "agent_version": st["agent_version"] if st else None,
                "devices": json.loads(st["devices"]) if st else [],
                "state_wall": st["wall"] if st else None,
                "updated_at": st["updated_at"] if st else None,
                "last_received_at": last,
            })
        return out

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
            "SELECT boot, seq, dev_ms, wall, synced, data, received_at FROM events"
            " WHERE store = ? AND device = ? AND type = ? ORDER BY boot DESC, seq DESC LIMIT 1",
            (store, device, type_),
        ).fetchone()
        if row is None:
            return None
        return {"boot": row["boot"], "seq": row["seq"], "dev_ms": row["dev_ms"],
                "wall": row["wall"], "synced": bool(row["synced"]),
                "data": json.loads(row["data"]), "received_at": row["received_at"]}

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
        for row in self.conn.execute(sql, params):
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
        if table not in ("readings", "events", "store_state", "dead_letters"):
            raise ValueError(f"unknown table {table!r}")
        return int(self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _probe_value(reading: Reading, index: int) -> float | None:
    for p in reading.probes:
        if p.index == index and p.status == "ok":
            return p.celsius
    return None


def _reading_row(batch: Batch, r: Reading, received_at: float) -> tuple[Any, ...]:
    probes = json.dumps([[p.index, p.status, p.celsius] for p in r.probes])
    return (batch.store, batch.device, batch.boot, r.seq, r.fseq, r.dev_ms, r.wall, r.synced,
            _probe_value(r, AIR_PROBE), _probe_value(r, PRODUCT_PROBE), probes, received_at)


def _event_row(batch: Batch, e: Event, received_at: float) -> tuple[Any, ...]:
    return (batch.store, batch.device, batch.boot, e.seq, e.type, e.fseq, e.dev_ms, e.wall,
            e.synced, json.dumps(e.data, separators=(",", ":")), received_at)


def _reading_dict(row: sqlite3.Row) -> dict[str, Any]:
    d = {k: row[k] for k in READING_FIELDS}
    d["synced"] = bool(d["synced"])
    d["probes"] = json.loads(row["probes"])
    d["received_at"] = row["received_at"]
    return d
