"""Compare what the simulator sent with what the edge stored and the cloud kept.

A reading is identified at the source by (device, dev_ms): the device's own clock never
repeats within one simulator run. Its frame sequence number and probe values must arrive
unchanged. Used by `xiaodian demo --json` and by the end-to-end tests.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

Key = tuple[str, int]  # (device, dev_ms)
Value = tuple[int, tuple[tuple[int, str, float | None], ...]]  # (fseq, probes)


def _probes(raw: list[Any]) -> tuple[tuple[int, str, float | None], ...]:
    return tuple((int(i), str(s), None if c is None else float(c)) for i, s, c in raw)


def _truth_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a last line cut short by a kill
    return out


def truth_readings(path: Path) -> dict[Key, Value]:
    """Every reading a simulated fridge took (and logged for delivery)."""
    return {
        (rec["device"], int(rec["dev_ms"])): (int(rec["fseq"]), _probes(rec["probes"]))
        for rec in _truth_lines(path)
        if rec.get("kind") == "temp"
    }


def truth_not_handed_over(path: Path) -> set[Key]:
    """Readings lost to a full device log, or still on the device when the simulator
    stopped: taken, but never offered to the edge."""
    return {
        (rec["device"], int(rec["dev_ms"]))
        for rec in _truth_lines(path)
        if (rec.get("kind") == "log_overflow" and rec.get("lost") == "temp")
        or (rec.get("kind") == "on_device_at_exit" and rec.get("held") == "temp")
    }


def _rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        con.execute("PRAGMA busy_timeout=5000")
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def edge_readings(db: Path) -> list[tuple[Key, Value]]:
    rows = _rows(db, "SELECT device, dev_ms, fseq, probes FROM readings")
    return [((d, int(ms)), (int(f), _probes(json.loads(p)))) for d, ms, f, p in rows]


def cloud_readings(db: Path, store: str) -> list[tuple[Key, Value]]:
    rows = _rows(db, "SELECT device, dev_ms, fseq, probes FROM readings WHERE store=?", (store,))
    return [((d, int(ms)), (int(f), _probes(json.loads(p)))) for d, ms, f, p in rows]


def cloud_aggregate_spans(db: Path, store: str) -> dict[str, list[tuple[int, int]]]:
    """Per device, the device-time spans the cloud holds as compacted aggregates."""
    try:
        rows = _rows(db, "SELECT device, dev_ms_first, dev_ms_last FROM reading_aggregates "
                         "WHERE store=?", (store,))
    except sqlite3.OperationalError:  # a database from before aggregates existed
        rows = []
    spans: dict[str, list[tuple[int, int]]] = {}
    for device, first, last in rows:
        spans.setdefault(device, []).append((int(first), int(last)))
    return spans


def compare(truth: Path, edge_db: Path, cloud_db: Path, store: str) -> dict[str, dict[str, int]]:
    """Per device: emitted (readings taken), stored at the edge, stored in the cloud,
    on_device (never handed over: still in the device's log at the end, or pushed out of a
    full log: the simulator says which), compacted (not there as a reading but inside an
    aggregate the edge made under disk pressure), missing (none of these: lost on the way),
    duplicated, and altered (present but with a different sequence number or values)."""
    sent = truth_readings(truth)
    held = truth_not_handed_over(truth)
    spans = cloud_aggregate_spans(cloud_db, store)

    def compacted(k: Key) -> bool:
        return any(a <= k[1] <= b for a, b in spans.get(k[0], ()))
    edge = edge_readings(edge_db)
    cloud = cloud_readings(cloud_db, store)
    devices = sorted({k[0] for k in sent} | {k[0] for k, _ in edge} | {k[0] for k, _ in cloud})
    cloud_count = Counter(k for k, _ in cloud)
    cloud_value = dict(cloud)
    summary: dict[str, dict[str, int]] = {}
    for device in devices:
        mine = {k: v for k, v in sent.items() if k[0] == device}
        summary[device] = {
            "emitted": len(mine),
            "edge_stored": sum(1 for k, _ in edge if k[0] == device),
            "cloud_stored": sum(1 for k, _ in cloud if k[0] == device),
            "on_device": sum(1 for k in mine if k in held and k not in cloud_value),
            "compacted": sum(1 for k in mine if k not in cloud_value and compacted(k)),
            "missing": sum(
                1 for k in mine if k not in cloud_value and k not in held and not compacted(k)
            ),
            "duplicated": sum(n - 1 for k, n in cloud_count.items() if k[0] == device and n > 1),
            "altered": sum(1 for k, v in mine.items() if k in cloud_value and cloud_value[k] != v),
            "unexpected": sum(1 for k, _ in cloud if k[0] == device and k not in mine),
        }
    return summary
