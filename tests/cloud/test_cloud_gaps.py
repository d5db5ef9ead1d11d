"""Sequence gaps: the pure planner, then the database on real SQLite files, then two writers."""

from __future__ import annotations

import itertools
import random
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_gateway import gaps
from cloud_gateway.db import Database
from cloud_gateway.gaps import Fill, GapPlan, OpenGap
from cloud_gateway.ingest import ingest
from xiaodian.wire.payloads import batch_payload, event_record, reading_record

TELEMETRY = "xd/v1/store-001/telemetry"
EVENTS = "xd/v1/store-001/events"


def readings(seqs: range | list[int], *, device: str = "fridge-1", boot: int = 1) -> bytes:
    records = [reading_record(s, s % 65536, 1000 * s, 1_700_000_000.0 + s, True,
                              [(0, "ok", 3.0), (1, "ok", 4.0)]) for s in seqs]
    return batch_payload("readings", "store-001", device, boot, records)


@pytest.fixture
def db(db_target: Path | str) -> Iterator[Database]:
    """Each test runs on SQLite and on PostgreSQL (conftest.db_target)."""
    with Database.open(db_target) as d:
        yield d


def spans(db: Database, state: str = "open") -> list[tuple[int, int]]:
    return [(g["first_missing_seq"], g["last_missing_seq"]) for g in db.gaps(state=state)]


def check_invariant(db: Database) -> None:
    """Open gaps are exactly the holes below max_seq; open and filled rows never overlap."""
    for st in db.conn.execute("SELECT store, kind, device, boot, max_seq, records FROM streams"):
        store, kind, device, boot, max_seq, records = st
        table = "readings" if kind == "readings" else "events"
        stored = [r[0] for r in db.conn.execute(
            f"SELECT seq FROM {table} WHERE store = ? AND device = ? AND boot = ?",
            (store, device, boot))]
        rows = db.conn.execute(
            "SELECT first_missing_seq, last_missing_seq, filled_at FROM data_gaps"
            " WHERE store = ? AND kind = ? AND device = ? AND boot = ?"
            " ORDER BY first_missing_seq", (store, kind, device, boot)).fetchall()
        open_rows = [(a, b) for a, b, f in rows if f is None]
        assert open_rows == gaps.holes(max_seq, stored), (kind, device, boot)
        assert max_seq == max(stored, default=0) and records == len(stored)
        for (_, last, _), (first, _, _) in itertools.pairwise(rows):
            assert last < first, "gap rows overlap"
        filled_seqs = {s for a, b, f in rows if f is not None for s in range(a, b + 1)}
        assert filled_seqs <= set(stored), "a filled gap covers a record that is not there"


# ---------------------------------------------------------------- the pure planner


def test_plan_opens_the_skipped_stretch_and_raises_max() -> None:
    assert gaps.plan(10, [], [15, 16, 17, 18, 19, 20]) == GapPlan(20, ((11, 14),), ())
    assert gaps.plan(0, [], [3, 5]) == GapPlan(5, ((1, 2), (4, 4)), ())
    assert gaps.plan(5, [], []) == GapPlan(5, (), ())


def test_plan_splits_a_gap_and_reports_what_arrived() -> None:
    plan = gaps.plan(20, [OpenGap(7, 11, 14), OpenGap(8, 30, 31)], [12, 21])
    assert plan == GapPlan(21, (), (Fill(7, ((11, 11), (13, 14)), ((12, 12),)),))
    plan = gaps.plan(20, [OpenGap(7, 11, 14)], [11, 12, 13, 14])
    assert plan.fills == (Fill(7, (), ((11, 14),)),)


def test_plan_reports_late_records_no_gap_knew_about() -> None:
    assert gaps.plan(20, [], [4, 5, 9]).untracked == ((4, 5), (9, 9))


def test_runs_and_holes() -> None:
    assert gaps.runs([9, 1, 2, 3, 7, 10, 2]) == [(1, 3), (7, 7), (9, 10)]
    assert gaps.holes(10, [2, 3, 9]) == [(1, 1), (4, 8), (10, 10)]
    assert gaps.holes(0, []) == []


# ---------------------------------------------------------------- in the database


def test_a_hole_is_an_open_gap_and_late_records_fill_it_visibly(db: Database) -> None:
    ingest(db, TELEMETRY, readings(range(1, 11)), "w1", 100.0)
    ingest(db, TELEMETRY, readings(range(15, 21)), "w1", 101.0)
    (gap,) = db.gaps()
    assert (gap["first_missing_seq"], gap["last_missing_seq"], gap["missing"]) == (11, 14, 4)
    assert (gap["kind"], gap["device"], gap["boot"], gap["state"]) == (
        "readings", "fridge-1", 1, "open")
    assert (gap["detected_at"], gap["detected_by"], gap["filled_at"]) == (101.0, "w1", None)

    ingest(db, TELEMETRY, readings([12]), "w2", 102.0)  # a redelivery, in the middle
    assert spans(db, "open") == [(11, 11), (13, 14)]
    (piece,) = db.gaps(state="filled")
    assert (piece["first_missing_seq"], piece["last_missing_seq"]) == (12, 12)
    assert (piece["filled_at"], piece["filled_by"], piece["parent_id"]) == (102.0, "w2",
                                                                            gap["id"])
    assert piece["detected_at"] == 101.0  # it has been missing since then
    check_invariant(db)

    ingest(db, TELEMETRY, readings([11, 13, 14]), "w2", 103.0)
    assert spans(db, "open") == []
    assert spans(db, "filled") == [(11, 11), (12, 12), (13, 14)]  # kept, not deleted
    assert db.open_gap_totals("store-001") == (0, 0)
    check_invariant(db)


