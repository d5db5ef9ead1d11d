"""What a resident is told about an order: a pre-order's arrival, pickup open, reminder,
short line and refund; an order from the shelf ready for pickup or on its way, and its
reminder.

One row per notice in `resident_notices`, written in the transaction of what caused it
(a store's receipt: `supply/receiving.py`; a store's progress on an order: `on_progress`,
from `retail_events`; the scheduler's pickup reminders: `remind`)
under a unique `key`, so a redelivered event or a job run twice never tells twice. The
row keeps the order, the kind and the numbers of the notice (params, JSON), never the
resident's phone number: the text is rendered when it is read or sent, in the reader's
language (`Notice.text`), times in the zone's own time zone.

Each row is also the outbox of its delivery (cloud_gateway/outbox.py): `pending` when the
order belongs to a resident (`resident_orders`), `unsent` otherwise (a pre-order placed by
the CLI has nobody to tell). `resident_notice_sender.py` sends the pending ones through
Apprise to a channel derived from the phone number at sending time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from xiaodian.i18n import DEFAULT_LOCALE, DEFAULT_TZ, LOCALES, N_, Message, Translator

from . import sql

if TYPE_CHECKING:
    from .supply.cycles import Schedule

SCHEMA = """
-- A notice to the resident of an order (resident_notices.py); key: one notice per event
-- (kind, order and what it is about). Also the outbox of its delivery (outbox.py):
-- state pending, delivered, failed, unsent (the order has no resident to tell).
CREATE TABLE IF NOT EXISTS resident_notices (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    order_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    claimed_by TEXT,
    claimed_until DOUBLE PRECISION,
    delivered_at DOUBLE PRECISION,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS resident_notices_by_order ON resident_notices (order_id, id);
CREATE INDEX IF NOT EXISTS resident_notices_due
    ON resident_notices (next_attempt_at) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS resident_notice_attempts (
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
CREATE INDEX IF NOT EXISTS resident_notice_attempts_by_notice
    ON resident_notice_attempts (notification_id, attempt);
"""
TABLES = ("resident_notices", "resident_notice_attempts")
OUTBOX, ATTEMPTS = "resident_notices", "resident_notice_attempts"

ARRIVED = "arrived"  # the store received the delivery: ready for pickup
WINDOW_OPEN = "window_open"  # the pickup window of the delivery day opened
REMINDER = "reminder"  # the window closes soon and the order is still there
SHORT = "short"  # a line came short (short, damaged, expired, wrong item)
REFUND = "refund"  # the amount of what did not come, refunded
# At the cutoff (supply/cutoff.py): a pre-order moved to another store of the zone, one
# cancelled (its store's fridge cannot take chilled goods and no other store could), a
# pre-sale line cancelled (its wave's total stayed under the item's minimum).
MOVED = "moved"
CANCELLED = "cancelled"
LINE_CANCELLED = "line_cancelled"
# An order from the shelf (not riding a wave): the store has it and holds its goods, or,
# for a delivery, it left the store.
READY = "ready"
ON_ITS_WAY = "on_its_way"
KINDS = (ARRIVED, WINDOW_OPEN, REMINDER, SHORT, REFUND, MOVED, CANCELLED, LINE_CANCELLED,
         READY, ON_ITS_WAY)

TEXTS = {
    ARRIVED: N_("Order No. %(order)s has arrived at %(store)s: pick it up from %(opens)s"
                " to %(closes)s."),
    WINDOW_OPEN: N_("Order No. %(order)s: pickup at %(store)s is open now, until"
                    " %(closes)s."),
    REMINDER: N_("Order No. %(order)s is still waiting at %(store)s: pickup closes at"
                 " %(closes)s."),
    SHORT: N_("Order No. %(order)s: %(qty)s of %(name)s did not arrive (%(why)s)."),
    REFUND: N_("Order No. %(order)s: %(amount)s refunded for what did not arrive."),
    MOVED: N_("Order No. %(order)s is now collected at %(to)s instead of %(from)s:"
              " %(reason)s."),
    CANCELLED: N_("Order No. %(order)s is cancelled, nothing is charged: %(reason)s."),
    LINE_CANCELLED: N_("Order No. %(order)s: %(name)s is cancelled, fewer than %(min)s"
                       " were pre-ordered in all; nothing is charged for it."),
    READY: N_("Order No. %(order)s is ready at %(store)s: pick it up by %(closes)s."),
    ON_ITS_WAY: N_("Order No. %(order)s has left %(store)s and is on its way to you."),
}
TITLE = N_("Your order")
PHONE_FIELD = "{phone}"
ISSUES = {"short": N_("missing"), "damaged": N_("damaged"), "expired": N_("expired on"
          " arrival"), "wrong_item": N_("wrong item delivered")}


@dataclass(frozen=True)
class Notice:
    """A notice as the resident's page shows it; `text(t)` in the reader's language."""

    id: int
    order_id: int
    kind: str
    params: Mapping[str, Any]
    created_at: float
    state: str  # of its delivery: pending, delivered, failed, unsent

    def message(self, t: Translator) -> Message:
        p = dict(self.params)
        tz = str(p.get("tz", DEFAULT_TZ))
        for k in ("opens", "closes"):
            if isinstance(p.get(k), int | float):
                p[k] = t.time(float(p[k]), tz)
        if "amount_fen" in p:
            p["amount"] = t.money(int(p["amount_fen"]))
        if "issues" in p:
            p["why"] = t.gettext("; ").join(t.gettext(ISSUES.get(i, i)) for i in p["issues"])
        if "reason" in p:
            from .supply.why_text import why_message

            p["reason"] = t.render(why_message(str(p["reason"])))
        return Message(TEXTS[self.kind], p)

    def text(self, t: Translator) -> str:
        return t.render(self.message(t))

    def title(self, t: Translator) -> str:
        return t.gettext(TITLE)


FIELDS = "id, order_id, kind, params, created_at, state"


def notice_of(r: Any) -> Notice:
    """A row of (FIELDS) as a Notice."""
    return Notice(int(r[0]), int(r[1]), str(r[2]), json.loads(r[3]), float(r[4]), str(r[5]))


def add(conn: sql.Connection, order_id: int, kind: str, about: str,
        params: Mapping[str, Any], now: float) -> bool:
    """Write a notice unless this one (kind, order, `about`) was written before; whether
    it was new. In the caller's transaction."""
    if kind not in KINDS:
        raise ValueError(f"kind: one of {', '.join(KINDS)}")
    has_resident = conn.execute("SELECT 1 FROM resident_orders WHERE order_id = ?",
                                (order_id,)).fetchone() is not None
    cur = conn.execute(
        "INSERT INTO resident_notices (key, order_id, kind, params, created_at, state,"
        " next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
        (f"{kind}:{order_id}:{about}", order_id, kind,
         json.dumps(dict(params, order=order_id), ensure_ascii=False, separators=(",", ":")),
         now, "pending" if has_resident else "unsent", now))
    return int(cur.rowcount) == 1


def for_order(conn: sql.Connection, order_id: int) -> list[Notice]:
    """An order's notices, oldest first."""
    return [notice_of(r) for r in conn.execute(
        f"SELECT {FIELDS} FROM resident_notices WHERE order_id = ? ORDER BY id", (order_id,))]


def for_resident(conn: sql.Connection, resident: int, limit: int = 100) -> list[Notice]:
    """A resident's notices over all their orders, newest first."""
    return [notice_of(r) for r in conn.execute(
        f"SELECT {FIELDS} FROM resident_notices WHERE order_id IN"
        " (SELECT order_id FROM resident_orders WHERE resident = ?)"
        " ORDER BY created_at DESC, id DESC LIMIT ?", (resident, limit))]


def order_params(conn: sql.Connection, store: str, wave: date,
                 schedule: Schedule) -> dict[str, Any]:
    """The common numbers of an order's notice: the store's name, the pickup window."""
    from . import stores

    opens, closes = schedule.pickup_window(wave)
    return {"store": stores.get(conn, store).name, "opens": opens, "closes": closes,
            "tz": schedule.tz}


def on_progress(conn: sql.Connection, store: str, order_id: int, state: str,
                now: float) -> bool:
    """The notice a store's progress on a resident's order from the shelf calls for, in
    the ingest transaction: `received` of a pickup order (the store holds its goods: ready),
    `out_for_delivery`; whether one was written. Pre-orders are told by their wave instead
    (arrived, pickup open, reminder), as their goods come with it."""
    if state not in ("received", "out_for_delivery"):
        return False
    row = conn.execute(
        "SELECT o.mode, o.expires FROM orders o JOIN resident_orders r ON r.order_id = o.id"
        " WHERE o.id = ? AND NOT EXISTS (SELECT 1 FROM wave_orders w"
        " WHERE w.order_id = o.id)", (order_id,)).fetchone()
    if row is None or (state == "received" and row[0] != "pickup"):
        return False
    return add(conn, order_id, READY if state == "received" else ON_ITS_WAY, state,
               _shelf_params(conn, store, float(row[1])), now)


def _shelf_params(conn: sql.Connection, store: str, expires: float) -> dict[str, Any]:
    from . import stores

    profile = stores.get(conn, store)
    return {"store": profile.name, "closes": expires, "tz": profile.tz}


# ---------------------------------------------------------------- delivery settings


@dataclass(frozen=True)
class NoticeSettings:
    """The `[resident_notices]` table of the cloud config."""

    apprise_template: str = ""  # "" = shown on the resident's page only, not sent
    lang: str = DEFAULT_LOCALE  # residents keep no language: zh_CN unless set
    interval_s: float = 5.0
    batch: int = 50
    retry_initial_s: float = 30.0
    retry_max_s: float = 1800.0
    max_attempts: int = 8
    max_age_s: float = 6 * 3600.0

    def __post_init__(self) -> None:
        t = self.apprise_template
        if t and ("://" not in t or PHONE_FIELD not in t):
            raise ValueError("apprise_template: an Apprise URL with {phone} in it, e.g."
                             " json://sms.example.com/send/{phone}")
        if self.lang not in LOCALES:
            raise ValueError(f"lang: one of {', '.join(LOCALES)}")
        if not 0.05 <= self.interval_s <= 3600.0:
            raise ValueError("interval_s: must be between 0.05 and 3600 seconds")
        if not 1 <= self.batch <= 10_000:
            raise ValueError("batch: must be between 1 and 10000")
        if not 0.01 <= self.retry_initial_s <= self.retry_max_s <= 86400.0:
            raise ValueError("retry_initial_s: must be between 0.01 and retry_max_s (<= 86400)")
        if not 1 <= self.max_attempts <= 1000:
            raise ValueError("max_attempts: must be between 1 and 1000")
        if not 60.0 <= self.max_age_s <= 7 * 86400.0:
            raise ValueError("max_age_s: must be between 60 and 604800 seconds")

    @property
    def enabled(self) -> bool:
        return bool(self.apprise_template)

    def channel(self, phone: str) -> str:
        # A plain replace, not str.format: the rest of the URL may hold braces.
        return self.apprise_template.replace(PHONE_FIELD, phone)


# ---------------------------------------------------------------- pickup reminders


def remind(conn: sql.Connection, now: float, before_s: float) -> int:
    """The pickup notices due now, in the caller's transaction; how many were new.

    For every pre-order still riding a wave whose goods are at the store (the store's
    receipt is in, or the wave is marked delivered) and not yet handed over: when its
    pickup window opens, that it is open (unless its arrival notice, written inside the
    window, said so already); `before_s` before it closes, a reminder. Past the window
    nothing: the order expires and the store puts the goods back or to waste.
    """
    from .supply import settings

    since = (datetime.fromtimestamp(now, UTC).date() - timedelta(days=14)).isoformat()
    rows = conn.execute(
        "SELECT w.order_id, w.zone, w.wave, w.store FROM wave_orders w"
        " JOIN orders o ON o.id = w.order_id"
        " JOIN supply_cycles c ON c.zone = w.zone AND c.wave = w.wave"
        " WHERE w.outcome IN ('held', 'moved') AND o.state IN ('open', 'received')"
        " AND w.wave >= ? AND (c.state = 'delivered' OR EXISTS (SELECT 1 FROM manifests m"
        " JOIN manifest_receipts r ON r.manifest = m.id WHERE m.zone = w.zone"
        " AND m.wave = w.wave AND m.store = w.store)) ORDER BY w.order_id",
        (since,)).fetchall()
    schedules: dict[str, Schedule] = {}
    made = 0
    for oid, zone, wave_s, store in rows:
        if zone not in schedules:
            schedules[zone] = settings.get_zone(conn, zone)
        wave = date.fromisoformat(wave_s)
        opens, closes = schedules[zone].pickup_window(wave)
        if not opens <= now < closes:
            continue
        params = order_params(conn, store, wave, schedules[zone])
        told_open = conn.execute(
            "SELECT 1 FROM resident_notices WHERE order_id = ? AND kind = ? AND"
            " created_at >= ?", (oid, ARRIVED, opens)).fetchone() is not None
        if not told_open:
            made += add(conn, int(oid), WINDOW_OPEN, wave_s, params, now)
        if now >= closes - before_s:
            made += add(conn, int(oid), REMINDER, wave_s, params, now)
    # Orders from the shelf waiting at the store: a reminder `before_s` before their
    # pickup code and hold end (the order's expiry), once.
    for oid, store, expires in conn.execute(
            "SELECT o.id, o.store, o.expires FROM orders o JOIN resident_orders r"
            " ON r.order_id = o.id WHERE o.state = 'received' AND o.mode = 'pickup'"
            " AND o.expires > ? AND o.expires <= ? AND NOT EXISTS (SELECT 1 FROM"
            " wave_orders w WHERE w.order_id = o.id) ORDER BY o.id",
            (now, now + before_s)).fetchall():
        made += add(conn, int(oid), REMINDER, "expiry",
                    _shelf_params(conn, str(store), float(expires)), now)
    return made
