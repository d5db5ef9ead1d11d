"""Fridge vitals in the cloud: one row per (store, fridge, UTC epoch hour), for the
technician's trends (issue #16).

The records arrive as `vitals` events of the device `health` (`xiaodian.wire.health`);
`db/writes.py` stores them in `events` like every event and, in the same transaction and
only for the copies new there, calls `apply_vitals`. The row's key is the hour itself, so a
second copy under another agent boot (a terminal that lost its note of what it reported)
does not count twice: the first one stays. Besides the whole record (`data`), the numbers a
trend draws are columns of their own.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from typing import Any

import msgspec

from xiaodian.wire.health import HEALTH_DEVICE, Vitals
from xiaodian.wire.payloads import Event

from . import sql

# A new table: CREATE TABLE IF NOT EXISTS is its migration (db/schema.py runs it on open).
SCHEMA = """
CREATE TABLE IF NOT EXISTS device_vitals (
    store TEXT NOT NULL,
    device TEXT NOT NULL,
    hour BIGINT NOT NULL,
    boot BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    duty DOUBLE PRECISION,
    defrosts INTEGER NOT NULL,
    defrost_max_s DOUBLE PRECISION,
    defrost_timeouts INTEGER NOT NULL,
    pulldown_median_s DOUBLE PRECISION,
    door_openings INTEGER NOT NULL,
    link_per_10k DOUBLE PRECISION,
    firmware TEXT,
    data TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (store, device, hour)
);
"""
TABLES = ("device_vitals",)
INSERT_SQL = (
    "INSERT INTO device_vitals (store, device, hour, boot, seq, duty, defrosts, defrost_max_s,"
    " defrost_timeouts, pulldown_median_s, door_openings, link_per_10k, firmware, data,"
    " received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (store, device, hour) DO NOTHING"
)


def apply_vitals(conn: sql.Connection, store: str, device: str, boot: int,
                 events: list[Event], received_at: float) -> int:
    """Rows for the vitals among `events` (new copies only); how many were new hours."""
    if device != HEALTH_DEVICE:
        return 0
    added = 0
    for e in events:
        if e.type != "vitals":
            continue
        v = msgspec.convert(e.data, Vitals, strict=True)  # parse() checked it already
        durations = [d.duration_s for d in v.defrosts if d.duration_s is not None]
        cur = conn.execute(INSERT_SQL, (
            store, v.fridge, v.hour, boot, e.seq, v.duty, len(v.defrosts),
            max(durations) if durations else None,
            sum(d.ended_on == "timeout" for d in v.defrosts),
            statistics.median(v.pulldowns_s) if v.pulldowns_s else None,
            v.door_openings, None if v.link is None else v.link.per_10k, v.firmware,
            json.dumps(msgspec.to_builtins(v), separators=(",", ":")), received_at))
        added += max(cur.rowcount, 0)
    return added


@dataclass(frozen=True)
class HourRow:
    hour: int
    duty: float | None
    defrosts: int
    defrost_max_s: float | None
    defrost_timeouts: int
    pulldown_median_s: float | None
    door_openings: int
    link_per_10k: float | None
    firmware: str | None


def trend(conn: sql.Connection, store: str, device: str, since_hour: int) -> list[HourRow]:
    rows = conn.execute(
        "SELECT hour, duty, defrosts, defrost_max_s, defrost_timeouts, pulldown_median_s,"
        " door_openings, link_per_10k, firmware FROM device_vitals WHERE store = ?"
        " AND device = ? AND hour >= ? ORDER BY hour", (store, device, since_hour)).fetchall()
    return [HourRow(int(r[0]), r[1], int(r[2]), r[3], int(r[4]), r[5], int(r[6]), r[7], r[8])
            for r in rows]


def latest(conn: sql.Connection) -> dict[tuple[str, str], dict[str, Any]]:
    """Each device's newest vitals record, by (store, device)."""
    rows = conn.execute(
        "SELECT v.store, v.device, v.data FROM device_vitals v JOIN (SELECT store, device,"
        " MAX(hour) AS hour FROM device_vitals GROUP BY store, device) m ON"
        " v.store = m.store AND v.device = m.device AND v.hour = m.hour").fetchall()
    return {(r[0], r[1]): json.loads(r[2]) for r in rows}
