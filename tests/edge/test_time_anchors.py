"""A restarted agent puts device time on the same wall-clock line as the run before it."""

from __future__ import annotations

import sqlite3

from edge import time_anchors
from edge.alerting import Alerting
from edge.rules.engine import RuleEngine
from edge.store import NewEvent, NewReading


def _db() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    return db


def _reading(dev_ms: int, wall: float) -> NewReading:
    return NewReading("fridge-1", dev_ms // 1000, dev_ms, wall, True,
                      [(0, "ok", 4.0), (1, "ok", 4.0)], 7)


def test_kept_anchors_give_the_same_event_times_after_a_restart() -> None:
    db = _db()
    first = Alerting(RuleEngine({}))
    # A HELLO carries device time but the engine never judges it: it takes no anchor.
    first.feed([NewEvent("fridge-1", "hello", None, 5, 1000.0, True, {}, 7),
                _reading(10, 1000.004), _reading(60_010, 1060.009)])
    time_anchors.save(db, first.take_new_anchors())
    before = first.event_time("fridge-1", 7, 60_010, 0.0)
    assert before == 1000.004 + 60.0

    again = Alerting(RuleEngine({}))
    again.restore_anchors(time_anchors.load(db))
    # The replay's first record is another one, stamped a few ms off: the time line holds.
    again.feed([_reading(60_010, 1060.009)])
    assert again.event_time("fridge-1", 7, 60_010, 0.0) == before
    assert again.take_new_anchors() == []


def test_an_anchor_once_kept_never_changes() -> None:
    db = _db()
    time_anchors.save(db, [(("fridge-1", 1), (100.0, 0))])
    time_anchors.save(db, [(("fridge-1", 1), (200.0, 0)), (("fridge-2", 1), (300.0, 5))])
    assert time_anchors.load(db) == {("fridge-1", 1): (100.0, 0), ("fridge-2", 1): (300.0, 5)}
