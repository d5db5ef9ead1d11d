"""Hourly vitals per fridge: read the hour's records from the edge database, compute
(`edge/vitals.py`), and put one `vitals` event per fridge and hour into the outbox.

An hour is reported REPORT_DELAY_S after it ends: a pull-down that began in its last
minutes ends in the next one, and records a fridge kept in its log while its cable was out
arrive late. Which hour each fridge last reported is kept in the `meta` table, written in
the same transaction as the event, so a restart neither skips nor repeats an hour (the cloud
would keep the first copy anyway). A terminal that was off for longer reports at most
CATCH_UP_HOURS back.

The serial link's counters live only in the running reader, so the agent hands in a
snapshot at each hour boundary (`mark`); an hour whose two ends were not both seen by this
run of the agent goes without `link`.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from edge import time_anchors
from edge.store import EdgeStore, NewEvent
from edge.vitals import PULLDOWN_MAX_S, LinkCounters, Rec, hour_vitals, link_health
from xiaodian.wire.health import HEALTH_DEVICE, HOUR_S, LinkHealth

REPORT_DELAY_S = PULLDOWN_MAX_S + 60.0
LOOKBACK_S = 6 * 3600.0  # state at the hour's start: the longest defrost or door-open run
CATCH_UP_HOURS = 48
_META = "vitals:"


def utc_hour(t: float) -> int:
    return math.floor(t / HOUR_S)


def _note_reported(fridge: str, hour: int) -> Callable[[sqlite3.Connection], None]:
    """Run in the event's own transaction: reported exactly when the event is stored."""
    def note(db: sqlite3.Connection) -> None:
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                   (_META + fridge, str(hour)))
    return note


class VitalsJob:
    def __init__(self, store: EdgeStore, fridges: list[str]) -> None:
        self.store = store
        self.fridges = fridges
        self.marks: dict[str, dict[int, LinkCounters]] = {f: {} for f in fridges}
        self._done: dict[str, int] = {}  # last hour reported, as in `meta`

    def mark(self, now: float, stats: Callable[[str], Mapping[str, Any]]) -> None:
        """Keep each fridge's link counters at the start of the current hour (the first call
        in an hour stands for its start) and forget marks older than a few hours."""
        hour = utc_hour(now)
        for f in self.fridges:
            marks = self.marks[f]
            if hour not in marks:
                marks[hour] = LinkCounters.of(stats(f))
            for old in [h for h in marks if h < hour - 3]:
                del marks[old]

    def run(self, now: float, synced: bool) -> int:
        """Report every hour that is due and not yet reported; how many records were added."""
        due = utc_hour(now - REPORT_DELAY_S) - 1  # the newest hour that is over and settled
        added = 0
        for f in self.fridges:
            last = self._last(f)
            if last is None:  # first run: from the hour the agent started in
                last = utc_hour(now) - 1
                self._set_last(f, last)
            first = max(last + 1, due - CATCH_UP_HOURS + 1)
            for hour in range(first, due + 1):
                vitals = hour_vitals(f, hour, self._records(f, hour), self._link(f, hour))
                data = msgspec.to_builtins(vitals)
                self.store.add([NewEvent(HEALTH_DEVICE, "vitals", None, None, now, synced,
                                         data)], extra=_note_reported(f, hour))
                self._done[f] = hour
                added += 1
        return added

    # ------------------------------------------------------------ reading the database

    def _last(self, fridge: str) -> int | None:
        if fridge in self._done:
            return self._done[fridge]
        row = self.store.db.execute("SELECT value FROM meta WHERE key = ?",
                                    (_META + fridge,)).fetchone()
        if row is not None:
            self._done[fridge] = int(row[0])
        return None if row is None else int(row[0])

    def _set_last(self, fridge: str, hour: int) -> None:
        self._done[fridge] = hour
        with self.store.db:
            self.store.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                                  (_META + fridge, str(hour)))

    def _link(self, fridge: str, hour: int) -> LinkHealth | None:
        marks = self.marks.get(fridge, {})
        if hour in marks and hour + 1 in marks:
            return link_health(marks[hour], marks[hour + 1])
        return None

    def _records(self, fridge: str, hour: int) -> list[Rec]:
        """The fridge's records whose event time is near the hour. Event time is never much
        before the terminal's receipt time, so the query is by receipt time (`wall`) from
        the lookback on; a backlog received later is included."""
        db = self.store.db
        start = hour * HOUR_S - LOOKBACK_S
        end = (hour + 1) * HOUR_S + PULLDOWN_MAX_S
        anchors = time_anchors.load(db)
        out: list[Rec] = []

        def at(dev_boot: int | None, dev_ms: int | None, wall: float) -> float:
            anchor = anchors.get((fridge, dev_boot)) if dev_boot is not None else None
            if anchor is None or dev_ms is None:
                return wall
            return anchor[0] + (dev_ms - anchor[1]) / 1000.0

        for dev_boot, dev_ms, wall, probes in db.execute(
            "SELECT dev_boot, dev_ms, wall, probes FROM readings WHERE device = ?"
            " AND wall >= ? AND seq_last IS NULL", (fridge, start)
        ):
            t = at(dev_boot, dev_ms, wall)
            if start <= t < end:
                out.append(Rec(t, "temp", {"probes": json.loads(probes)}))
        rows = db.execute(
            "SELECT dev_boot, dev_ms, wall, type, data FROM events WHERE device = ?"
            " AND wall >= ? AND type IN ('door', 'compressor', 'defrost', 'power', 'hello')",
            (fridge, start)).fetchall()
        # The firmware in use may have said HELLO long before the lookback.
        rows += db.execute(
            "SELECT dev_boot, dev_ms, wall, type, data FROM events WHERE device = ?"
            " AND type = 'hello' AND wall < ? ORDER BY wall DESC LIMIT 1",
            (fridge, start)).fetchall()
        for dev_boot, dev_ms, wall, type_, data in rows:
            t = at(dev_boot, dev_ms, wall)
            if t < end:
                fields = json.loads(data)
                if type_ == "hello":  # its device time places the boot itself
                    fields["dev_ms"] = dev_ms
                out.append(Rec(t, type_, fields))
        return out
