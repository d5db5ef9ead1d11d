"""Ingest, one message at a time: parse, commit (or park), and say what to acknowledge.

`ingest()` is the batch handling the worker's database thread runs for each message, and
what the tests call directly; `cloud_gateway.ingest` owns the threads and the MQTT session
around it and re-exports these names.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

from xiaodian.wire.payloads import (
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
        f"$share/{group}/xd/v1/+/cmd/res",
        "xd/v1/+/state",
    ]


# ---------------------------------------------------------------- pure-ish core


@dataclass(frozen=True)
class Outcome:
    action: Literal["stored", "state", "parked", "result"]
    inserted: int = 0
    duplicates: int = 0
    reason: str = ""
    # For a stored batch: the confirmation the edge waits for before it forgets the records
    # (every record of the batch, new or duplicate, is now committed here).
    receipt: tuple[str, bytes] | None = None
    alerts: int = 0  # alerts whose cloud state this message changed


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
) -> Outcome:
    """Parse one message and commit it (or park it). Database errors propagate: retry later.

    `received_at` is when the broker handed the message over (not when the database thread
    got to it): it is the cloud side of every clock sample. `correlation` is the MQTT 5
    Correlation Data (command answers carry the command id in it).
    """
    if topic.endswith("/cmd/res"):
        answer = commands.record_result(db, topic, payload, correlation, worker, received_at)
        if answer.action == "parked":
            return Outcome("parked", reason=answer.reason)
        return Outcome("result", inserted=int(answer.action != "duplicate"),
                       duplicates=int(answer.action == "duplicate"), reason=answer.action)
    try:
        msg = parse(topic, payload)
    except PayloadError as exc:
        db.park(topic, payload, str(exc), worker, received_at)
        return Outcome("parked", reason=str(exc))
    if isinstance(msg, State):
        db.store_state(msg, received_at, retained=retained, policy=policy)
        return Outcome("state")
    inserted, duplicates = db.store_batch(msg, received_at, worker=worker, policy=policy)
    # Alert changes, after the batch's commit: a crash in between leaves the message unacked,
    # and applying a change twice changes nothing (cloud_gateway/alerts/model.py).
    alerts = 0
    if changes := alert_store.alert_changes(msg):
        with db.transaction() as conn:
            alerts = alert_store.apply_changes(conn, changes, received_at)
    # An aggregate stands for seq..seq_last: the receipt says so, or the edge keeps it.
    covered = [s for r in msg.records
               for s in range(r.seq, (getattr(r, "seq_last", None) or r.seq) + 1)]
    entry = ReceiptEntry(msg.kind, msg.device, msg.boot, tuple(seq_ranges(covered)))
    receipt = (topic_of(msg.store, "receipts"), receipts_payload(msg.store, [entry]))
    return Outcome("stored", inserted, duplicates, receipt=receipt, alerts=alerts)


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
