"""Command ids this terminal accepted, with their results, in SQLite: a redelivered or
replayed signed command runs at most once (`xiaodian.wire.commands.ReplayLedger`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from xiaodian.wire.commands import MAX_RESULT_BYTES, ReplayStoreFull

__all__ = ["ReplayStore", "ReplayStoreFull"]


class ReplayStore:
    """Command ids already accepted, with their results, in SQLite (`:memory:` for tests).

    An id is claimed durably *before* the command runs: a crash while it runs means a
    redelivery is answered "replayed, result unknown" rather than run twice. Rows are kept
    until the command could no longer pass the expiry check, then pruned; more than
    `max_entries` live ids refuses new commands (fail closed) instead of forgetting.
    """

    def __init__(self, path: Path | str, *, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS executed_commands ("
            " id TEXT PRIMARY KEY, keep_until INTEGER NOT NULL,"
            " claimed_at REAL NOT NULL, result BLOB)"
        )

    def lookup(self, command_id: str) -> tuple[bool, bytes | None]:
        row = self._db.execute(
            "SELECT result FROM executed_commands WHERE id = ?", (command_id,)
        ).fetchone()
        return (False, None) if row is None else (True, row[0])

    def claim(self, command_id: str, keep_until: int, now: float) -> tuple[bool, bytes | None]:
        """(True, None) if newly claimed, else (False, earlier result)."""
        with self._transaction():
            self._db.execute("DELETE FROM executed_commands WHERE keep_until < ?", (now,))
            (count,) = self._db.execute("SELECT count(*) FROM executed_commands").fetchone()
            found, earlier = self.lookup(command_id)
            if found:
                return False, earlier
            if count >= self.max_entries:
                raise ReplayStoreFull(f"{count} unexpired command ids remembered (bound)")
            self._db.execute(
                "INSERT INTO executed_commands (id, keep_until, claimed_at) VALUES (?, ?, ?)",
                (command_id, keep_until, now),
            )
            return True, None

    def record_result(self, command_id: str, result: bytes) -> None:
        if len(result) > MAX_RESULT_BYTES:
            raise ValueError(f"result: {len(result)} bytes exceeds {MAX_RESULT_BYTES}")
        cur = self._db.execute(
            "UPDATE executed_commands SET result = ? WHERE id = ?", (result, command_id)
        )
        if cur.rowcount != 1:
            raise KeyError(f"command {command_id!r} was never claimed")

    def count(self) -> int:
        # A method, not __len__: an empty store must not be falsy in `store or default`.
        (count,) = self._db.execute("SELECT count(*) FROM executed_commands").fetchone()
        return int(count)

    def close(self) -> None:
        self._db.close()

    def _transaction(self) -> _Tx:
        return _Tx(self._db)


class _Tx:
    # BEGIN IMMEDIATE: two processes on one database cannot both claim the same id.
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
