"""Publishing orders, cancellations and catalogues to the stores until the broker has them.

The message is a `downlink` row, written in the same transaction as the order or the
catalogue (`cloud_gateway/retail.py`), so a crash or a broker outage between the commit and
the PUBLISH loses nothing: every pass sends the rows without a PUBACK yet, oldest first,
and marks each when the broker acknowledges it. Publishing is done like signed commands
(`commands.CommandPublisher`: a connection of its own, synchronous PUBACK), but unlike a
command an order must not be dropped when the broker is away, hence the retry.

Several workers may send the same row at once; that is harmless by contract: the store
ignores an order id it has, and a catalogue version it has. One thing needs care: the
catalogue is *retained*, and an older version landing after a newer one would be what a
new terminal gets. So a superseded row is never sent, and if an older version was
acknowledged after a newer one, the newest is sent again.

A PUBACK is not forever either: Mosquitto saves its database every `autosave_interval`
(60 s), so a broker that crashes forgets what it acknowledged since, retained catalogues and
the orders queued for offline terminals included. So whenever the publisher (re)connects,
the first pass puts back in line the current catalogue of every store and every unexpired
order (and cancellation) no store has confirmed yet: a broker that kept them loses nothing
by a second copy, one that lost them has them again within seconds, not after
`resend_open_s`. The broker may also have lost a terminal's session, with the orders it
queued; a terminal that comes back after the publisher did announces itself (its birth
message), and ingest puts that store's unconfirmed orders back in line then.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from . import retail, sql
from .commands import PublishResult
from .db import Database
from .supply import transit

log = logging.getLogger(__name__)

BATCH = 100  # rows per pass; the next pass takes the rest


class MessagePublisher(Protocol):
    connects: int  # successful connections so far; a change means a (re)connection

    def add_connect_listener(self, listener: Callable[[], None]) -> None: ...

    def publish_message(self, topic: str, payload: bytes, timeout: float, *, qos: int = 1,
                        retain: bool = False,
                        properties: Properties | None = None) -> PublishResult: ...


class DownlinkSender:
    """Sends pending downlink rows: `send_pending()` once, or a thread every `retry_s`."""

    def __init__(self, db_path: Path | str, publisher: MessagePublisher, *, retry_s: float = 5.0,
                 publish_timeout_s: float = 5.0, resend_open_s: float = 300.0,
                 now: Callable[[], float] = time.time, resync_on_connect: bool = True) -> None:
        self.db_path = db_path
        self.publisher = publisher
        self.retry_s = retry_s
        self.resend_open_s = resend_open_s
        self.publish_timeout_s = publish_timeout_s
        self._now = now
        self._pass = threading.Lock()  # one pass at a time per process
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._thread: threading.Thread | None = None
        # The publisher's `connects` the last resync was for. A one-shot sender (the CLI's)
        # leaves resyncing to the workers' long-running ones.
        self.resync_on_connect = resync_on_connect
        self._resynced_connects = 0
        if resync_on_connect:
            publisher.add_connect_listener(self.kick)  # at once, not at the next retry

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="downlink", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        if self._thread is not None:
            self._thread.join(10)

    def kick(self) -> None:
        """Send soon (something was queued)."""
        self._kick.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.send_pending()
            except sql.ERRORS as exc:  # tried again next time
                log.warning("downlink: database error: %s", exc)
            self._kick.wait(self.retry_s)
            self._kick.clear()

    def send_pending(self) -> int:
        """One pass: publish every unacknowledged, unexpired row; how many the broker took.

        Stops at the first failure (the broker is away: the rest would fail too)."""
        with self._pass, Database.open(self.db_path) as db:
            now = self._now()
            connects = self.publisher.connects
            if self.resync_on_connect and connects != self._resynced_connects:
                with db.transaction() as conn:
                    again = resync(conn, now)
                self._resynced_connects = connects
                if again:
                    log.info("downlink: publisher (re)connected; sending %d catalogues and"
                             " unconfirmed orders again", again)
            with db.transaction() as conn:
                # The broker took it, but the store never said "received": its session may
                # be gone (a broker that lost its state, a terminal that never connected
                # before). Send it again; the store ignores an order id it has.
                conn.execute(
                    "UPDATE downlink SET published_at = NULL WHERE kind = 'order'"
                    " AND published_at < ? AND expires > ? AND ref IN"
                    " (SELECT id FROM orders WHERE state = 'open')",
                    (now - self.resend_open_s, now))
            rows = db.conn.execute(
                "SELECT id, store, kind, ref, topic, payload, retain, expires FROM downlink"
                " WHERE published_at IS NULL AND (expires IS NULL OR expires > ?)"
                " ORDER BY id LIMIT ?", (now, BATCH)).fetchall()
            sent = 0
            for r in rows:
                props = None
                if r["expires"] is not None:
                    # An order nobody collected in time is worthless to the store: let the
                    # broker drop it rather than hand a stale order to a terminal back late.
                    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                    props.MessageExpiryInterval = max(1, math.ceil(r["expires"] - now))
                result = self.publisher.publish_message(
                    r["topic"], bytes(r["payload"]), self.publish_timeout_s, qos=1,
                    retain=bool(r["retain"]), properties=props)
                with db.transaction() as conn:
                    if result.status == "acked":
                        conn.execute("UPDATE downlink SET published_at = ?, attempts ="
                                     " attempts + 1, last_error = NULL WHERE id = ?",
                                     (self._now(), r["id"]))
                        if r["kind"] == "catalogue":
                            _resend_newer_catalogue(conn, r["store"], r["ref"])
                    else:
                        conn.execute("UPDATE downlink SET attempts = attempts + 1,"
                                     " last_error = ? WHERE id = ?",
                                     (f"{result.status}: {result.detail}"[:200], r["id"]))
                if result.status != "acked":
                    log.warning("downlink: %s %s for %s not published yet (%s: %s)",
                                r["kind"], r["ref"], r["store"], result.status, result.detail)
                    if result.status == "not_sent":
                        break  # no connection: the rest would fail the same way
                    continue  # this one was refused or unconfirmed: the others may go

                sent += 1
                log.info("downlink: %s %s published to %s", r["kind"], r["ref"], r["store"])
            return sent


def resync(conn: sql.Connection, now: float) -> int:
    """Put back in line what a broker may have lost: the current catalogue of every store,
    every unexpired order and cancellation of an order no store has confirmed (still
    `open`, or cancelled before its expiry), and the manifests of the waves on their way
    (supply/dispatch.py). Returns how many rows."""
    cur = conn.execute(
        "UPDATE downlink SET published_at = NULL, last_error = NULL WHERE kind = 'catalogue'"
        " AND published_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM downlink n"
        " WHERE n.store = downlink.store AND n.kind = 'catalogue' AND (n.ref > downlink.ref"
        " OR (n.ref = downlink.ref AND n.id > downlink.id)))")
    return (int(cur.rowcount) + retail.requeue_unconfirmed(conn, now)
            + transit.requeue_in_transit(conn))


def _resend_newer_catalogue(conn: sql.Connection, store: str, version: int) -> None:
    newest = conn.execute(
        "SELECT id, ref FROM downlink WHERE store = ? AND kind = 'catalogue'"
        " ORDER BY ref DESC, id DESC LIMIT 1", (store,)).fetchone()
    if newest is not None and newest[1] > version:
        conn.execute("UPDATE downlink SET published_at = NULL, last_error = NULL WHERE id = ?",
                     (newest[0],))


def pending(db: Database) -> int:
    return int(db.conn.execute("SELECT COUNT(*) FROM downlink WHERE published_at IS NULL"
                               ).fetchone()[0])
