"""Ingest, one message at a time: parse, commit (or park), and say what to acknowledge.

`ingest()` is the batch handling the worker's database thread runs for each message, and
what the tests call directly; `cloud_gateway.ingest` owns the threads and the MQTT session
around it and re-exports these names.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from xiaodian.wire import compact
from xiaodian.wire.payloads import (
    Batch,
    PayloadError,
    ReceiptEntry,
    State,
    parse,
    receipts_payload,
    seq_ranges,
)
from xiaodian.wire.payloads import topic as topic_of

from . import commands
from .alerts import store as alert_store
from .clock import ClockPolicy
from .db import Database
from .db.writes import DEFAULT_POLICY

JSON_CONTENT_TYPE = "application/json"  # version 1 may say so; most send no content type
COUNTER_NAMES = (
    "received",  # messages delivered by the broker (including refused ones)
    "stored",  # records inserted
    "duplicates",  # records already present (replays, redeliveries)
    "states",  # state (birth/death) messages applied
    "parked",  # messages moved to dead_letters
    "acked",  # PUBACKs sent
    "queue_full",  # messages left unacknowledged because the queue was full
    "receipts",  # confirmations published to stores after a commit
    "stale_acks",  # acks dropped because their connection was gone (message redelivered)
    "db_errors",  # database failures (retried; the message is not acked meanwhile)
    "connects",  # successful CONNACKs
    "resyncs",  # reconnects made to get refused messages redelivered
    "results",  # command answers recorded (answered or refused)
    "expired",  # commands marked expired by the sweep
)


def subscriptions(group: str) -> list[str]:
    """Telemetry and events are shared among the workers; state goes to every worker."""
    return [
        f"$share/{group}/xd/v1/+/telemetry",
        f"$share/{group}/xd/v1/+/events",
        f"$share/{group}/xd/v1/+/alerts",
        f"$share/{group}/xd/v1/+/health",
        f"$share/{group}/xd/v1/+/{compact.LEAF}",
        f"$share/{group}/xd/v1/+/cmd/res",
        "xd/v1/+/state",
    ]


# ---------------------------------------------------------------- pure-ish core


class Receipt(NamedTuple):
    """What to publish once the commit is done: the store may forget those records."""

    topic: str
    payload: bytes
    content_type: str | None = None  # the format the message came in


@dataclass(frozen=True)
class Outcome:
    action: Literal["stored", "state", "parked", "result"]
    inserted: int = 0
    duplicates: int = 0
    reason: str = ""
    # For a stored batch: the confirmation the edge waits for before it forgets the records
    # (every record of the batch, new or duplicate, is now committed here).
    receipt: Receipt | None = None
    alerts: int = 0  # alerts whose cloud state this message changed


@dataclass(frozen=True)
class Message:
    """One message as the broker delivered it, for `ingest_many`."""

    topic: str
    payload: bytes
    received_at: float
    content_type: str | None = None  # MQTT 5 Content Type: compact.CONTENT_TYPE or none
    retained: bool = False
    correlation: bytes | None = None


def ingest(
    db: Database,
    topic: str,
    payload: bytes,
    worker: str,
    received_at: float,
    *,
    retained: bool = False,
    policy: ClockPolicy = DEFAULT_POLICY,
    correlation: bytes | None = None,
    content_type: str | None = None,
) -> Outcome:
    """Parse one message and commit it (or park it). Database errors propagate: retry later.

    `received_at` is when the broker handed the message over (not when the database thread
    got to it): it is the cloud side of every clock sample. `correlation` is the MQTT 5
    Correlation Data (command answers carry the command id in it).
    """
    message = Message(topic, payload, received_at, content_type, retained, correlation)
    return ingest_many(db, [message], worker, policy=policy)[0]


def _parse(message: Message) -> tuple[Batch, ...] | State | str:
    """The records of a data message, a state message, or why it is refused."""
    try:
        if message.content_type == compact.CONTENT_TYPE:
            return compact.parse_bundle(message.topic, message.payload)
        if message.content_type not in (None, "", JSON_CONTENT_TYPE):
            return f"unknown content type {message.content_type!r}"
        msg = parse(message.topic, message.payload)
    except PayloadError as exc:
        return str(exc)
    return msg if isinstance(msg, State) else (msg,)


def ingest_many(db: Database, messages: Sequence[Message], worker: str, *,
                policy: ClockPolicy = DEFAULT_POLICY) -> list[Outcome]:
    """Commit many messages in ONE transaction and say, per message, what to acknowledge.

    Data messages (telemetry, events, alerts, health, compact bundles) and the refused ones
    (parked with their reason) share the transaction: one commit, one fsync, and per stream
    one lock, one dedupe and one gap update for all its messages. Nothing is acknowledged
    before that commit; if it fails, none is, and the caller retries them all. State
    messages and command answers keep a transaction each (every worker sees each state;
    answers lock commands). Database errors propagate.
    """
    outcomes: list[Outcome | None] = [None] * len(messages)
    parsed: list[tuple[int, tuple[Batch, ...]]] = []
    refused: list[tuple[int, str]] = []
    for i, m in enumerate(messages):
        if m.topic.endswith("/cmd/res"):
            answer = commands.record_result(db, m.topic, m.payload, m.correlation, worker,
                                            m.received_at)
            if answer.action == "parked":
                outcomes[i] = Outcome("parked", reason=answer.reason)
            else:
                outcomes[i] = Outcome("result", inserted=int(answer.action != "duplicate"),
                                      duplicates=int(answer.action == "duplicate"),
                                      reason=answer.action)
            continue
        result = _parse(m)
        if isinstance(result, str):
            refused.append((i, result))
        elif isinstance(result, State):
            db.store_state(result, m.received_at, retained=m.retained, policy=policy)
            outcomes[i] = Outcome("state")
        else:
            parsed.append((i, result))
    if parsed or refused:
        items = [(b, messages[i].received_at) for i, batches in parsed for b in batches]
        with db.transaction(exclusive=False) as conn:
            for i, reason in refused:
                db.park_in(conn, messages[i].topic, messages[i].payload, reason, worker,
                           messages[i].received_at)
                outcomes[i] = Outcome("parked", reason=reason)
            counts = db.store_batches(conn, items, worker=worker, policy=policy) if items else []
        k = 0
        for i, batches in parsed:
            mine = counts[k:k + len(batches)]
            k += len(batches)
            outcomes[i] = _stored(db, messages[i], batches, mine)
    done = [o for o in outcomes if o is not None]
    assert len(done) == len(messages)
    return done


def _stored(db: Database, message: Message, batches: tuple[Batch, ...],
            counts: list[tuple[int, int]]) -> Outcome:
    # Alert changes, after the batch's commit: a crash in between leaves the message unacked,
    # and applying a change twice changes nothing (cloud_gateway/alerts/model.py).
    alerts = 0
    for batch in batches:
        if changes := alert_store.alert_changes(batch):
            with db.transaction() as conn:
                alerts += alert_store.apply_changes(conn, changes, message.received_at)
    # An aggregate stands for seq..seq_last: the receipt says so, or the edge keeps it.
    entries = []
    for batch in batches:
        covered = [s for r in batch.records
                   for s in range(r.seq, (getattr(r, "seq_last", None) or r.seq) + 1)]
        entries.append(ReceiptEntry(batch.kind, batch.device, batch.boot,
                                    tuple(seq_ranges(covered))))
    store = batches[0].store
    if message.content_type == compact.CONTENT_TYPE:
        body, content_type = compact.receipts_payload(store, entries), compact.CONTENT_TYPE
    else:
        body, content_type = receipts_payload(store, entries), None
    receipt = Receipt(topic_of(store, "receipts"), body, content_type)
    return Outcome("stored", sum(c[0] for c in counts), sum(c[1] for c in counts),
                   receipt=receipt, alerts=alerts)


class Counters:
    """Thread-safe counters, read by the HTTP API."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(COUNTER_NAMES, 0)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)
