"""Sends residents' notices (`resident_notices`) through Apprise, on a thread of its own.

A resident's channel is an Apprise URL made from their phone number by the configured
template (`[resident_notices] apprise_template`, e.g. an SMS gateway's
"json://sms.example.com/send/{phone}"), at sending time: the phone number is read from
`residents` then and never copied into the outbox. Without a template nothing is sent;
the notices are still shown on the resident's page.

Each pass claims due notices for a lease (outbox.py: another worker takes them over if
this one dies mid-send), sends each once, logs the attempt in `resident_notice_attempts`,
and retries a failure with back-off up to `max_attempts`. A notice not sent within
`max_age_s` is given up (`failed`): a reminder an hour late helps nobody.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from xiaodian.i18n import translator

from . import outbox, resident_notices, sql
from .alerts import channels
from .db import Database
from .db_loop import DbLoop
from .resident_notices import NoticeSettings

log = logging.getLogger(__name__)


def phone_of(conn: sql.Connection, order_id: int) -> str | None:
    row = conn.execute("SELECT r.phone FROM resident_orders o JOIN residents r"
                       " ON r.id = o.resident WHERE o.order_id = ?", (order_id,)).fetchone()
    return None if row is None else str(row[0])


def send_due(db: Database, cfg: NoticeSettings, worker: str, now: Callable[[], float],
             lease_s: float = 300.0) -> int:
    """One pass: claim the due notices, send each, record; how many were delivered."""
    t = translator(cfg.lang)
    with db.transaction() as conn:
        rows = outbox.claim_due(conn, resident_notices.OUTBOX, now(), worker, lease_s,
                                cfg.batch)
    sent = 0
    for row in rows:
        notice = resident_notices.notice_of(
            [row[k] for k in ("id", "order_id", "kind", "params", "created_at", "state")])
        phone = phone_of(db.conn, notice.order_id)
        started = time.monotonic()
        if now() - notice.created_at > cfg.max_age_s:
            result = channels.Attempt(False, None, "too old to send")
        elif phone is None:
            result = channels.Attempt(False, None, "the order has no resident any more")
        else:
            result = channels.send_apprise(cfg.channel(phone), notice.title(t), notice.text(t))
        took = time.monotonic() - started
        at = now()
        attempts = int(row["attempts"]) + 1
        retry_at = None
        if not result.ok and phone is not None and attempts < cfg.max_attempts and \
                at - notice.created_at <= cfg.max_age_s:
            retry_at = at + outbox.backoff_s(attempts, cfg.retry_initial_s, cfg.retry_max_s)
        with db.transaction() as conn:
            outbox.record_attempt(conn, resident_notices.OUTBOX, resident_notices.ATTEMPTS,
                                  notice.id, worker, at, result.ok, result.status_code,
                                  result.error, took, retry_at)
        if result.ok:
            sent += 1
        elif retry_at is None:
            log.error("resident notice %d (order %d) not delivered: %s", notice.id,
                      notice.order_id, result.error)
    return sent


class NoticeSender(DbLoop):
    """`send_due` every `interval_s` on a thread of its own (never the ingest thread)."""

    def __init__(self, cfg: NoticeSettings, db_target: Path | str, worker_id: str, *,
                 now: Callable[[], float] = time.time) -> None:
        super().__init__(f"{worker_id}-notices", db_target, cfg.interval_s)
        self.cfg = cfg
        self.worker_id = worker_id
        self._now = now
        self.sent = 0

    def step(self, db: Database) -> None:
        self.sent += send_due(db, self.cfg, self.worker_id, self._now)
