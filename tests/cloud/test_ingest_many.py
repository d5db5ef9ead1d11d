"""Many messages per transaction (`ingest_many`): each message's outcome and receipt as if
alone, duplicates across the group counted once, a bad one parked, all or nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cloud_gateway import sql
from cloud_gateway.db import Database
from cloud_gateway.ingest import Message, ingest_many
from xiaodian.wire import compact, payloads

T0 = 1_780_000_000.0


def _readings(seqs: range) -> list[dict[str, object]]:
    return [payloads.reading_record(s, s, 10_000 * s, T0 + 10 * s, True,
                                    [(0, "ok", 3.0625), (1, "ok", 4.0)]) for s in seqs]


def _json(store: str, seqs: range) -> Message:
    return Message(f"xd/v1/{store}/telemetry",
                   payloads.batch_payload("readings", store, "fridge-1", 1, _readings(seqs)),
                   T0 + 100)


def _bundle(store: str, seqs: range) -> Message:
    door = payloads.event_record(1, "door", 1, 5, T0, True, {"open": True})
    body = compact.bundle_payload(store, [("readings", "fridge-1", 1, _readings(seqs)),
                                          ("events", "fridge-1", 1, [door])])
    return Message(f"xd/v1/{store}/bundle", body, T0 + 101, compact.CONTENT_TYPE)


def test_a_group_counts_and_receipts_each_message(db_target: Path | str) -> None:
    garbage = Message("xd/v1/store-001/bundle", b"\x21junk", T0 + 102, compact.CONTENT_TYPE)
    group = [_json("store-001", range(1, 6)), _bundle("store-001", range(4, 9)), garbage,
             _json("store-001", range(1, 6)), _json("store-002", range(1, 3))]
    with Database.open(db_target) as db:
        out = ingest_many(db, group, "w1")
        rows = db.conn.execute("SELECT store, seq FROM readings ORDER BY store, seq").fetchall()
        events = db.count("events")
        parked = db.conn.execute("SELECT reason FROM dead_letters").fetchall()
        open_gaps = db.gaps(state="open")
    assert [(o.action, o.inserted, o.duplicates) for o in out] == [
        ("stored", 5, 0), ("stored", 4, 2), ("parked", 0, 0), ("stored", 0, 5),
        ("stored", 2, 0)]
    assert [tuple(r) for r in rows] == [("store-001", s) for s in range(1, 9)] + [
        ("store-002", 1), ("store-002", 2)]
    assert events == 1 and len(parked) == 1 and "deflate" in parked[0][0]
    assert not open_gaps
    # Receipts in the format each message came in, naming every record it carried.
    json_receipt, bundle_receipt = out[0].receipt, out[1].receipt
    assert json_receipt is not None and bundle_receipt is not None
    assert json_receipt.content_type is None
    assert payloads.parse_receipts(json_receipt.topic, json_receipt.payload)[0].ranges == (
        (1, 5),)
    assert bundle_receipt.content_type == compact.CONTENT_TYPE
    entries = compact.parse_receipts(bundle_receipt.topic, bundle_receipt.payload)
    assert {(e.kind, e.ranges) for e in entries} == {("readings", ((4, 8),)),
                                                    ("events", ((1, 1),))}


def test_a_group_is_all_or_nothing(tmp_path: Path) -> None:
    """A commit that fails stores nothing of the group (none is acknowledged); the retry
    stores each record once."""
    path = tmp_path / "cloud.sqlite3"
    group = [_json("store-001", range(1, 4)), _bundle("store-002", range(1, 4))]
    with Database.open(path, busy_timeout_s=0.2) as db:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock past our timeout
        try:
            with pytest.raises(sql.ERRORS):
                ingest_many(db, group, "w1")
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
    with Database.open(path) as db:
        assert db.count("readings") == 0 and db.count("events") == 0
        out = ingest_many(db, group + group, "w1")
        assert [(o.inserted, o.duplicates) for o in out] == [(3, 0), (4, 0), (0, 3), (0, 4)]
        assert db.count("readings") == 6
