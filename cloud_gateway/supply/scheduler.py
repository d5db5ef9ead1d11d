"""The supply tick: the cutoff runs by itself, and residents are reminded to pick up.

`xiaodian cloud run` runs `SupplyScheduler` (a thread with its own database connection)
every `tick_interval_s`. One tick, time injected (`tick`):

1. every zone's wave taking orders now gets its cycle row (so a wave nobody pre-ordered
   from is planned for walk-in stock too);
2. every cycle still `open` (or left in `cutoff` by a crash) whose cutoff has passed is
   cut off and planned, the same code as `xiaodian supply cutoff`. A worker first claims
   the (zone, wave) in `job_claims` for a lease, in a transaction of its own: with two
   workers one runs it and the other moves on; a worker that dies mid-run leaves a
   claim that lapses, and the cycle's own state makes a second run change nothing;
3. the pickup notices due now (`resident_notices.remind`).

A wave whose cutoff passed while no worker ran is cut off late when one starts, if it
has a cycle row (a pre-order opened it); a zone seen for the first time starts from the
wave taking orders now.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from .. import sql
from ..db_loop import DbLoop

if TYPE_CHECKING:
    from ..db import Database

log = logging.getLogger(__name__)

SCHEMA = """
-- Who runs a scheduled job (supply/scheduler.py): a claim for a lease, done_at once run.
CREATE TABLE IF NOT EXISTS job_claims (
    job TEXT NOT NULL,
    key TEXT NOT NULL,
    worker TEXT NOT NULL,
    claimed_at DOUBLE PRECISION NOT NULL,
    claimed_until DOUBLE PRECISION NOT NULL,
    done_at DOUBLE PRECISION,
    PRIMARY KEY (job, key)
);
"""
TABLES = ("job_claims",)
CUTOFF_JOB = "cutoff"


def claim(conn: sql.Connection, job: str, key: str, worker: str, now: float,
          lease_s: float) -> bool:
    """Take the job for `lease_s` unless it is done or another worker's lease runs."""
    row = conn.execute(
        "INSERT INTO job_claims (job, key, worker, claimed_at, claimed_until)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (job, key) DO UPDATE SET"
        " worker = excluded.worker, claimed_at = excluded.claimed_at,"
        " claimed_until = excluded.claimed_until WHERE job_claims.done_at IS NULL"
        " AND job_claims.claimed_until < excluded.claimed_at RETURNING worker",
        (job, key, worker, now, now + lease_s)).fetchone()
    return row is not None


def finish(conn: sql.Connection, job: str, key: str, now: float) -> None:
    conn.execute("UPDATE job_claims SET done_at = ? WHERE job = ? AND key = ?",
                 (now, job, key))


@dataclass(frozen=True)
class SchedulerSettings:
    """The `[supply]` table of the cloud config."""

    scheduler: bool = True  # run cutoffs and reminders in `xiaodian cloud run`
    tick_interval_s: float = 30.0
    remind_before_min: float = 120.0  # the reminder before the pickup window closes
    claim_lease_s: float = 900.0  # a cutoff claimed by a worker that died is retried after

    def __post_init__(self) -> None:
        if not 0.05 <= self.tick_interval_s <= 3600.0:
            raise ValueError("tick_interval_s: must be between 0.05 and 3600 seconds")
        if not 0.0 <= self.remind_before_min <= 24 * 60:
            raise ValueError("remind_before_min: must be between 0 and 1440 minutes")
        if not 10.0 <= self.claim_lease_s <= 86400.0:
            raise ValueError("claim_lease_s: must be between 10 and 86400 seconds")


@dataclass
class TickReport:
    cut: list[tuple[str, date]] = field(default_factory=list)  # (zone, wave) planned now
    skipped: list[tuple[str, date]] = field(default_factory=list)  # claimed by another
    failed: list[tuple[str, date, str]] = field(default_factory=list)
    notices: int = 0


def due_cutoffs(conn: sql.Connection, now: float) -> list[tuple[str, date]]:
    """Open every zone's current wave; the (zone, wave)s whose cutoff has passed unplanned."""
    from . import settings, waves

    for z in settings.zones(conn):
        sched = settings.get_zone(conn, z)
        waves.ensure_cycle(conn, z, sched.wave_of(now), sched, now)
    return [(str(r[0]), date.fromisoformat(r[1])) for r in conn.execute(
        "SELECT zone, wave FROM supply_cycles WHERE state IN ('open', 'cutoff')"
        " AND cutoff_at <= ? ORDER BY cutoff_at, zone", (now,))]


def tick(db: Database, now: float, worker: str, cfg: SchedulerSettings) -> TickReport:
    """One supply tick against `db` (a `cloud_gateway.db.Database`)."""
    from .. import resident_notices
    from ..errors import CloudError
    from . import cutoff

    rep = TickReport()
    with db.transaction() as conn:
        due = due_cutoffs(conn, now)
    for zone, wave in due:
        key = f"{zone}/{wave.isoformat()}"
        with db.transaction() as conn:
            mine = claim(conn, CUTOFF_JOB, key, worker, now, cfg.claim_lease_s)
        if not mine:
            rep.skipped.append((zone, wave))
            continue
        try:
            with db.transaction() as conn:
                _, changed = cutoff.cutoff(conn, zone, wave, now, f"scheduler:{worker}")
                finish(conn, CUTOFF_JOB, key, now)
        except sql.ERRORS:
            raise  # the database: the whole tick is tried again
        except Exception as exc:  # one zone's failure stops no other zone
            # Bad settings (CloudError) or a bug: logged, tried again after the lease.
            log.log(logging.ERROR if isinstance(exc, CloudError) else logging.CRITICAL,
                    "cutoff of zone %s wave %s failed: %s", zone, wave, exc,
                    exc_info=not isinstance(exc, CloudError))
            rep.failed.append((zone, wave, str(exc)))
            continue
        if changed:
            rep.cut.append((zone, wave))
            log.info("zone %s: wave %s cut off and planned by %s", zone, wave, worker)
    with db.transaction() as conn:
        rep.notices = resident_notices.remind(conn, now, cfg.remind_before_min * 60)
    return rep


class SupplyScheduler(DbLoop):
    """The supply tick every `tick_interval_s` on a thread of its own."""

    def __init__(self, cfg: SchedulerSettings, db_target: Path | str, worker_id: str, *,
                 now: Callable[[], float] = time.time) -> None:
        super().__init__(f"{worker_id}-supply", db_target, cfg.tick_interval_s)
        self.cfg = cfg
        self.worker_id = worker_id
        self._now = now
        self.ticks = 0

    def step(self, db: Database) -> None:
        tick(db, self._now(), self.worker_id, self.cfg)
        self.ticks += 1
