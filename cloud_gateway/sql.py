"""The one place that knows which database the cloud runs on: SQLite (default) or PostgreSQL.

Every module writes plain SQL that both understand (`?` placeholders, `ON CONFLICT`,
`RETURNING`, `TRUE`/`FALSE`, a subquery in FROM with an alias) and takes a `Connection`:
either a `sqlite3.Connection` as it is, or a `PgConnection`, a thin wrapper over psycopg 3
that gives the same surface:

- `?` placeholders become psycopg's `%s` (a literal `%` is doubled), once per statement text;
- rows answer by index and by column name (`row[0]`, `row["store"]`, `dict(row)`), like
  `sqlite3.Row`; NUMERIC results (PostgreSQL's `SUM` of integers) load as `int` when whole;
- psycopg's errors are raised as `PgError`, so callers catch `ERRORS` for either backend;
- transactions are explicit (autocommit, then `BEGIN`/`COMMIT` issued by `Database`).

What the two do differently on purpose is decided here, not in the callers: `lock()`
serialises writers (a no-op on SQLite, whose `BEGIN IMMEDIATE` already holds the one write
lock; a transaction-scoped advisory lock on PostgreSQL), `columns()` lists a table's
columns, and `pg_schema()` turns the SQLite DDL into PostgreSQL's (identity ids, bytea).
psycopg is imported only when a PostgreSQL URL is opened.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from .errors import CloudError

if TYPE_CHECKING:
    import psycopg

PG_SCHEMES = ("postgresql", "postgres")
# A row of either backend: sqlite3.Row or PgRow (index, name, keys(), iteration).
Row = Any


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What the cloud modules use of a connection; `sqlite3.Connection` has exactly this."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...

    def close(self) -> None: ...


class PgError(CloudError):
    """A psycopg error (connection, SQL, constraint, ...); the original is its __cause__."""


# Catch these around database work: either backend's errors.
ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, PgError)


def is_url(target: Path | str) -> bool:
    """Whether a database target is a PostgreSQL URL (else it is a SQLite file path)."""
    return isinstance(target, str) and urlsplit(target).scheme in PG_SCHEMES


def describe(target: Path | str) -> str:
    """The target for messages and logs: a URL without its password."""
    if not is_url(target):
        return str(target)
    parts = urlsplit(str(target))
    if parts.password is None:
        return str(target)
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def is_postgres(conn: Connection) -> bool:
    return isinstance(conn, PgConnection)


# ---------------------------------------------------------------- behaviour that differs


# Lock names; each maps to one 64-bit advisory lock key on PostgreSQL.
WRITE_LOCK = "xiaodian:write"  # what SQLite's BEGIN IMMEDIATE is: one writer at a time
SCHEMA_LOCK = "xiaodian:schema"


def _lock_key(name: str) -> int:
    # Stable across processes and Python versions (hash() is salted per process).
    return zlib.crc32(name.encode()) | (0x5844 << 32)  # 'XD' in the high half


def lock(conn: Connection, name: str) -> None:
    """Hold the named lock until the current transaction ends.

    SQLite: nothing to do, the transaction already holds the database's only write lock.
    PostgreSQL: `pg_advisory_xact_lock`, waiting for whoever holds it.
    """
    if isinstance(conn, PgConnection):
        conn.execute("SELECT pg_advisory_xact_lock(?)", (_lock_key(name),))


def values(conn: Connection, types: Sequence[str], rows: Sequence[Sequence[Any]]
           ) -> tuple[str, list[Any]]:
    """A list of rows to join against, as a query and its parameters: SQLite's
    `VALUES (?, ?), ...`; on PostgreSQL `unnest` of one array per column, so the statement's
    text is the same whatever the number of rows (parsed once, by the driver and the
    server, instead of a new text of thousands of placeholders each time)."""
    if isinstance(conn, PgConnection):
        arrays = ", ".join(f"?::{t}[]" for t in types)
        return f"SELECT * FROM unnest({arrays})", [list(col) for col in zip(*rows,
                                                                              strict=True)]
    marks = "(" + ", ".join("?" * len(types)) + ")"
    return "VALUES " + ", ".join([marks] * len(rows)), [x for row in rows for x in row]


def lock_many(conn: Connection, names: Sequence[str]) -> None:
    """`lock` each name, in the order given, in one pipelined round trip."""
    if isinstance(conn, PgConnection) and names:
        conn.executemany("SELECT pg_advisory_xact_lock(?)", [(_lock_key(n),) for n in names])


def columns(conn: Connection, table: str) -> set[str]:
    """The column names of `table` (empty if there is no such table)."""
    if isinstance(conn, PgConnection):
        return {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = ?", (table,))}
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


def tuples(conn: Connection, sql: str, parameters: Sequence[Any] = ()
           ) -> list[tuple[Any, ...]]:
    """All rows as plain tuples: for reads of thousands of rows (a chart's readings), where
    a row that also answers by name costs more in Python than the query in the server."""
    if isinstance(conn, PgConnection):
        return conn.fetch_tuples(sql, parameters)
    return [tuple(r) for r in conn.execute(sql, parameters)]


def insert_rows(conn: Connection, table: str, columns: Sequence[str],
                rows: Sequence[Sequence[Any]]) -> None:
    """Insert `rows` that cannot conflict (the caller checked under its lock): PostgreSQL's
    COPY, one round trip for any number of rows; SQLite's executemany, already in-process."""
    if not rows:
        return
    if isinstance(conn, PgConnection):
        conn.copy(table, columns, rows)
        return
    marks = ", ".join("?" * len(columns))
    conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


_PG_DDL = (
    # SQLite's rowid alias; BY DEFAULT so an explicit id (a test, a copy) is still accepted.
    (re.compile(r"\bid INTEGER PRIMARY KEY\b"),
     "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
)


def pg_schema(ddl: str) -> str:
    """SQLite DDL as PostgreSQL wants it: identity ids and bytea; the rest is common."""
    for pattern, replacement in _PG_DDL:
        ddl = pattern.sub(replacement, ddl)
    return ddl


# ---------------------------------------------------------------- PostgreSQL


@functools.lru_cache(maxsize=2048)
def pg_sql(sql: str) -> str:
    """`?` placeholders as psycopg's `%s`, a literal `%` as `%%`; quoted text untouched."""
    out: list[str] = []
    quote = ""
    for ch in sql:
        if quote:
            out.append("%%" if ch == "%" else ch)
            if ch == quote:
                quote = ""
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


class PgRow:
    """A result row that answers by position and by column name, like sqlite3.Row."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: dict[str, int], values: tuple[Any, ...]) -> None:
        self._index = index
        self._values = values

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> list[str]:
        return list(self._index)

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._index, self._values, strict=True))!r})"


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], PgRow]:
    desc = cursor.description
    index = {c.name: i for i, c in enumerate(desc)} if desc else {}

    def make(values: Sequence[Any]) -> PgRow:
        return PgRow(index, tuple(values))

    return make


class PgConnection:
    """A psycopg connection with sqlite3's calling convention (see the module docstring).

    A connection the server dropped (restart, failover, idle timeout) is replaced by a new
    one at the next statement outside a transaction or the next BEGIN: the statement that
    met the dead connection fails (PgError), and the caller's ordinary retry then works,
    as a long-lived ingest worker needs. Inside a transaction nothing is replaced: its
    earlier statements are gone with the old connection, so it must fail as a whole.
    """

    def __init__(self, raw: psycopg.Connection[Any], url: str, timeout_s: float,
                 readonly: bool) -> None:
        self.raw = raw
        self._url, self._timeout_s, self._readonly = url, timeout_s, readonly
        self._in_tx = False
        # Set when a statement failed in a way that may have left the connection unusable
        # while libpq still reports it OK (see _note_failure).
        self._suspect = False
        self._types: dict[str, dict[str, int]] = {}  # table -> column -> type oid (COPY)

    @classmethod
    def connect(cls, url: str, *, timeout_s: float = 5.0, readonly: bool = False
                ) -> PgConnection:
        conn = cls(cls._raw_connect(url, timeout_s, readonly), url, timeout_s, readonly)
        return conn

    @staticmethod
    def _raw_connect(url: str, timeout_s: float, readonly: bool) -> psycopg.Connection[Any]:
        import psycopg
        from psycopg.adapt import Loader

        class WholeNumeric(Loader):
            # SUM(bigint) is NUMERIC in PostgreSQL: give int (as SQLite does), float else.
            def load(self, data: Any) -> Any:
                text = bytes(data).decode()
                try:
                    return int(text)
                except ValueError:
                    return float(text)

        try:
            raw = psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(timeout_s)),
                                  row_factory=_row_factory)
        except psycopg.Error as exc:
            raise PgError(f"cannot connect to {describe(url)}: {exc}") from exc
        raw.adapters.register_loader("numeric", WholeNumeric)
        try:
            # A transaction that waits longer than this for a lock gives up (busy_timeout).
            raw.execute(f"SET lock_timeout = '{int(max(timeout_s, 1) * 1000)}ms'".encode())
            if readonly:
                raw.execute(b"SET default_transaction_read_only = on")
        except psycopg.Error as exc:
            raw.close()
            raise PgError(str(exc).strip()) from exc
        return raw

    def _revive(self) -> None:
        """Replace a connection the server dropped, between transactions only."""
        if not self._in_tx and (self._suspect or self.raw.closed or self.raw.broken):
            self.raw.close()
            self.raw = self._raw_connect(self._url, self._timeout_s, self._readonly)
            self._suspect = False

    def _note_failure(self, exc: psycopg.Error) -> PgError:
        """The PgError to raise for exc, marking the connection for replacement when the
        failure was the connection's rather than the statement's.

        A server that terminates a backend sends FATAL and closes the socket; a query sent
        in that instant fails on the client side ("sending query failed ... another command
        is already in progress") while libpq has not yet marked the connection BAD, so
        `broken` alone would let every later statement fail the same way. Client-side
        failures carry no SQLSTATE; 08 is connection exception, 57P operator intervention.
        """
        state = exc.sqlstate
        if state is None or state.startswith(("08", "57P")):
            self._suspect = True
        return PgError(str(exc).strip())

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        import psycopg

        self._revive()
        try:
            cur: Cursor = self.raw.execute(pg_sql(sql), tuple(parameters))
        except psycopg.Error as exc:
            raise self._note_failure(exc) from exc
        return cur

    def fetch_tuples(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Every row as a plain tuple (psycopg's own, no PgRow)."""
        import psycopg
        from psycopg.rows import tuple_row

        self._revive()
        try:
            rows: list[tuple[Any, ...]] = self.raw.cursor(row_factory=tuple_row).execute(
                pg_sql(sql), tuple(parameters)).fetchall()
        except psycopg.Error as exc:
            raise self._note_failure(exc) from exc
        return rows

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor:
        import psycopg

        self._revive()
        cur = self.raw.cursor()
        try:
            cur.executemany(pg_sql(sql), [tuple(p) for p in parameters])
        except psycopg.Error as exc:
            raise self._note_failure(exc) from exc
        return cur

    def copy(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """COPY rows into `table` (inside the caller's transaction), in the binary format:
        neither side formats or parses a number as text, which halved a grouped ingest's
        COPY here (bench.cloud_db). Binary needs each column's type: read from the catalogue
        once per table and connection, again if a column is new to it."""
        import psycopg

        self._revive()
        statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
        try:
            types = self._column_types(table, columns)
            with self.raw.cursor().copy(statement.encode()) as copy:
                copy.set_types(types)
                for row in rows:
                    copy.write_row(row)
        except psycopg.Error as exc:
            self._types.pop(table, None)  # a changed column type is read again next time
            raise self._note_failure(exc) from exc
        except (TypeError, ValueError, OverflowError) as exc:
            # The binary dumper met a value of another type (text COPY let the server say
            # so): the COPY was abandoned, the caller's transaction is to be rolled back.
            raise PgError(f"COPY into {table}: a value does not fit its column: {exc}"
                          ) from exc

    def _column_types(self, table: str, columns: Sequence[str]) -> list[int]:
        known = self._types.get(table, {})
        if not set(columns) <= known.keys():
            known = {name: int(oid) for name, oid in self.raw.execute(
                b"SELECT attname, atttypid FROM pg_attribute WHERE attrelid = %s::regclass"
                b" AND attnum > 0 AND NOT attisdropped", (table,)).fetchall()}
            missing = set(columns) - known.keys()
            if missing:
                raise PgError(f"{table} has no column(s) {', '.join(sorted(missing))}")
            self._types[table] = known
        return [known[c] for c in columns]

    def stream(self, sql: str, parameters: Sequence[Any] = ()) -> Iterator[Any]:
        """Rows one at a time from the server (an unbounded export without holding it all
        in memory). Consume it to the end before the next statement on this connection."""
        import psycopg

        self._revive()
        try:
            yield from self.raw.cursor().stream(pg_sql(sql), tuple(parameters))
        except psycopg.Error as exc:
            raise self._note_failure(exc) from exc

    def script(self, statements: str) -> None:
        """Run several statements without parameters (DDL), as sqlite3's executescript."""
        import psycopg

        self._revive()
        try:
            self.raw.execute(statements.encode())
        except psycopg.Error as exc:
            raise self._note_failure(exc) from exc

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def close(self) -> None:
        self.raw.close()

    @contextmanager
    def transaction(self) -> Iterator[PgConnection]:
        """BEGIN ... COMMIT (ROLLBACK on any exception, a failed COMMIT included)."""
        import psycopg

        self.execute("BEGIN")
        self._in_tx = True
        try:
            yield self
            self.execute("COMMIT")
        except BaseException:
            if not (self._suspect or self.raw.closed or self.raw.broken) and self.in_transaction:
                try:
                    self.raw.execute(b"ROLLBACK")
                except psycopg.Error:
                    self._suspect = True  # the original error is the one to report
            raise
        finally:
            self._in_tx = False
