"""A durable outbox of messages to people, shared by the owners' alert notices
(`alerts/store.py`) and the residents' notices (`resident_notices.py`).

A row waits `pending` until a worker claims it for a lease (another worker takes it over
if this one dies mid-send), then each attempt is logged in the log table and the row is
settled: `delivered`, `pending` again after a back-off, or `failed` after the last try.
The outbox table needs the columns id, state, attempts, next_attempt_at, claimed_by,
claimed_until, delivered_at, last_error; the log table notification_id, attempt, at,
worker, ok, status_code, error, duration_s. Table names are the callers' constants,
never input.
"""

from __future__ import annotations

from collections.abc import Iterable

from . import sql


def claim_due(conn: sql.Connection, table: str, now: float, worker: str, lease_s: float,
              limit: int) -> list[sql.Row]:
    """Take up to `limit` due rows of `table` for this worker for `lease_s`, oldest first."""
    rows = conn.execute(
        f"SELECT * FROM {table} WHERE state = 'pending' AND next_attempt_at <= ?"
        " AND (claimed_until IS NULL OR claimed_until < ?) ORDER BY id LIMIT ?",
        (now, now, limit)).fetchall()
    conn.executemany(f"UPDATE {table} SET claimed_by = ?, claimed_until = ? WHERE id = ?",
                     [(worker, now + lease_s, r["id"]) for r in rows])
    return rows


def release(conn: sql.Connection, table: str, ids: Iterable[int]) -> None:
    """Give claimed rows back at once (they were not handed to a sender)."""
    conn.executemany(f"UPDATE {table} SET claimed_by = NULL, claimed_until = NULL"
                     " WHERE id = ?", [(i,) for i in ids])


def record_attempt(conn: sql.Connection, table: str, log_table: str, row_id: int,
                   worker: str, at: float, ok: bool, status_code: int | None,
                   error: str | None, duration_s: float, retry_at: float | None) -> int:
    """Log one attempt and settle the row: delivered, pending again (`retry_at`) or failed
    (`retry_at` None after a failure). Returns the attempt number."""
    attempt = int(conn.execute(
        f"UPDATE {table} SET attempts = attempts + 1 WHERE id = ? RETURNING attempts",
        (row_id,)).fetchone()[0])
    conn.execute(
        f"INSERT INTO {log_table} (notification_id, attempt, at, worker, ok, status_code,"
        " error, duration_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (row_id, attempt, at, worker, ok, status_code, error, duration_s))
    if ok:
        state, next_at = "delivered", at
    elif retry_at is not None:
        state, next_at = "pending", retry_at
    else:
        state, next_at = "failed", at
    conn.execute(
        f"UPDATE {table} SET state = ?, next_attempt_at = ?, claimed_by = NULL,"
        " claimed_until = NULL, delivered_at = ?, last_error = ? WHERE id = ?",
        (state, next_at, at if ok else None, None if ok else error, row_id))
    return attempt


def backoff_s(attempt: int, initial_s: float, max_s: float) -> float:
    """Delay after the `attempt`-th failure: initial, 2x, 4x, ... capped."""
    return float(min(max_s, initial_s * 2 ** (attempt - 1)))
