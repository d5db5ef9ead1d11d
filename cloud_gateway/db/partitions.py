"""Readings by month: PostgreSQL's partitions of `readings`, made ahead and dropped by age.

On PostgreSQL `readings` is partitioned by RANGE on `wall_corrected` (the time the owner's
chart and the HACCP record select on), one partition per UTC calendar month, named
`readings_yYYYYmMM`, plus `readings_default` for a reading whose month has no partition (a
terminal whose clock says 2031 or 1970): it is stored, never refused. Why a month:

- the HACCP record reads a month of one store: one or two partitions; the 24 h chart one
  or two (a partition's index is as deep as at any width: log of its size, 5 levels at
  10,000 stores, docs/benchmarks.md);
- retention drops whole months, and at 3 years that is ~40 partitions: few enough that
  the dedupe lookup, which selects by (store, device, boot, seq) and cannot be pruned by
  time, probes each partition's primary key cheaply, and planning stays short. Days would
  be ~1,100 partitions for both.

The worker's sweep (`maintain`) makes the current month's partition and AHEAD_MONTHS more,
moves into a new partition the readings of its month that were waiting in the default one
(PostgreSQL refuses to attach a range the default partition holds rows of), drops the
months wholly older than the retention, and deletes from the default partition the readings
that arrived longer ago than the retention (it holds only mis-clocked readings: a small
table, never a scan of `readings`). SQLite, the single-store backend, keeps one table and
deletes by the same rule.

`plan` is the pure part: which months to make and which to drop.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .. import accounts, sql

if TYPE_CHECKING:
    from .connection import Connected

log = logging.getLogger(__name__)

Month = tuple[int, int]  # (year, month 1-12), UTC
AHEAD_MONTHS = 2  # partitions kept ready beyond the current month
DEFAULT = "readings_default"
LOCK = "xiaodian:partitions"  # one sweep at a time across workers
_NAME = re.compile(r"readings_y(\d{4})m(\d{2})\Z")
# Vacuum a partition every million readings inserted, not after 20 % more rows (the
# default: a month at 10,000 stores would wait for two billion): vacuum marks the pages
# all-visible, which lets the chart read its temperatures from the index alone. On pages
# only ever inserted into it has little else to do.
OPTIONS = ("WITH (autovacuum_vacuum_insert_threshold = 1000000,"
           " autovacuum_vacuum_insert_scale_factor = 0)")


def month_of(t: float) -> Month:
    d = datetime.fromtimestamp(t, UTC)
    return d.year, d.month


def add_months(m: Month, n: int) -> Month:
    k = m[0] * 12 + (m[1] - 1) + n
    return k // 12, k % 12 + 1


def bounds(m: Month) -> tuple[int, int]:
    """[start, end) of a month as Unix seconds."""
    nxt = add_months(m, 1)
    return (int(datetime(m[0], m[1], 1, tzinfo=UTC).timestamp()),
            int(datetime(nxt[0], nxt[1], 1, tzinfo=UTC).timestamp()))


def name(m: Month) -> str:
    return f"readings_y{m[0]:04d}m{m[1]:02d}"


def parse_name(text: str) -> Month | None:
    found = _NAME.match(text)
    return (int(found[1]), int(found[2])) if found else None


@dataclass(frozen=True)
class Plan:
    create: tuple[Month, ...]
    drop: tuple[Month, ...]
    cutoff: float | None  # readings older than this are past retention (None: keep all)


def plan(existing: Iterable[Month], now: float, retention_days: int,
         ahead: int = AHEAD_MONTHS) -> Plan:
    """The months to make (current and `ahead` more, where missing) and to drop (wholly
    before now - retention_days; retention 0 keeps everything)."""
    have = set(existing)
    current = month_of(now)
    create = tuple(m for m in (add_months(current, i) for i in range(ahead + 1))
                   if m not in have)
    cutoff = now - retention_days * 86400.0 if retention_days > 0 else None
    drop = tuple(sorted(m for m in have if cutoff is not None and bounds(m)[1] <= cutoff))
    return Plan(create, drop, cutoff)


@dataclass(frozen=True)
class Report:
    created: tuple[str, ...] = ()
    moved: int = 0  # readings moved from the default partition into new ones
    dropped: tuple[tuple[str, int], ...] = ()  # (partition, estimated rows)
    deleted: int = 0  # readings deleted by age (SQLite; the default partition)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.dropped or self.deleted)


# ---------------------------------------------------------------- PostgreSQL


def is_partitioned(conn: sql.Connection) -> bool:
    row = conn.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass('readings')"
                       ).fetchone()
    return row is not None and row[0] == "p"


def partitions(conn: sql.Connection) -> list[Month]:
    """The monthly partitions that exist (the default one aside), oldest first."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = to_regclass('readings')").fetchall()
    return sorted(m for m in (parse_name(r[0]) for r in rows) if m is not None)


