"""Alert tables and their transactions. Plain SQL with parameters, like `cloud_gateway.db`.

The tables are created here (executed by `Database.open`), so the alert feature is one
package: `alerts` (one row per store and alert id), `alert_acks` (every acknowledgement,
for HACCP), `alert_notifications` (the outbox: one row per notice, contact and channel,
written in the tick's transaction, so a notice is never lost between deciding and sending)
and `alert_deliveries` (every attempt, with the HTTP status or the error).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from xiaodian.i18n import N_, Message
from xiaodian.wire.payloads import Batch

from .. import outbox, sql
from ..errors import CloudError
from .model import AlertChangeIn, AlertDataError, AlertRecord, merge, parse_change, reopens
from .policy import AlertView, Escalation, EscalationPolicy, Notice, decide

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    store TEXT NOT NULL,
    id TEXT NOT NULL,
    fridge TEXT NOT NULL,
    rule TEXT NOT NULL,
    severity TEXT NOT NULL,
    audience TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    raised_at DOUBLE PRECISION NOT NULL,
    last_at DOUBLE PRECISION NOT NULL,
    last_change TEXT NOT NULL,
    cleared_at DOUBLE PRECISION,
    peak_c DOUBLE PRECISION,
    message TEXT NOT NULL,
    data TEXT NOT NULL,
    late BOOLEAN NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    acked_by TEXT,
    acked_at DOUBLE PRECISION,
    corrective_action TEXT,
    escalation TEXT,
    settled BOOLEAN NOT NULL DEFAULT FALSE,
    reopened_after DOUBLE PRECISION,
    PRIMARY KEY (store, id)
);
CREATE INDEX IF NOT EXISTS alerts_by_store ON alerts (store, state, started_at);
CREATE INDEX IF NOT EXISTS alerts_unsettled ON alerts (store) WHERE NOT settled;
CREATE TABLE IF NOT EXISTS alert_acks (
    id INTEGER PRIMARY KEY,
    store TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    "by" TEXT NOT NULL,  -- quoted: a reserved word in PostgreSQL
    at DOUBLE PRECISION NOT NULL,
    corrective_action TEXT NOT NULL,
    via TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_acks_by_alert ON alert_acks (store, alert_id);
CREATE TABLE IF NOT EXISTS alert_notifications (
    id INTEGER PRIMARY KEY,
    store TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    contact TEXT NOT NULL,
    channel TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    claimed_by TEXT,
    claimed_until DOUBLE PRECISION,
    delivered_at DOUBLE PRECISION,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS alert_notifications_due
    ON alert_notifications (next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS alert_notifications_by_alert
    ON alert_notifications (store, alert_id);
CREATE TABLE IF NOT EXISTS alert_deliveries (
    id INTEGER PRIMARY KEY,
    notification_id BIGINT NOT NULL,
    attempt INTEGER NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    worker TEXT NOT NULL,
    ok BOOLEAN NOT NULL,
    status_code INTEGER,
    error TEXT,
    duration_s DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_deliveries_by_notification
    ON alert_deliveries (notification_id, attempt);
"""

# Databases made before `reopened_after` (issue #13) get it on opening.
PG_UPGRADE = "ALTER TABLE alerts ADD COLUMN IF NOT EXISTS reopened_after DOUBLE PRECISION;\n"


