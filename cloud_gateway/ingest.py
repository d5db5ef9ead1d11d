"""Ingest worker: MQTT messages in, database rows out, acknowledged only after the commit.

Two threads, each owning one thing:

- the network thread owns the paho client. It runs its own select() loop (paho's external
  loop API) so it can also wake on a socket pair when the database thread has acks for it;
  `on_message` only puts the message on a bounded queue. It reconnects forever with jittered
  back-off, resuming the broker session (clean_start=False, Session Expiry Interval), so a
  restarted worker gets what the broker queued for it.
- the database thread owns the database connection: it takes the queue's head and whatever
  is queued behind it (up to `ingest_group_max`, never waiting for more), parses and commits
  them in one transaction (`ingest_many`), then hands each (mid, qos) and receipt back to
  the network thread, which sends the PUBACKs in order. It also marks unanswered commands
  expired every `command_sweep_interval_s`.

Command answers (`cmd/res`) take the same path as telemetry: recorded (or parked) in one
commit, then acked; `cloud_gateway/commands.py` matches them by Correlation Data.

Overflow policy: when the queue is full a message is counted (`queue_full`) and left
unacknowledged. MQTT 5 forbids the broker to resend on the same connection, so once the
queue has drained the worker reconnects; the broker then redelivers what was not acked.

One piece on purpose, though just over 500 lines: the two threads hand messages and acks to
each other through state only this class owns (the queue, the ack pipe, the counters the
metrics read); what each message means is already in `ingest_core` and `db`.

Acks are tagged with the connection they belong to; an ack from an earlier connection is
dropped (the broker redelivers that message, the database ignores the copy). Sending it on
a new connection could acknowledge a different message that reused the packet id.

The per-message handling (`ingest`, `Outcome`, `Counters`, `subscriptions`) lives in
`cloud_gateway.ingest_core` and is re-exported here; this module is the two threads.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from xiaodian.backoff import Backoff
from xiaodian.mqtt import MqttSettings, describe_tls_error, new_client

from . import commands, residents, sql
from . import retail as retail_store
from .alerts.notifier import AlertService
from .config import CloudSettings
from .db import Database, partitions
from .ingest_core import (
    COUNTER_NAMES,
    Counters,
    Message,
    Outcome,
    Receipt,
    ingest,
    ingest_many,
    subscriptions,
)

__all__ = ["COUNTER_NAMES", "Counters", "IngestWorker", "Message", "Outcome", "ingest",
           "ingest_many", "subscriptions"]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- the worker


@dataclass(frozen=True)
class _Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received_at: float
    generation: int  # which connection delivered it
    retained: bool
    correlation: bytes | None = None
    content_type: str | None = None


class IngestWorker:
    def __init__(
        self,
        mqtt_settings: MqttSettings,
        settings: CloudSettings,
        *,
        now: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        alerts: AlertService | None = None,
    ) -> None:
        self.mqtt_settings = mqtt_settings
        self.alerts = alerts  # escalation ticks run on the database thread
        self._alert_changes = 0  # of the last commit (db thread)
        self.settings = settings
        self.worker_id = settings.worker_id
        self.counters = Counters()
        self._clock_policy = settings.clock_policy
        self._now = now
        self._rand = rand
        self._inbox: queue.Queue[_Inbound] = queue.Queue(maxsize=settings.queue_size)
        # Unbounded, but holds at most one entry per message taken from the bounded inbox.
        self._acks: queue.SimpleQueue[tuple[int, int, int, Receipt | None]] = (
            queue.SimpleQueue()
        )
        self._working: float | None = None  # received_at of the message being committed
        self._next_partition_sweep = 0.0  # time.monotonic(): at the first sweep
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = threading.Event()
        self._db_done = threading.Event()
        self._subscribed = threading.Event()
        self._backoff = Backoff(
            mqtt_settings.reconnect_min_s, mqtt_settings.reconnect_max_s, rand=rand
        )
        # Network-thread state (never touched by other threads).
        self._generation = 0
        self._outstanding = 0  # messages of this connection queued but not yet acked
        self._resync_wanted = False
        self._accepted = False  # CONNACK with success seen on this connection
        self._started = False
        self._last_paho_error = ""
        self._threads = [
            threading.Thread(target=self._run_network, name=f"{self.worker_id}-mqtt", daemon=True),
            threading.Thread(target=self._run_db, name=f"{self.worker_id}-db", daemon=True),
        ]

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._started:
            raise RuntimeError("an IngestWorker can be started once")
        # Create the schema before anything arrives, so the HTTP API can read at once.
        try:
            Database.open(self.settings.database).close()
        except sql.ERRORS:
            self._wake_r.close()
            self._wake_w.close()
            raise
        self._started = True
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the queued messages, ack them, disconnect (the session stays on the broker)."""
        self._stopping.set()
        if not self._started:
            return
        self._wake()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            log.warning("ingest worker %s did not stop within %.1f s", self.worker_id, timeout)
            return
        self._wake_r.close()
        self._wake_w.close()
        log.info("ingest worker %s stopped: %s", self.worker_id, self.counters.snapshot())

    def alive(self) -> bool:
        return all(t.is_alive() for t in self._threads)

    def wait_subscribed(self, timeout: float) -> bool:
        """True once the broker has granted the subscriptions (used by tests and `cloud run`)."""
        return self._subscribed.wait(timeout)

    def status(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "subscribed": self._subscribed.is_set(),
            "queue_depth": self._inbox.qsize(),
            "lag_s": self._lag(),
            "queue_size": self.settings.queue_size,
            **self.counters.snapshot(),
        }

    def _lag(self) -> float:
        """How long the oldest message received but not yet committed has waited (0 with
        none): the one being committed (a database retrying), else the queue's head."""
        with self._inbox.mutex:  # a peek; the queue's own lock keeps it consistent
            head = self._inbox.queue[0].received_at if self._inbox.queue else None
        oldest = self._working if self._working is not None else head
        return 0.0 if oldest is None else max(0.0, self._now() - oldest)

    def _wake(self) -> None:
        # BlockingIOError: the buffer is full, so it is awake already; OSError: shutting down.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    # ------------------------------------------------------------ database thread

    def _run_db(self) -> None:
        try:
            db = self._open_db()
            if db is None:
                return
            with db:
                next_sweep = time.monotonic()
                while True:
                    if time.monotonic() >= next_sweep:
                        self._sweep(db)
                        next_sweep = time.monotonic() + self.settings.command_sweep_interval_s
                    if self.alerts is not None:
                        self.alerts.maybe_tick(db, force=self._alert_changes > 0)
                        self._alert_changes = 0
                    try:
                        group = [self._inbox.get(timeout=0.2)]
                    except queue.Empty:
                        if self._stopping.is_set():
                            return
                        continue
                    # Whatever else is already queued joins this commit (never waited for:
                    # a lone message is committed at once).
                    while len(group) < self.settings.ingest_group_max:
                        try:
                            group.append(self._inbox.get_nowait())
                        except queue.Empty:
                            break
                    self._working = group[0].received_at
                    try:
                        outcomes = self._commit(db, group)
                        if outcomes is None:
                            return  # stopping while the database was failing: left unacked
                    finally:
                        self._working = None
                    for item, outcome in zip(group, outcomes, strict=True):
                        self._acks.put((item.generation, item.mid, item.qos, outcome.receipt))
                    self._wake()
        except Exception:
            log.exception("ingest database thread of %s failed", self.worker_id)
            raise
        finally:
            self._db_done.set()
            self._wake()

    def _sweep(self, db: Database) -> None:
        try:
            n = commands.expire_overdue(db, self._now(), self.settings.command_expiry_grace_s)
            # Orders past their expiry: the reservation ended already (retail.availability
            # looks at `expires`); this only makes the state say so.
            with db.transaction() as conn:
                retail_store.expire_orders(conn, self._now())
            # Old one-time codes, ended sessions, residents left with nothing (privacy.md).
            with db.transaction() as conn:
                gone = residents.purge(conn, self._now())
            if any(gone.values()):
                log.info("resident data purged: %s", gone)
        except sql.ERRORS as exc:  # tried again at the next interval
            self.counters.add("db_errors")
            log.warning("command expiry sweep failed: %s", exc)
            return
        if n:
            self.counters.add("expired", n)
            log.info("%d command(s) expired without an answer", n)
        if time.monotonic() >= self._next_partition_sweep:
            # Monthly partitions ahead, retention behind (db/partitions.py): hourly is
            # plenty for months, and a failed pass is tried again at the next interval.
            try:
                partitions.sweep(db, self._now(), self.settings.readings_retention_days,
                                 self.worker_id)
                self._next_partition_sweep = (time.monotonic()
                                              + self.settings.partition_sweep_interval_s)
            except sql.ERRORS as exc:
                self.counters.add("db_errors")
                log.warning("partition sweep failed: %s", exc)

    def _open_db(self) -> Database | None:
        retry = Backoff(0.05, 2.0, rand=self._rand)
        while True:
            try:
                return Database.open(self.settings.database)
            except sql.ERRORS as exc:
                self.counters.add("db_errors")
                delay = retry.next_delay()
                log.warning("cannot open %s, retrying in %.2f s: %s",
                            sql.describe(self.settings.database), delay, exc)
                if self._stopping.wait(delay):
                    return None

    def _commit(self, db: Database, group: list[_Inbound]) -> list[Outcome] | None:
        """Commit a group of messages (one transaction, `ingest_many`), retrying the whole
        group on database errors; None when stopping while the database kept failing."""
        retry = Backoff(0.05, 2.0, rand=self._rand)
        messages = [Message(i.topic, i.payload, i.received_at, i.content_type, i.retained,
                            i.correlation) for i in group]
        while True:
            try:
                outcomes = ingest_many(db, messages, self.worker_id, policy=self._clock_policy)
            except sql.ERRORS as exc:
                self.counters.add("db_errors")
                delay = retry.next_delay()
                log.warning("database error on %s (+%d more), retrying in %.2f s: %s",
                            group[0].topic, len(group) - 1, delay, exc)
                if self._stopping.wait(delay):
                    return None
                continue
            for item, outcome in zip(group, outcomes, strict=True):
                self._count(item, outcome)
            return outcomes

    def _count(self, item: _Inbound, outcome: Outcome) -> None:
        if outcome.action == "parked":
            self.counters.add("parked")
            log.warning("parked a message on %s: %s", item.topic, outcome.reason)
        elif outcome.action == "state":
            self.counters.add("states")
        elif outcome.action == "result":
            self.counters.add("results", outcome.inserted)
            self.counters.add("duplicates", outcome.duplicates)
        else:
            self.counters.add("stored", outcome.inserted)
            self.counters.add("duplicates", outcome.duplicates)
        self._alert_changes += outcome.alerts

    # ------------------------------------------------------------ network thread

    def _run_network(self) -> None:
        try:
            while not self._stopping.is_set():
                client = self._connect()
                if client is None:
                    delay = self._backoff.next_delay()
                    self._stopping.wait(delay)
                    continue
                ended = self._session(client)
                if ended == "lost" and not self._accepted:
                    log.error(
                        "broker %s:%d closed the connection before accepting us: %s",
                        self.mqtt_settings.host,
                        self.mqtt_settings.port,
                        self._refusal_reason(),
                    )
                if ended == "resync":
                    continue  # reconnect at once: the broker redelivers the refused messages
                if ended == "lost" and not self._stopping.is_set():
                    delay = self._backoff.next_delay()
                    log.warning("connection to broker lost; reconnecting in %.1f s", delay)
                    self._stopping.wait(delay)
        except Exception:
            log.exception("ingest network thread of %s failed", self.worker_id)
            raise

    def _connect(self) -> mqtt.Client | None:
        s = self.mqtt_settings
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho
        props.SessionExpiryInterval = self.settings.session_expiry_s
        # Without it the broker may push up to 65535 unacknowledged messages at us, far more
        # than the inbox holds; the excess then waits at the broker, under its queue limit.
        props.ReceiveMaximum = max(1, min(self.settings.queue_size, 200))
        try:
            # A new client per connection: no paho state leaks from a dead connection, and a
            # renewed certificate on disk is picked up.
            client = new_client(s, self.worker_id, manual_ack=True)
            client.on_log = self._on_log
            self._generation += 1
            self._outstanding = 0
            self._resync_wanted = False  # a new connection gets every unacked message anyway
            self._accepted = False
            self._last_paho_error = ""
            self._subscribed.clear()
            generation = self._generation
            client.on_connect = self._on_connect
            client.on_subscribe = self._on_subscribe
            client.on_disconnect = self._on_disconnect
            client.on_message = lambda c, u, m: self._on_message(m, generation)
            client.connect(s.host, s.port, s.keepalive, clean_start=False, properties=props)
        except ssl.SSLError as exc:
            log.error("cannot connect to %s:%d: %s", s.host, s.port, describe_tls_error(exc))
            return None
        except OSError as exc:  # refused, unreachable, DNS, missing TLS file
            log.warning("cannot connect to %s:%d: %s", s.host, s.port, exc)
            return None
        return client

    def _session(self, client: mqtt.Client) -> Literal["lost", "resync", "stopped"]:
        generation = self._generation
        while True:
            sock = client.socket()
            if sock is None:
                return "lost"
            self._send_acks(client, generation)
            if self._stopping.is_set() and self._db_done.is_set():
                self._send_acks(client, generation)
                client.disconnect()  # flushes the acks queued before it, then closes
                return "stopped"
            if self._resync_wanted and self._outstanding == 0:
                self._resync_wanted = False
                self.counters.add("resyncs")
                log.info("queue drained; reconnecting to get refused messages redelivered")
                client.disconnect()
                return "resync"
            # Publishing the acks above may have found the connection broken, and paho then
            # closes the socket: select() on its fd of -1 raised and killed the worker.
            sock = client.socket()
            if sock is None or sock.fileno() < 0:
                return "lost"
            pending = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
            wlist = [sock] if client.want_write() else []
            readable, writable, _ = select.select(
                [sock, self._wake_r], wlist, [], 0.0 if pending else 1.0
            )
            if self._wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(4096)
            if (sock in readable or pending) and client.loop_read() != mqtt.MQTT_ERR_SUCCESS:
                return "lost"
            if sock in writable and client.loop_write() != mqtt.MQTT_ERR_SUCCESS:
                return "lost"
            if client.loop_misc() != mqtt.MQTT_ERR_SUCCESS:
                return "lost"

    def _send_acks(self, client: mqtt.Client, generation: int) -> None:
        while True:
            try:
                gen, mid, qos, receipt = self._acks.get_nowait()
            except queue.Empty:
                return
            if receipt is not None:
                # Committed, whatever happens to the ack: tell the store it may forget them.
                props = None
                if receipt.content_type:
                    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                    props.ContentType = receipt.content_type
                client.publish(receipt.topic, receipt.payload, qos=1, properties=props)
                self.counters.add("receipts")
            if gen != generation:
                self.counters.add("stale_acks")
                continue
            self._outstanding -= 1
            if qos > 0:
                client.ack(mid, qos)
                self.counters.add("acked")

    # Callbacks run on the network thread, inside loop_read(): no blocking here.

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        self._accepted = True
        self._backoff.reset()
        self.counters.add("connects")
        log.info(
            "connected to %s:%d as %s (session present: %s)",
            self.mqtt_settings.host,
            self.mqtt_settings.port,
            self.worker_id,
            flags.session_present,
        )
        opts = SubscribeOptions(qos=1)
        client.subscribe([(t, opts) for t in subscriptions(self.settings.shared_group)])

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.error("broker refused subscriptions: %s", ", ".join(refused))
            return
        self._subscribed.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._subscribed.clear()
        if reason.is_failure:
            log.warning("disconnected from broker: %s", reason)

    def _on_log(self, client: mqtt.Client, userdata: Any, level: int, text: str) -> None:
        if level == mqtt.MQTT_LOG_ERR:
            self._last_paho_error = text
        log.debug("paho: %s", text)

    def _refusal_reason(self) -> str:
        text = self._last_paho_error
        if not text:
            return "no reason given (is this client allowed by the broker?)"
        # With TLS 1.3 the broker's verdict on our certificate arrives after the handshake,
        # as an alert on the first read; paho only reports it as text.
        if "SSL" in text or "alert" in text or "EOF occurred" in text:
            return describe_tls_error(ssl.SSLError(text))
        return text

    def _on_message(self, msg: mqtt.MQTTMessage, generation: int) -> None:
        self.counters.add("received")
        if self._stopping.is_set():
            return  # not acked: the broker keeps it for our next session
        item = _Inbound(
            msg.topic,
            bytes(msg.payload),
            msg.mid,
            msg.qos,
            self._now(),
            generation,
            bool(msg.retain),
            _correlation_data(msg),
            _content_type(msg),
        )
        try:
            self._inbox.put_nowait(item)
        except queue.Full:
            self.counters.add("queue_full")
            if not self._resync_wanted:
                log.warning(
                    "ingest queue full (%d); leaving messages unacknowledged",
                    self.settings.queue_size,
                )
            self._resync_wanted = True
            return
        self._outstanding += 1


def _correlation_data(msg: mqtt.MQTTMessage) -> bytes | None:
    props = msg.properties
    value = getattr(props, "CorrelationData", None) if props is not None else None
    return bytes(value) if value is not None else None


def _content_type(msg: mqtt.MQTTMessage) -> str | None:
    props = msg.properties
    value = getattr(props, "ContentType", None) if props is not None else None
    return str(value) if value else None
