"""`AlertService`: the escalation tick (in the ingest database thread) and the sender thread.

Tick, every `tick_interval_s` and right after a batch changed an alert, in one transaction:
run the policy over the unsettled alerts, write each notice as one `alert_notifications`
row per contact channel (the durable outbox), and claim the due rows for this worker. The
claimed rows go on a bounded queue to the sender thread; when the queue is full the claim is
released and the row waits for the next tick (nothing is dropped; `queue_full` counts it).

Sender: one attempt per row taken, logged in `alert_deliveries`; a failure puts the row back
with exponential back-off, and after `max_attempts` marks it `failed` with an error in the
log. Sending never runs on the ingest thread, so a slow receiver cannot hold up ingest.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from .. import maintenance_alerts, sql
from ..db import Database
from ..outbox import backoff_s
from . import channels, notice_text, store
from .policy import Notice
from .settings import AlertSettings, Contact

log = logging.getLogger(__name__)


ACK_LINK_TTL_S = 24 * 3600  # a notification's link acknowledges for a day, and only once


def ack_token(secret: bytes, key: str, contact: str, expires_at: int) -> str:
    """`contact.expires.mac`: the link's capability to acknowledge alert `key` as `contact`
    until `expires_at` (the web side also lets it work only once)."""
    mac = hmac.new(secret, f"{key}\n{contact}\n{expires_at}".encode(),
                   hashlib.sha256).hexdigest()[:32]
    return f"{contact}.{expires_at}.{mac}"


def check_ack_token(secret: bytes, key: str, token: str) -> tuple[str, int] | None:
    """(contact, expires_at) of a genuine token for `key`, else None; expiry is the
    caller's to judge (so it can say "expired" rather than "not valid")."""
    head, _, _mac = token.rpartition(".")
    contact, _, expires = head.rpartition(".")
    if not contact or not expires.isascii() or not expires.isdigit() or len(expires) > 12:
        return None
    if not hmac.compare_digest(ack_token(secret, key, contact, int(expires)), token):
        return None
    return contact, int(expires)


def ack_link(public_url: str, secret: bytes, key: str, contact: str,
             expires_at: int | None = None) -> str:
    expires = int(time.time()) + ACK_LINK_TTL_S if expires_at is None else expires_at
    return (public_url.rstrip("/") + "/ack/" + quote(key, safe="/")
            + "?" + urlencode({"t": ack_token(secret, key, contact, expires)}))