def upgrade_sqlite(conn: sql.Connection) -> None:
    """Add the columns a SQLite `alerts` table made by an older version lacks (in the
    caller's write transaction: workers starting together must not both add it)."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(alerts)")}
    if "reopened_after" not in columns:
        conn.execute("ALTER TABLE alerts ADD COLUMN reopened_after DOUBLE PRECISION")


ALERT_FIELDS = ("store", "id", "fridge", "rule", "severity", "audience", "state", "started_at",
                "raised_at", "last_at", "last_change", "cleared_at", "peak_c", "message",
                "data", "late", "received_at", "updated_at", "acked_by", "acked_at",
                "corrective_action", "reopened_after")
_RECORD_FIELDS = ("store", "id", "fridge", "rule", "severity", "audience", "state",
                  "started_at", "raised_at", "last_at", "last_change", "cleared_at", "peak_c",
                  "message", "data", "late", "reopened_after")
MAX_BY = 100
NOTIFICATIONS = "alert_notifications"  # the outbox table (cloud_gateway/outbox.py)
MAX_ACTION = 2000


# ---------------------------------------------------------------- ingest side


def alert_changes(batch: Batch) -> list[AlertChangeIn]:
    """The well-formed alert changes of an events batch; a malformed one is logged, skipped."""
    out: list[AlertChangeIn] = []
    if batch.kind != "events":
        return out
    for e in batch.records:
        if getattr(e, "type", None) != "alert":
            continue
        try:
            out.append(parse_change(batch.store, e.data))  # type: ignore[union-attr]
        except AlertDataError as exc:
            # The event itself is stored (events table); only its alert meaning is lost.
            log.warning("alert event %s/%s seq %d: %s", batch.store, batch.device, e.seq, exc)
    return out


def apply_changes(conn: sql.Connection, changes: Iterable[AlertChangeIn],
                  received_at: float) -> int:
    """Merge changes into `alerts` (inside the caller's transaction); how many rows changed.

    A change that reopens a cleared alert (`model.reopens`) also clears the row's current
    acknowledgement and escalation: a new episode is told and acknowledged anew (the earlier
    acknowledgements stay in `alert_acks`)."""
    changed = 0
    for ch in changes:
        row = conn.execute(f"SELECT {', '.join(_RECORD_FIELDS)} FROM alerts"
                           " WHERE store = ? AND id = ?", (ch.store, ch.id)).fetchone()
        current = None if row is None else AlertRecord(
            **{k: row[k] for k in _RECORD_FIELDS} | {"late": bool(row["late"])})
        new = merge(current, ch)
        if new is None:
            continue
        if reopens(current, ch):
            log.warning("alert %s/%s: %s after it cleared: a new episode, told and"
                        " acknowledged anew", ch.store, ch.id, ch.change)
            conn.execute("UPDATE alerts SET acked_by = NULL, acked_at = NULL,"
                         " corrective_action = NULL, escalation = NULL"
                         " WHERE store = ? AND id = ?", (ch.store, ch.id))
        values = [getattr(new, k) for k in _RECORD_FIELDS]
        conn.execute(
            f"INSERT INTO alerts ({', '.join(_RECORD_FIELDS)}, received_at, updated_at)"
            f" VALUES ({', '.join('?' * (len(_RECORD_FIELDS) + 2))})"
            " ON CONFLICT (store, id) DO UPDATE SET "
            + ", ".join(f"{k} = excluded.{k}" for k in _RECORD_FIELDS[2:])
            + ", updated_at = excluded.updated_at, settled = FALSE",
            (*values, received_at, received_at))
        changed += 1
    return changed


# ---------------------------------------------------------------- escalation tick


def escalate(conn: sql.Connection, now: float,
             policy_of: Any) -> list[tuple[sql.Row, Notice]]:
    """Run the policy over every unsettled alert (inside the caller's transaction) and save
    the new escalation states; returns (alert row, notice) pairs to be written out.

    `policy_of(store) -> EscalationPolicy`.
    """
    out: list[tuple[sql.Row, Notice]] = []
    # Notification ids follow this order and are sent in id order: owners hear of alerts in
    # the order they were raised, across fridges and stores (not in arrival or index order).
    rows = conn.execute("SELECT * FROM alerts WHERE NOT settled"
                        " ORDER BY raised_at, id, store").fetchall()
    for row in rows:
        policy: EscalationPolicy = policy_of(row["store"])
        view = AlertView(row["severity"], row["audience"], row["state"], row["acked_at"])
        before = Escalation.loads(row["escalation"])
        notices, after = decide(view, before, policy, now)
        if after != before:
            conn.execute("UPDATE alerts SET escalation = ?, settled = ? WHERE store = ? AND id = ?",
                         (after.dumps(), after.done, row["store"], row["id"]))
        out += [(row, n) for n in notices]
    return out


def add_notification(conn: sql.Connection, store: str, alert_id: str, kind: str,
                     contact: str, channel: str, payload: dict[str, Any], now: float) -> None:
    conn.execute(
        "INSERT INTO alert_notifications (store, alert_id, kind, contact, channel, payload,"
        " created_at, state, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
        (store, alert_id, kind, contact, channel, json.dumps(payload, separators=(",", ":")),
         now, now))


def claim_due(conn: sql.Connection, now: float, worker: str, lease_s: float,
              limit: int) -> list[sql.Row]:
    """Take up to `limit` due notifications for this worker for `lease_s` (another worker
    takes them over if this one dies mid-send)."""
    return outbox.claim_due(conn, NOTIFICATIONS, now, worker, lease_s, limit)


def release(conn: sql.Connection, ids: Iterable[int]) -> None:
    outbox.release(conn, NOTIFICATIONS, ids)


def record_attempt(conn: sql.Connection, notification_id: int, worker: str, at: float,
                   ok: bool, status_code: int | None, error: str | None, duration_s: float,
                   retry_at: float | None) -> int:
    """Log one attempt and settle the notification (`outbox.record_attempt`)."""
    return outbox.record_attempt(conn, NOTIFICATIONS, "alert_deliveries", notification_id,
                                 worker, at, ok, status_code, error, duration_s, retry_at)


# ---------------------------------------------------------------- acknowledgement and reads


class AckError(CloudError, ValueError):
    """An acknowledgement refused; `str()` is English for the API, `reason` the same
    words for a person (a `Message`, rendered in the reader's language)."""

    def __init__(self, reason: Message) -> None:
        super().__init__(str(reason))
        self.reason = reason


class CorrectiveActionRequired(AckError):
    """A critical alert is acknowledged only with the corrective action taken: the HACCP
    record of a critical excursion must say what was done about it."""


def acknowledge(conn: sql.Connection, store: str, alert_id: str, by: str,
                corrective_action: str, via: str, now: float) -> bool:
    """Record who acknowledged, when and what they did; False if there is no such alert.

    A critical alert needs a corrective action (`CorrectiveActionRequired`); a warning may
    be acknowledged without one. A later acknowledgement (a second person, a fuller
    corrective action) is recorded too and becomes the current one; the reminder timer
    restarts from it.
    """
    by, corrective_action = by.strip(), corrective_action.strip()
    if not by or len(by) > MAX_BY:
        raise AckError(Message(N_("by: required, at most %(n)s characters"), {"n": MAX_BY}))
    if len(corrective_action) > MAX_ACTION:
        raise AckError(Message(N_("corrective_action: at most %(n)s characters"),
                               {"n": MAX_ACTION}))
    row = conn.execute("SELECT severity FROM alerts WHERE store = ? AND id = ?",
                       (store, alert_id)).fetchone()
    if row is None:
        return False
    if row["severity"] == "critical" and not corrective_action:
        raise CorrectiveActionRequired(Message(N_(
            "corrective_action: required for a critical alert; say what was done"
            " (e.g. stock moved to another fridge, technician called)")))
    cur = conn.execute(
        "UPDATE alerts SET acked_by = ?, acked_at = ?, corrective_action = ?, updated_at = ?"
        " WHERE store = ? AND id = ?", (by, now, corrective_action, now, store, alert_id))
    if cur.rowcount == 0:
        return False
    conn.execute("INSERT INTO alert_acks (store, alert_id, \"by\", at, corrective_action, via)"
                 " VALUES (?, ?, ?, ?, ?, ?)", (store, alert_id, by, now, corrective_action, via))
    return True


def alert_dict(row: sql.Row) -> dict[str, Any]:
    d = {k: row[k] for k in ALERT_FIELDS}
    d["data"] = json.loads(d["data"])
    d["late"] = bool(d["late"])
    d["key"] = f"{row['store']}/{row['id']}"
    return d


def list_alerts(conn: sql.Connection, store: str, *, state: str = "active",
                limit: int = 1000) -> list[dict[str, Any]]:
    """A store's alerts, newest first; `state` active or all."""
    sql = f"SELECT {', '.join(ALERT_FIELDS)} FROM alerts WHERE store = ?"
    if state == "active":
        sql += " AND state = 'active'"
    sql += " ORDER BY started_at DESC, id LIMIT ?"
    return [alert_dict(r) for r in conn.execute(sql, (store, limit))]


def get_alert(conn: sql.Connection, store: str, alert_id: str) -> dict[str, Any] | None:
    """One alert with its acknowledgements, notifications and delivery attempts."""
    row = conn.execute(f"SELECT {', '.join(ALERT_FIELDS)} FROM alerts"
                       " WHERE store = ? AND id = ?", (store, alert_id)).fetchone()
    if row is None:
        return None
    d = alert_dict(row)
    d["acks"] = [dict(r) for r in conn.execute(
        "SELECT \"by\", at, corrective_action, via FROM alert_acks"
        " WHERE store = ? AND alert_id = ?"
        " ORDER BY id", (store, alert_id))]
    notes = []
    for r in conn.execute(
            "SELECT id, kind, contact, channel, created_at, state, attempts, delivered_at,"
            " last_error FROM alert_notifications WHERE store = ? AND alert_id = ? ORDER BY id",
            (store, alert_id)):
        n = dict(r)
        n["deliveries"] = [dict(x) | {"ok": bool(x["ok"])} for x in conn.execute(
            "SELECT attempt, at, worker, ok, status_code, error, duration_s"
            " FROM alert_deliveries WHERE notification_id = ? ORDER BY attempt", (r["id"],))]
        notes.append(n)
    d["notifications"] = notes
    return d
