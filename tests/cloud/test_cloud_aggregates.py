"""Readings the edge compacted under disk pressure: stored apart, and they close the gap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cloud_gateway.db import Database
from xiaodian.wire import payloads

TOPIC = "xd/v1/store-001/telemetry"


def _raw(seq: int) -> dict[str, Any]:
    return payloads.reading_record(seq, seq, seq * 10_000, 1.7e9 + seq * 10, True,
                                   [(0, "ok", 3.0), (1, "ok", 3.5)])


def _aggregate(first: int, last: int) -> dict[str, Any]:
    rec = payloads.reading_record(first, first, first * 10_000, 1.7e9 + first * 10, True,
                                  [(0, "ok", 3.25), (1, "ok", 3.5)])
    n = last - first + 1
    rec["seq_last"] = last
    rec["agg"] = {"count": n, "dev_ms_last": last * 10_000, "wall_last": 1.7e9 + last * 10,
                  "fseq_last": last, "probes": [[0, 2.5, 3.25, 4.0, n, n],
                                                [1, 3.5, 3.5, 3.5, n, n]]}
    return rec


def _store(db: Database, records: list[dict[str, Any]]) -> tuple[int, int]:
    batch = payloads.parse(TOPIC, payloads.batch_payload("readings", "store-001", "fridge-1",
                                                         1, records))
    assert isinstance(batch, payloads.Batch)
    return db.store_batch(batch, received_at=1.7e9 + 5000)


def test_an_aggregate_overlapping_raw_readings_leaves_no_gap(db_target: Path | str) -> None:
    db = Database.open(db_target)  # SQLite and PostgreSQL (conftest.db_target)
    with db:
        # Raw 1-10 arrived before the outage (the edge never got their receipt), then the
        # edge compacted 5-100 and raw 101-102 followed.
        assert _store(db, [_raw(s) for s in range(1, 11)]) == (10, 0)
        assert _store(db, [_aggregate(5, 100), _raw(101), _raw(102)]) == (3, 0)
        assert _store(db, [_aggregate(5, 100)]) == (0, 1)  # redelivered: kept once
        assert db.gaps("store-001", state="open") == []
        rows = db.conn.execute(
            "SELECT seq_first, seq_last, count, probes FROM reading_aggregates").fetchall()
        assert [tuple(r)[:3] for r in rows] == [(5, 100, 96)]
        # Means are never passed off as measurements: the raw table holds only raw readings.
        assert db.count("readings") == 12


def test_a_bad_aggregate_is_refused_with_its_reason() -> None:
    bad = _aggregate(5, 100)
    bad["agg"]["count"] = 7
    try:
        payloads.parse(TOPIC, payloads.batch_payload("readings", "store-001", "fridge-1", 1,
                                                     [bad]))
    except payloads.PayloadError as exc:
        assert "count" in str(exc)
    else:
        raise AssertionError("an aggregate whose count does not match its seqs was accepted")


def test_a_raw_reading_arriving_after_its_aggregate_is_not_counted_twice(
    db_target: Path | str,
) -> None:
    db = Database.open(db_target)
    with db:
        # The edge compacted 1-100 and sent the aggregate; a raw copy of 50 it had handed
        # to the broker earlier (its PUBACK lost) is delivered afterwards.
        assert _store(db, [_aggregate(1, 100)]) == (1, 0)
        assert _store(db, [_raw(50), _raw(101)]) == (1, 1)
        assert db.count("readings") == 1  # only 101: 50 is inside the aggregate already
        stream = db.conn.execute("SELECT max_seq, records FROM streams").fetchone()
        assert tuple(stream) == (101, 101)  # every seq counted once
        assert db.gaps("store-001", state="open") == []
