"""Where each fridge boot's device clock sits on the terminal's clock, kept across restarts.

The rule engine judges event time: a record's device time (`dev_ms`) placed on the wall
clock through an anchor taken when the first record of that device boot arrived. Kept in
the outbox file's `meta` table, so a restarted agent replays stored records onto the same
time line and an alert keeps its id (its id holds its start time): recomputed from
another record, the anchor moved by the milliseconds between two arrivals and the alert
was raised a second time.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

Anchor = tuple[float, int]  # (terminal wall time, device ms) of one record
AnchorKey = tuple[str, int]  # (device, device boot)

_PREFIX = "anchor:"


def load(db: sqlite3.Connection) -> dict[AnchorKey, Anchor]:
    anchors: dict[AnchorKey, Anchor] = {}
    for (value,) in db.execute(
        "SELECT value FROM meta WHERE key >= ? AND key < ?", (_PREFIX, _PREFIX + "\uffff")
    ):
        try:
            device, boot, wall, dev_ms = json.loads(value)
            anchors[(str(device), int(boot))] = (float(wall), int(dev_ms))
        except (ValueError, TypeError):
            continue  # an unreadable row: that boot's anchor is taken again, as before
    return anchors


def save(db: sqlite3.Connection, anchors: Iterable[tuple[AnchorKey, Anchor]]) -> None:
    """Insert new anchors; an anchor, once kept, never changes."""
    rows = [(f"{_PREFIX}{device}/{boot}", json.dumps([device, boot, wall, dev_ms]))
            for (device, boot), (wall, dev_ms) in anchors]
    if rows:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)", rows)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
