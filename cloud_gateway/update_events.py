"""The `update` events of a batch, checked on the way in (inside its transaction).

An `update` report's `reasons` (the terminal's own update: why it was rolled back, ...) is
parsed as strictly as any message (xiaodian.wire.update_reasons). One that does not parse
is parked in dead_letters with its identity and the reason, and the event itself is kept
as it came: its state and result are what the rollout counts (cloud_gateway/rollouts.py),
and its `detail` still says in English what the reasons would have said.
"""

from __future__ import annotations

from collections.abc import Iterable

from xiaodian.wire import update_reasons
from xiaodian.wire.payloads import Event

from . import sql
from .dead_letters import park_event


def check_events(conn: sql.Connection, store: str, device: str, boot: int,
                 events: Iterable[Event], received_at: float, worker: str) -> int:
    """Park a copy of each new `update` event whose reasons do not parse; how many."""
    parked = 0
    for e in events:
        if e.type != "update":
            continue
        try:
            update_reasons.reasons_of(e.data)
        except update_reasons.PayloadError as exc:
            park_event(conn, store, device, boot, e, exc, worker, received_at)
            parked += 1
    return parked
