"""Which backend a `Database` runs on, and its transactions.

A SQLite file (":memory:" for tests) or a `postgresql://` URL; `cloud_gateway/sql.py` hides
the differences between the two (placeholders, rows by name, errors, locks). Opening for
writing also creates the tables (`schema.py`). Each thread opens its own `Database`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from xiaodian.private_files import prepare_private_sqlite

from .. import sql
from . import migrations, schema


class Connected:
    """One open connection to the cloud database; `Database` adds the reads and writes."""

    def __init__(self, conn: sql.Connection) -> None:
        self.conn = conn

    @property
    def postgres(self) -> bool:
        return sql.is_postgres(self.conn)

    @classmethod
    def open(cls, path: Path | str, *, busy_timeout_s: float = 5.0) -> Self:
        """Open (creating if needed) the database at `path`: a SQLite file (":memory:" for
        tests) or a `postgresql://` URL (the schema is created in it if missing)."""
        if sql.is_url(path):
            return cls._open_pg(str(path), busy_timeout_s)
        if str(path) != ":memory:":
            prepare_private_sqlite(Path(path))  # customer data: 0600, its WAL and -shm too
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
        schema.create_sqlite(conn)
        db = cls(conn)
        # Under the write lock: several workers may start at once.
        with db.transaction() as locked:
            schema.migrate(locked)
        migrations.apply_each(conn, db.transaction)  # each under BEGIN IMMEDIATE
        return db

    @classmethod
    def _open_pg(cls, url: str, busy_timeout_s: float) -> Self:
        conn = sql.PgConnection.connect(url, timeout_s=busy_timeout_s)
        try:
            schema.create_pg(conn, url)
        except BaseException:
            conn.close()
            raise
        # Commits are durable by PostgreSQL's defaults (synchronous_commit = on, fsync):
        # the same promise as SQLite's synchronous=FULL above, which the PUBACK relies on.
        return cls(conn)

    @classmethod
    def open_readonly(cls, path: Path | str, *, busy_timeout_s: float = 5.0) -> Self:
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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

