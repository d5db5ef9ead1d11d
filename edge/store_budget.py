"""Disk-budget steps of the edge store: drop confirmed history, compact old readings.

Split out of `edge.store`: `EdgeStore.enforce_budget` decides when and in what order;
these functions do the SQL on its connection, each step in one transaction.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from edge.store_schema import Transaction


def drop_confirmed_history(db: sqlite3.Connection, limit: int) -> int:
    """Delete up to `limit` records per table that left the outbox, oldest first."""
    removed = 0
    with Transaction(db):
        for table, kind in (("readings", "readings"), ("events", "events")):
            cur = db.execute(
                f"DELETE FROM {table} WHERE (device, boot, seq) IN ("  # table: one of two names
                f"SELECT t.device, t.boot, t.seq FROM {table} t WHERE NOT EXISTS ("
                "SELECT 1 FROM outbox o WHERE o.kind=? AND o.device=t.device AND "
                "o.boot=t.boot AND o.seq=t.seq) ORDER BY t.wall LIMIT ?)",
                (kind, limit),
            )
            removed += cur.rowcount
    return removed


def compact_oldest(db: sqlite3.Connection, bucket_s: float) -> tuple[int, int]:
    """Aggregate the oldest run of pending raw readings of one device within one time
    bucket (device time) into a single row; returns (readings replaced, rows made).

    Only readings never handed to the network: one the cloud might hold raw would be
    counted twice, raw and inside the aggregate."""
    rows = db.execute(
        "SELECT r.device, r.boot, r.seq, r.fseq, r.dev_ms, r.wall, r.synced, r.probes, "
        "r.dev_boot FROM outbox o JOIN readings r ON r.device=o.device AND "
        "r.boot=o.boot AND r.seq=o.seq WHERE o.kind='readings' AND r.seq_last IS NULL "
        "AND o.published_at IS NULL AND o.sent=0 "
        "ORDER BY r.wall, r.device, r.boot, r.seq LIMIT 5000"
    ).fetchall()
    if not rows:
        return 0, 0
    bucket_ms = int(bucket_s * 1000)
    # Runs of consecutive seqs of one stream within one bucket, oldest first. A lone
    # reading (its neighbours sent or compacted already) must not stop the others.
    runs: list[list[Any]] = []
    open_run: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:
        stream = (row[0], row[1], row[8])
        current = open_run.get(stream)
        if (current is not None and row[2] == current[-1][2] + 1
                and row[4] // bucket_ms == current[0][4] // bucket_ms):
            current.append(row)
        else:
            open_run[stream] = [row]
            runs.append(open_run[stream])
    run = next((r for r in runs if len(r) >= 2), None)
    if run is None:
        # Nothing left to gain in these buckets: try making the buckets coarser.
        if bucket_s < 86400:
            return compact_oldest(db, bucket_s * 6)
        return 0, 0
    first = run[0]
    stats: dict[int, list[float]] = {}
    counts: dict[int, int] = {}
    for row in run:
        for index, status, celsius in json.loads(row[7]):
            counts[index] = counts.get(index, 0) + 1
            if status == "ok" and celsius is not None:
                stats.setdefault(index, []).append(float(celsius))
    agg_probes: list[list[float | int | None]] = []
    summary_probes: list[list[object]] = []
    for index in sorted(counts):
        values = stats.get(index, [])
        if values:
            mean = round(sum(values) / len(values), 4)
            agg_probes.append([index, min(values), mean, max(values), len(values),
                               counts[index]])
            summary_probes.append([index, "ok", mean])
        else:
            agg_probes.append([index, None, None, None, 0, counts[index]])
            summary_probes.append([index, "missing", None])
    last = run[-1]
    agg = {"count": len(run), "dev_ms_last": last[4], "wall_last": last[5],
           "fseq_last": last[3], "probes": agg_probes}
    device, boot, seq_first = first[0], first[1], first[2]
    with Transaction(db):
        db.execute(
            "UPDATE readings SET probes=?, seq_last=?, agg=?, synced=? "
            "WHERE device=? AND boot=? AND seq=?",
            (json.dumps(summary_probes), last[2], json.dumps(agg),
             int(all(r[6] for r in run)), device, boot, seq_first),
        )
        db.execute(
            "DELETE FROM readings WHERE device=? AND boot=? AND seq > ? AND seq <= ?",
            (device, boot, seq_first, last[2]),
        )
        db.execute(
            "DELETE FROM outbox WHERE kind='readings' AND device=? AND boot=? "
            "AND seq > ? AND seq <= ?",
            (device, boot, seq_first, last[2]),
        )
    return len(run), 1