def test_duplicates_change_nothing(db: Database) -> None:
    ingest(db, TELEMETRY, readings([1, 2, 5]), "w", 1.0)
    before = db.gaps()
    outcome = ingest(db, TELEMETRY, readings([1, 2, 5]), "w", 2.0)
    assert (outcome.inserted, outcome.duplicates) == (0, 3)
    assert db.gaps() == before and spans(db) == [(3, 4)]
    (stream,) = db.streams("store-001")
    assert (stream["max_seq"], stream["records"], stream["missing"]) == (5, 3, 2)


def test_a_new_boot_is_a_new_stream_and_the_old_tail_is_no_gap(db: Database) -> None:
    ingest(db, TELEMETRY, readings(range(1, 11), boot=1), "w", 1.0)
    # Boot 1 may have had records 11.. that never left the store: unknowable, not a gap.
    ingest(db, TELEMETRY, readings(range(1, 6), boot=2), "w", 2.0)
    assert db.gaps() == []
    ingest(db, TELEMETRY, readings([8], boot=2), "w", 3.0)
    ingest(db, TELEMETRY, readings([4], boot=3), "w", 4.0)  # boot 3 starts at seq 1 too
    assert [(g["boot"], g["first_missing_seq"], g["last_missing_seq"]) for g in db.gaps()] == [
        (2, 6, 7), (3, 1, 3)]
    check_invariant(db)


def test_readings_and_events_of_one_device_are_separate_streams(db: Database) -> None:
    ingest(db, TELEMETRY, readings([1, 2, 3]), "w", 1.0)
    door = [event_record(s, "door", s, 10 * s, 1_700_000_000.0 + s, True, {"open": True})
            for s in (1, 3)]
    ingest(db, EVENTS, batch_payload("events", "store-001", "fridge-1", 1, door), "w", 2.0)
    (gap,) = db.gaps()
    assert (gap["kind"], gap["first_missing_seq"], gap["last_missing_seq"]) == ("events", 2, 2)
    check_invariant(db)


@pytest.mark.parametrize("seed", range(6))
def test_any_arrival_order_ends_with_no_open_gap(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    n = 120
    batches = []
    for start in range(1, n + 1, 7):  # batches of 7, then replays of random slices
        batches.append(list(range(start, min(start + 7, n + 1))))
    for _ in range(10):
        a = rng.randint(1, n)
        batches.append(list(range(a, min(a + rng.randint(1, 15), n + 1))))
    rng.shuffle(batches)
    with Database.open(tmp_path / "c.sqlite") as db:
        for i, seqs in enumerate(batches):
            ingest(db, TELEMETRY, readings(seqs, device=f"fridge-{seed % 2}"), "w", float(i))
            check_invariant(db)
        assert db.gaps(state="open") == []
        assert db.count("readings") == n
        # Every gap that was ever open is there, filled, and inside the stream.
        assert all(1 <= g["first_missing_seq"] <= g["last_missing_seq"] <= n
                   for g in db.gaps(state="filled"))


def test_two_writers_at_once_leave_a_consistent_stream(db_target: Path | str) -> None:
    """Two threads, two connections, one database: interleaved batches of the same streams
    (on PostgreSQL they commit in parallel, serialised per stream by its row lock)."""
    path = db_target
    Database.open(path).close()
    work = [(d, list(range(s, s + 10))) for s in range(1, 401, 10) for d in ("fridge-1",
                                                                              "fridge-2")]
    random.Random(7).shuffle(work)
    errors: list[BaseException] = []

    def writer(items: list[tuple[str, list[int]]], name: str) -> None:
        try:
            with Database.open(path) as db:
                for device, seqs in items:
                    ingest(db, TELEMETRY, readings(seqs, device=device), name, 1.0)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(work[i::2], f"w{i}")) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    with Database.open(path) as db:
        assert db.count("readings") == 800 and db.gaps(state="open") == []
        check_invariant(db)


def test_a_database_from_before_gap_tracking_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE readings (store TEXT NOT NULL, device TEXT NOT NULL, boot BIGINT NOT NULL,
            seq BIGINT NOT NULL, fseq INTEGER NOT NULL, dev_ms BIGINT NOT NULL,
            wall DOUBLE PRECISION NOT NULL, synced BOOLEAN NOT NULL, air_c DOUBLE PRECISION,
            product_c DOUBLE PRECISION, probes TEXT NOT NULL,
            received_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (store, device, boot, seq));
        CREATE TABLE events (store TEXT NOT NULL, device TEXT NOT NULL, boot BIGINT NOT NULL,
            seq BIGINT NOT NULL, type TEXT NOT NULL, fseq INTEGER, dev_ms BIGINT,
            wall DOUBLE PRECISION NOT NULL, synced BOOLEAN NOT NULL, data TEXT NOT NULL,
            received_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (store, device, boot, seq));
    """)
    old.executemany(
        "INSERT INTO readings VALUES ('store-001', 'fridge-1', 1, ?, 0, 0, ?, 1, 3.0, 4.0,"
        " '[]', 50.0)", [(s, 1000.0 + s) for s in (1, 2, 5, 6, 9)])
    old.commit()
    old.close()
    with Database.open(path) as db:
        assert spans(db) == [(3, 4), (7, 8)]
        assert {g["detected_by"] for g in db.gaps()} == {"migration"}
        row = next(db.readings("store-001", "fridge-1"))
        assert (row["wall_corrected"], row["time_method"]) == (1001.0, "unchecked")
        ingest(db, TELEMETRY, readings([3, 4, 10]), "w", 60.0)
        assert spans(db) == [(7, 8)] and spans(db, "filled") == [(3, 4)]
        check_invariant(db)
    with Database.open(path) as db:  # a second open does not migrate again
        assert len(db.gaps()) == 2
