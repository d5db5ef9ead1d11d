"""Parking one bad event of a stored batch: the batch stays stored (its receipt goes out),
the event it carried that the cloud cannot act on is kept in dead_letters with why, in the
caller's transaction, for an operator to look at (`xiaodian cloud dead-letters`)."""

from __future__ import annotations

import json

from xiaodian.wire.payloads import Event

from . import sql


def park_event(conn: sql.Connection, store: str, device: str, boot: int, event: Event,
               why: Exception, worker: str, received_at: float) -> None:
    reason = f"{event.type} event {device}/{boot}/{event.seq}: {why}"
    record = json.dumps({"seq": event.seq, "type": event.type, "wall": event.wall,
                         "data": event.data}, separators=(",", ":")).encode()
    conn.execute(
        "INSERT INTO dead_letters (topic, payload, reason, worker, received_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (f"xd/v1/{store}/events", record, reason, worker, received_at))
