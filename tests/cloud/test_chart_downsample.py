"""The owner chart's samples (`haccp.load_chart_samples`) are exactly what the pure
`haccp.downsample` gives from every reading: on PostgreSQL the database picks them (one
aggregate), and must agree to the sample (the same buckets, the same coldest and warmest
sample in each: ties, missing product temperatures and run lengths that do not divide evenly
included); on SQLite, in-process, the pure rule itself runs, and the counts and windows are
checked all the same."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from cloud_gateway import haccp
from cloud_gateway.db import Database
from cloud_gateway.ingest import ingest
from xiaodian.wire.payloads import batch_payload, reading_record

STORE = "store-001"
T0 = 1_748_736_000.0  # 2025-06-01T00:00:00Z


def _fill(db: Database, fridge: str, n: int, seed: int) -> None:
    """n readings 10 s apart: temperatures on a 1/16 °C grid (many ties), some runs with the
    product probe faulted (product_c NULL), one long enough to fill whole buckets."""
    rnd = random.Random(seed)
    records = []
    for i in range(n):
        faulted = rnd.random() < 0.05 or 300 <= i < 330
        product = None if faulted else rnd.randint(32, 160) / 16
        records.append(reading_record(i + 1, i + 1, 10_000 * i, T0 + 10 * i, True, [
            (0, "ok", rnd.randint(16, 96) / 16),
            (1, "missing" if faulted else "ok", product)]))
    for k in range(0, n, 500):
        chunk = records[k:k + 500]
        outcome = ingest(db, f"xd/v1/{STORE}/telemetry",
                         batch_payload("readings", STORE, fridge, 1, chunk), "w-1",
                         chunk[-1]["wall"] + 1.0)
        assert outcome.inserted == len(chunk), outcome.reason


SIZES = {"fridge-0": 0, "fridge-1": 7, "fridge-2": 1000, "fridge-3": 1001, "fridge-4": 8640}


@pytest.fixture
def chart_db(db_target: Path | str) -> Path | str:
    with Database.open(db_target) as db:
        for seed, (fridge, n) in enumerate(SIZES.items()):
            _fill(db, fridge, n, seed)
    return db_target


@pytest.mark.parametrize("max_points", [1000, 333, 7, 2])
def test_the_database_downsamples_as_the_pure_code_does(chart_db: Path | str,
                                                         max_points: int) -> None:
    with Database.open_readonly(chart_db) as db:
        for fridge, n in SIZES.items():
            since, until = T0 - 1.0, T0 + 10 * n + 1.0
            every = haccp.load_samples(db.conn, STORE, fridge, since, until)
            assert len(every) == n
            total, shown = haccp.load_chart_samples(db.conn, STORE, fridge, since, until,
                                                    max_points)
            assert total == n, fridge
            assert shown == haccp.downsample(every, since, until, max_points), fridge
            assert len(shown) <= max_points


def test_a_window_inside_the_data_counts_only_its_readings(chart_db: Path | str) -> None:
    with Database.open_readonly(chart_db) as db:
        since, until = T0 + 10 * 1000, T0 + 10 * 4000  # readings 1000..3999 of fridge-4
        total, shown = haccp.load_chart_samples(db.conn, STORE, "fridge-4", since, until, 500)
        every = haccp.load_samples(db.conn, STORE, "fridge-4", since, until)
    assert total == len(every) == 3000
    assert shown == haccp.downsample(every, since, until, 500)
    assert shown[0].t >= since and shown[-1].t < until