class AlertService:
    def __init__(self, settings: AlertSettings, db_path: Path | str, worker_id: str, *,
                 link_secret: bytes, webhook_secrets: Mapping[str, bytes],
                 public_url: str, now: Callable[[], float] = time.time) -> None:
        """`webhook_secrets`: by "store/contact"; `public_url`: base of the ack links."""
        self.settings = settings
        self.db_path = db_path
        self.worker_id = worker_id
        self.public_url = settings.public_url or public_url
        self._link_secret = link_secret
        self._webhook_secrets = dict(webhook_secrets)
        self._now = now
        self._queue: queue.Queue[int] = queue.Queue(maxsize=settings.queue_size)
        self._stopping = threading.Event()
        self._next_tick = 0.0  # monotonic
        self.counters = dict.fromkeys(
            ("ticks", "notices", "sent", "failed_attempts", "failed", "queue_full"), 0)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run_sender, name=f"{worker_id}-alerts",
                                        daemon=True)

    @property
    def link_secret(self) -> bytes:
        return self._link_secret

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def status(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counters)

    # ------------------------------------------------------------ tick (database thread)

    def maybe_tick(self, db: Database, *, force: bool = False) -> None:
        """Tick if it is time (or `force`); database errors are logged and retried later."""
        if not force and time.monotonic() < self._next_tick:
            return
        self._next_tick = time.monotonic() + self.settings.tick_interval_s
        try:
            self.tick(db, self._now())
        except sql.ERRORS as exc:
            log.warning("alert tick failed, retrying at the next one: %s", exc)

    def tick(self, db: Database, now: float) -> int:
        """Escalate, write notices out, hand due ones to the sender; notices made."""
        self._count("ticks")
        free = self.settings.queue_size - self._queue.qsize()
        # Lease: one attempt's timeout and then some; a dead worker's claims lapse.
        lease = self.settings.timeout_s * 3 + 30.0
        with db.transaction() as conn:
            planned = store.escalate(conn, now, self.settings.policy)
            made = 0
            for row, notice in planned:
                made += self._write_notice(conn, row, notice, now)
            # Maintenance alerts: the same outbox and sender, to technicians only.
            for alert, notice in maintenance_alerts.escalate(conn, now, self.settings.policy):
                made += self._write_maintenance_notice(conn, alert, notice, now)
            claimed = store.claim_due(conn, now, self.worker_id, lease, max(0, free))
        self._count("notices", made)
        refused = []
        for r in claimed:
            try:
                self._queue.put_nowait(int(r["id"]))
            except queue.Full:
                refused.append(int(r["id"]))
        if refused:
            self._count("queue_full", len(refused))
            with db.transaction() as conn:
                store.release(conn, refused)
        return made

    def _write_notice(self, conn: sql.Connection, row: sql.Row, notice: Notice,
                      now: float) -> int:
        cfg = self.settings.store(row["store"])
        contacts = [c for c in (cfg.contacts if cfg else ()) if c.role in notice.to]
        if not contacts:
            if "owner" in notice.to:  # a backup-only notice with no backups is fine
                log.warning("alert %s/%s: no %s contact configured for the store; not sent",
                            row["store"], row["id"], "/".join(notice.to))
            return 0
        alert = store.alert_dict(row)
        tz = self.settings.policy(row["store"]).timezone
        n = 0
        for contact in contacts:
            # In the contact's language (zh-CN unless set), times in the store's zone.
            title, text = notice_text.notice(notice.kind, alert, contact.lang, tz)
            payload = {"kind": notice.kind, "title": title, "text": text, "lang": contact.lang,
                       "alert": alert, "created_at": now}
            for channel in contact.channels():
                store.add_notification(conn, row["store"], row["id"], notice.kind,
                                       contact.name, channel, payload, now)
                n += 1
        return n

    def _write_maintenance_notice(self, conn: sql.Connection, alert: dict[str, Any],
                                  notice: Notice, now: float) -> int:
        cfg = self.settings.store(alert["store"])
        contacts = [c for c in (cfg.contacts if cfg else ()) if c.role == "technician"]
        if not contacts:
            log.info("maintenance alert %s/%s: no technician contact for the store; not sent",
                     alert["store"], alert["id"])
            return 0
        tz = self.settings.policy(alert["store"]).timezone
        n = 0
        for contact in contacts:
            title, text = notice_text.maintenance_notice(notice.kind, alert, contact.lang, tz)
            payload = {"kind": notice.kind, "class": "maintenance", "title": title,
                       "text": text, "lang": contact.lang, "alert": alert, "created_at": now}
            for channel in contact.channels():
                store.add_notification(conn, alert["store"],
                                       maintenance_alerts.NOTICE_PREFIX + alert["id"],
                                       notice.kind, contact.name, channel, payload, now)
                n += 1
        return n

    # ------------------------------------------------------------ sender thread

    def _run_sender(self) -> None:
        db: Database | None = None
        try:
            while not self._stopping.is_set():
                try:
                    nid = self._queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                if db is None:
                    db = Database.open(self.db_path)
                try:
                    self._deliver(db, nid)
                except sql.ERRORS as exc:
                    # Its claim lapses and a later tick hands it out again.
                    log.warning("alert notification %d: database error: %s", nid, exc)
        except Exception:
            log.exception("alert sender of %s failed", self.worker_id)
            raise
        finally:
            if db is not None:
                db.close()

    def _deliver(self, db: Database, nid: int) -> None:
        row = db.conn.execute("SELECT * FROM alert_notifications WHERE id = ?",
                              (nid,)).fetchone()
        if row is None or row["state"] != "pending":
            return
        contact = self._contact(row["store"], row["contact"])
        started = time.monotonic()
        if contact is None:
            result = channels.Attempt(False, None, "contact no longer configured")
        else:
            result = self._send(row, contact)
        took = time.monotonic() - started
        now = self._now()
        attempts = int(row["attempts"]) + 1
        retry_at: float | None = None
        if not result.ok and attempts < self.settings.max_attempts and contact is not None:
            retry_at = now + backoff_s(attempts, self.settings.retry_initial_s,
                                       self.settings.retry_max_s)
        with db.transaction() as conn:
            store.record_attempt(conn, nid, self.worker_id, now, result.ok, result.status_code,
                                 result.error, took, retry_at)
        if result.ok:
            self._count("sent")
        elif retry_at is not None:
            self._count("failed_attempts")
            log.info("alert notification %d to %s (%s) attempt %d failed: %s; retry in %.1f s",
                     nid, row["contact"], row["channel"], attempts, result.error, retry_at - now)
        else:
            self._count("failed")
            log.error("alert notification %d to %s (%s) FAILED after %d attempts: %s",
                      nid, row["contact"], row["channel"], attempts, result.error)

    def _contact(self, store_id: str, name: str) -> Contact | None:
        cfg = self.settings.store(store_id)
        return next((c for c in (cfg.contacts if cfg else ()) if c.name == name), None)

    def _send(self, row: sql.Row, contact: Contact) -> channels.Attempt:
        payload: dict[str, Any] = json.loads(row["payload"])
        sent_at = int(self._now())
        # A maintenance alert is not acknowledged: it ends when the fridge is fixed.
        link = None if payload.get("class") == "maintenance" else ack_link(
            self.public_url, self._link_secret, payload["alert"]["key"], contact.name,
            sent_at + ACK_LINK_TTL_S)
        channel: str = row["channel"]
        if channel == "webhook":
            secret = self._webhook_secrets.get(f"{row['store']}/{contact.name}")
            if secret is None:
                return channels.Attempt(False, None, "no webhook secret loaded for the contact")
            extra = {} if link is None else {"ack_url": link}
            body = dict(payload, **extra, sent_at=sent_at, delivery_id=int(row["id"]),
                        contact=contact.name)
            raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
            return channels.send_webhook(contact.webhook_url, secret, raw, int(row["id"]),
                                         sent_at, self.settings.timeout_s)
        index = int(channel.partition(":")[2])
        if index >= len(contact.apprise):
            return channels.Attempt(False, None, f"{channel}: no such Apprise URL any more")
        text = payload["text"] if link is None else (
            f"{payload['text']}\n\n{notice_text.acknowledge_line(link, contact.lang)}")
        return channels.send_apprise(contact.apprise[index], payload["title"], text)

