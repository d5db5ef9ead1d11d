"""What the cloud tells an operator's Prometheus: the ingest worker's counters and queue,
how far behind it is, and the fleet's state from the database (issue #16 point 6).

Rates are Prometheus's job: counters only ever grow (per worker process), and `rate()`
over them is the ingest rate. Gauges are read at scrape time. The page is served at
`/metrics` to operators only (`web/metrics.py` says why).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xiaodian.metrics_text import Family

from . import fleet, sql

# Worker counters (ingest_core.COUNTER_NAMES) and what each counts, for HELP.
_COUNTERS = {
    "received": "MQTT messages the broker delivered, refused ones included",
    "stored": "records inserted",
    "duplicates": "records already stored (replays, redeliveries)",
    "parked": "messages moved to dead letters",
    "acked": "PUBACKs sent after commit",
    "queue_full": "messages left unacknowledged because the queue was full",
    "receipts": "receipts published to stores after a commit",
    "db_errors": "database failures (retried)",
    "connects": "successful connections to the broker",
    "results": "command answers recorded",
}


def families(conn: sql.Connection | None, worker: Mapping[str, Any] | None,
             now: float) -> list[Family]:
    out: list[Family] = []
    if worker is not None:
        wid = str(worker.get("worker_id", ""))
        for name, text in _COUNTERS.items():
            out.append(Family(f"xiaodian_ingest_{name}_total", "counter",
                              f"Ingest worker: {text}.").add(worker.get(name), worker=wid))
        out += [
            Family("xiaodian_ingest_queue_depth", "gauge",
                   "Messages received and waiting for the database thread."
                   ).add(worker.get("queue_depth"), worker=wid),
            Family("xiaodian_ingest_queue_size", "gauge", "The queue's bound."
                   ).add(worker.get("queue_size"), worker=wid),
            Family("xiaodian_ingest_lag_seconds", "gauge",
                   "Age of the oldest message received and not yet committed (0 with none)."
                   ).add(worker.get("lag_s"), worker=wid),
            Family("xiaodian_ingest_subscribed", "gauge",
                   "1 when the broker granted the worker's subscriptions."
                   ).add(bool(worker.get("subscribed")), worker=wid),
        ]
    if conn is None:
        return out
    stores = Family("xiaodian_stores", "gauge",
                    "Stores by their terminal's state (birth message or Will).")
    for online, n in conn.execute(
            "SELECT online, COUNT(*) FROM store_state GROUP BY online").fetchall():
        stores.add(n, state="online" if online else "offline")
    names = [r[0] for r in conn.execute("SELECT store FROM store_state UNION SELECT store"
                                         " FROM streams").fetchall()]
    rows = fleet.fridges(conn, names, now)
    fridges = Family("xiaodian_fridges", "gauge", "Fridges by state: offline after"
                     f" {fleet.MISSED_BEATS} missed heartbeats of {fleet.HEARTBEAT_S:g} s.")
    fridges.add(sum(r["online"] for r in rows), state="online")
    fridges.add(sum(not r["online"] for r in rows), state="offline")
    alerts = Family("xiaodian_alerts_open", "gauge", "Active alerts by severity.")
    counts = dict(conn.execute("SELECT severity, COUNT(*) FROM alerts WHERE state = 'active'"
                               " GROUP BY severity").fetchall())
    for severity in ("warning", "critical"):
        alerts.add(counts.get(severity, 0), severity=severity)
    last = conn.execute("SELECT MAX(last_received_at) FROM streams").fetchone()[0]
    out += [
        stores, fridges, alerts,
        Family("xiaodian_data_seconds_since_last", "gauge",
               "Seconds since the newest record from any store was stored."
               ).add(None if last is None else max(0.0, now - float(last))),
        Family("xiaodian_dead_letters", "gauge", "Parked messages.").add(
            conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]),
        Family("xiaodian_data_gaps_open", "gauge", "Open gaps in the stores' record streams."
               ).add(conn.execute("SELECT COUNT(*) FROM data_gaps WHERE filled_at IS NULL"
                                  ).fetchone()[0]),
    ]
    return out