def create(conn: sql.Connection, m: Month) -> int:
    """Make month `m`'s partition; returns how many readings it took from the default one.

    Built beside the table and attached: ATTACH takes a lock that lets ingest go on
    (CREATE ... PARTITION OF would block every insert while it runs), and it finds the
    month's readings already moved out of the default partition."""
    lo, hi = bounds(m)
    part = name(m)
    conn.execute(f"CREATE TABLE {part} (LIKE readings INCLUDING DEFAULTS INCLUDING"
                 f" CONSTRAINTS) {OPTIONS}")
    moved = conn.execute(
        f"WITH m AS (DELETE FROM {DEFAULT} WHERE wall_corrected >= ? AND wall_corrected < ?"
        f" RETURNING *) INSERT INTO {part} SELECT * FROM m", (lo, hi)).rowcount
    conn.execute(f"ALTER TABLE readings ATTACH PARTITION {part} FOR VALUES FROM ({lo}) TO ({hi})")
    return max(moved, 0)


def drop(conn: sql.Connection, m: Month) -> int:
    """Detach and drop month `m`'s partition; returns its estimated row count (counting
    would read it all: the planner's estimate is what the log and audit say)."""
    part = name(m)
    row = conn.execute("SELECT reltuples FROM pg_class WHERE oid = to_regclass(?)",
                       (part,)).fetchone()
    conn.execute(f"ALTER TABLE readings DETACH PARTITION {part}")
    conn.execute(f"DROP TABLE {part}")
    return max(int(row[0]), 0) if row is not None else 0


def maintain(conn: sql.Connection, now: float, retention_days: int,
             ahead: int = AHEAD_MONTHS) -> Report:
    """The sweep, inside the caller's transaction: partitions ahead, retention behind."""
    if not sql.is_postgres(conn):
        return _maintain_sqlite(conn, now, retention_days)
    sql.lock(conn, LOCK)
    p = plan(partitions(conn), now, retention_days, ahead)
    moved = 0
    for m in p.create:
        moved += create(conn, m)
    dropped = tuple((name(m), drop(conn, m)) for m in p.drop)
    deleted = 0
    if p.cutoff is not None:
        # Mis-clocked readings are kept for the retention from when they arrived.
        deleted = conn.execute(f"DELETE FROM {DEFAULT} WHERE received_at < ?",
                               (p.cutoff,)).rowcount
    return Report(tuple(name(m) for m in p.create), moved, dropped, max(deleted, 0))


def _maintain_sqlite(conn: sql.Connection, now: float, retention_days: int) -> Report:
    p = plan((), now, retention_days, 0)
    if p.cutoff is None:
        return Report()
    # Whole months, as PostgreSQL drops them; and old since it arrived too (a wrong
    # clock's reading is kept as long as the default partition keeps it there).
    month = bounds(month_of(p.cutoff))[0]
    n = conn.execute("DELETE FROM readings WHERE wall_corrected < ? AND received_at < ?",
                     (month, p.cutoff)).rowcount
    return Report(deleted=max(n, 0))


def sweep(db: Connected, now: float, retention_days: int, worker: str) -> Report:
    """`maintain` in a transaction of its own, logged, each retention drop audited."""
    with db.transaction(exclusive=False) as conn:
        report = maintain(conn, now, retention_days)
        detail = {"retention_days": retention_days}
        for part, rows in report.dropped:
            accounts.audit(conn, worker, "readings.retention", "", part, now,
                           detail=detail | {"rows_estimate": rows})
        if report.deleted:
            target = DEFAULT if sql.is_postgres(conn) else "readings"
            accounts.audit(conn, worker, "readings.retention", "", target, now,
                           detail=detail | {"rows": report.deleted})
    if report.created:
        log.info("readings partitions made: %s (%d readings moved from %s)",
                 ", ".join(report.created), report.moved, DEFAULT)
    for part, rows in report.dropped:
        log.info("readings partition %s dropped: past the %d-day retention (~%d readings)",
                 part, retention_days, rows)
    if report.deleted:
        log.info("%d readings deleted: past the %d-day retention", report.deleted,
                 retention_days)
    return report
