"""Readings by month (PostgreSQL partitions), retention, and the numbered schema migrations.

The exactly-once promise across a partition boundary is tested on both backends: a reading
delivered again after the terminal's clock estimate moved has another corrected time, so on
PostgreSQL its copy would belong to another month's partition, where the table's key (which
must contain the partition key) cannot see the first copy.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from cloud_gateway import accounts, haccp, sql
from cloud_gateway.config import CloudSettings
from cloud_gateway.db import Database, migrations, partitions, schema
from cloud_gateway.ingest import IngestWorker, ingest
from devstack.testkit.pg_server import PgServer, db_settings
from xiaodian.mqtt import MqttSettings
from xiaodian.wire.payloads import batch_payload, reading_record

TELEMETRY = "xd/v1/store-001/telemetry"


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


JAN31 = at(2024, 1, 31, 23, 58)  # two minutes before the February partition


def readings(walls: list[tuple[int, float, bool]], device: str = "fridge-1") -> bytes:
    return batch_payload("readings", "store-001", device, 1, [
        reading_record(s, s, 1000 * s, wall, synced, [(0, "ok", 3.0), (1, "ok", 4.0)])
        for s, wall, synced in walls])


def where(db: Database) -> dict[int, str]:
    """seq -> the partition (PostgreSQL) or table (SQLite) holding it."""
    if not db.postgres:
        return {int(r[0]): "readings" for r in db.conn.execute("SELECT seq FROM readings")}
    return {int(r[0]): str(r[1]) for r in db.conn.execute(
        "SELECT seq, tableoid::regclass::text FROM readings")}


# ---------------------------------------------------------------- pure: the plan


def test_the_plan_makes_the_coming_months_and_drops_only_whole_months_past_retention() -> None:
    now = at(2026, 12, 7)
    p = partitions.plan([(2026, 12)], now, 0)
    assert p.create == ((2027, 1), (2027, 2)) and p.drop == () and p.cutoff is None
    have = [(2023, 11), (2023, 12), (2024, 1), (2026, 12), (2027, 1), (2027, 2)]
    p = partitions.plan(have, now, 1095)  # cutoff 2023-12-08: December 2023 is not whole
    assert p.create == () and p.drop == ((2023, 11),)
    assert partitions.bounds((2024, 12)) == (at(2024, 12, 1), at(2025, 1, 1))
    assert partitions.add_months((2024, 12), 1) == (2025, 1)
    assert partitions.add_months((2024, 1), -1) == (2023, 12)
    assert partitions.parse_name(partitions.name((2031, 7))) == (2031, 7)
    assert partitions.parse_name(partitions.DEFAULT) is None


# ---------------------------------------------------------------- both backends


@pytest.fixture
def db(db_target: Path | str) -> Iterator[Database]:
    with Database.open(db_target) as d:
        with d.transaction() as conn:  # January to March 2024 exist (PostgreSQL)
            partitions.maintain(conn, JAN31, 0)
        yield d


def test_a_copy_delivered_after_the_partition_boundary_is_still_a_duplicate(
        db: Database) -> None:
    # An unsynchronised terminal: its readings are corrected by the cloud's estimate.
    first = [(s, JAN31 + 10 * s, False) for s in range(1, 6)]
    out = ingest(db, TELEMETRY, readings(first), "w1", JAN31 + 60)
    assert (out.inserted, out.duplicates) == (5, 0)
    # The broker redelivers them 31 minutes later, with one new reading: the estimate has
    # moved by half an hour, so the copies' corrected times fall in February.
    again = [*first, (6, JAN31 + 60, False)]
    out = ingest(db, TELEMETRY, readings(again), "w2", at(2024, 2, 1, 0, 30))
    assert (out.inserted, out.duplicates) == (1, 5)
    assert db.count("readings") == 6
    stored = {int(r[0]): float(r[1]) for r in db.conn.execute(
        "SELECT seq, wall_corrected FROM readings")}
    assert all(stored[s] < at(2024, 2, 1) for s in range(1, 6))
    assert stored[6] >= at(2024, 2, 1)  # what the copies' corrected time would have been
    if db.postgres:
        parts = where(db)
        assert {parts[s] for s in range(1, 6)} == {"readings_y2024m01"}
        assert parts[6] == "readings_y2024m02"
    # The table's key alone would not have refused the copy on PostgreSQL (it holds the
    # corrected time); on SQLite it would. The lookup under the stream's lock is what holds.
    copy = ("INSERT INTO readings (store, device, boot, seq, fseq, dev_ms, wall, synced,"
            " probes, received_at, wall_corrected) SELECT store, device, boot, seq, fseq,"
            " dev_ms, wall, synced, probes, received_at, ? FROM readings WHERE seq = 1")
    if db.postgres:
        with pytest.raises(sql.PgError, match="rolled back"), db.transaction() as conn:
            assert conn.execute(copy, (stored[6],)).rowcount == 1
            raise sql.PgError("rolled back")
    else:
        with pytest.raises(sqlite3.IntegrityError), db.transaction() as conn:
            conn.execute(copy, (stored[6],))


def test_the_chart_reads_across_the_boundary(db: Database) -> None:
    walls = [(s, JAN31 + 30 * s, True) for s in range(1, 9)]  # 23:58:30 to 00:02:00
    ingest(db, TELEMETRY, readings(walls), "w1", JAN31 + 240)
    h = haccp.history(db.conn, "store-001", "fridge-1", 1.0)
    assert [p[0] for p in h["readings"]] == [w for _, w, _ in walls]
    assert haccp.fridge_ids(db.conn, "store-001") == ["fridge-1"]
    assert haccp.latest_day(db.conn, "store-001", haccp.parse_tz("UTC")) == \
        datetime(2024, 2, 1).date()
    if db.postgres:
        assert set(where(db).values()) == {"readings_y2024m01", "readings_y2024m02"}


def test_retention_drops_whole_months_and_keeps_mis_clocked_readings_by_arrival(
        db: Database) -> None:
    # A terminal that said 1970 before it synchronised, then good readings in January and
    # March, and one stamped June, a month that has no partition yet.
    ingest(db, TELEMETRY, readings([(1, 1000.0, False), (2, JAN31, True)]), "w1", JAN31 + 1)
    ingest(db, TELEMETRY, readings([(3, at(2024, 3, 5), True)]), "w1", at(2024, 3, 5))
    ingest(db, TELEMETRY, readings([(4, at(2024, 6, 2), True)]), "w1", at(2024, 6, 2))
    assert db.count("readings") == 4  # none refused, none lost
    if db.postgres:
        assert where(db) == {1: partitions.DEFAULT, 2: "readings_y2024m01",
                             3: "readings_y2024m03", 4: partitions.DEFAULT}
        report = partitions.sweep(db, at(2024, 6, 2), 0, "w1")  # June to August made
        assert report.created == ("readings_y2024m06", "readings_y2024m07",
                                  "readings_y2024m08") and report.moved == 1
        assert where(db)[4] == "readings_y2024m06"
    # Two years and a bit later: January and February 2024 are wholly past 730 days,
    # March is not (cutoff 2024-03-10); the 1970 reading arrived in January: gone too.
    report = partitions.sweep(db, at(2026, 3, 10), 730, "w1")
    left = {int(r[0]) for r in db.conn.execute("SELECT seq FROM readings")}
    assert left == {3, 4}
    audited = accounts.audit_rows(db.conn)
    assert audited and {a["action"] for a in audited} == {"readings.retention"}
    if db.postgres:
        assert [d[0] for d in report.dropped] == ["readings_y2024m01", "readings_y2024m02"]
        assert report.deleted == 1
        assert {a["target"] for a in audited} == {"readings_y2024m01", "readings_y2024m02",
                                                  partitions.DEFAULT}
        have = partitions.partitions(db.conn)
        assert (2024, 1) not in have and (2024, 3) in have and (2026, 5) in have
    else:
        assert report.deleted == 2


def test_migrations_are_recorded_once(db_target: Path | str) -> None:
    for _ in range(2):
        with Database.open(db_target) as d:
            rows = d.conn.execute("SELECT version FROM schema_migrations ORDER BY version"
                                  ).fetchall()
            assert [int(r[0]) for r in rows] == [1, 2]
            if d.postgres:
                assert partitions.is_partitioned(d.conn)
        schema._pg_ready.discard(str(db_target))  # the next open checks again


def _open(target: str, go: object) -> None:
    go.wait()  # type: ignore[attr-defined]
    Database.open(target, busy_timeout_s=30).close()


def test_two_workers_starting_together_apply_each_migration_once(
        db_target: Path | str, pg_server: PgServer) -> None:
    target = str(db_target)
    if isinstance(db_target, str):  # an empty database, not the tests' template
        target = _empty_database(pg_server, "together")
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    procs = [ctx.Process(target=_open, args=(target, go)) for _ in range(2)]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    with Database.open(target) as d:
        rows = d.conn.execute("SELECT version FROM schema_migrations ORDER BY version"
                              ).fetchall()
        assert [int(r[0]) for r in rows] == [1, 2]


# ---------------------------------------------------------------- upgrading old databases


def _empty_database(server: PgServer, name: str) -> str:
    with psycopg.connect(server.admin_url, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
        c.execute(f"CREATE DATABASE {name} TEMPLATE template1".encode())
    return server.url(name)


def test_an_unpartitioned_postgresql_database_is_converted_in_place(
        pg_server: PgServer) -> None:
    url = _empty_database(pg_server, "old_readings")
    # What the version before migrations made: the tables of version 1, no
    # schema_migrations, an unpartitioned readings table, filled by ingest (the only
    # writer of readings) over three months, with one reading from a terminal that said
    # 1970 before it synchronised.
    conn = sql.PgConnection.connect(url)
    with conn.transaction():
        schema.baseline_pg(conn)
    old = Database(conn)  # not Database.open: no migration runs
    walls = [(1, 1000.0, False)] + [
        (2 + 5 * k + i, at(2024, m, 15) + 10 * i, True)
        for k, m in enumerate((1, 2, 3)) for i in range(5)]
    for device in ("fridge-1", "fridge-2"):
        ingest(old, TELEMETRY, readings(walls, device), "w0", walls[-1][1])
    assert old.count("readings") == 32 and not partitions.is_partitioned(conn)
    assert sql.columns(conn, "schema_migrations") == set()
    old.close()
    schema._pg_ready.discard(url)
    with Database.open(url) as db:
        assert partitions.is_partitioned(db.conn)
        assert db.count("readings") == 32
        placed = {(r[0], int(r[1])): str(r[2]) for r in db.conn.execute(
            "SELECT device, seq, tableoid::regclass::text FROM readings")}
        assert placed[("fridge-1", 1)] == partitions.DEFAULT
        assert placed[("fridge-2", 2)] == "readings_y2024m01"
        assert placed[("fridge-2", 16)] == "readings_y2024m03"
        # The months that hold readings, and the current one and those ahead.
        current = partitions.month_of(datetime.now(UTC).timestamp())
        assert partitions.partitions(db.conn) == [(2024, 1), (2024, 2), (2024, 3), *(
            partitions.add_months(current, i) for i in range(partitions.AHEAD_MONTHS + 1))]
        assert [r["seq"] for r in db.readings("store-001", "fridge-1")] == list(range(1, 17))
        applied = db.conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        assert [int(r[0]) for r in applied] == [1, 2]
        # Ingest knows the old rows: a redelivered copy is refused, a new seq stored.
        again = batch_payload("readings", "store-001", "fridge-1", 1, [
            reading_record(s, s, 1000 * s, at(2024, 3, 15) + 10 * (s - 12), True,
                           [(0, "ok", 3.0), (1, "ok", 4.0)]) for s in (16, 17)])
        out = ingest(db, TELEMETRY, again, "w1", at(2024, 3, 15, 0, 1))
        assert (out.inserted, out.duplicates) == (1, 1)
    pg_server.drop_database(url)


def test_an_old_sqlite_database_gets_the_chart_index(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with Database.open(path) as d:
        ingest(d, TELEMETRY, readings([(1, JAN31, True)]), "w1", JAN31)
    old = sqlite3.connect(path)
    # As a version before migrations left it: no schema_migrations, no new indexes.
    old.executescript("DROP TABLE schema_migrations; DROP INDEX readings_by_time;"
                      " DROP INDEX events_by_time; UPDATE readings SET wall_corrected = NULL")
    old.close()
    with Database.open(path) as d:
        indexes = {r[1] for r in d.conn.execute("PRAGMA index_list(readings)")}
        assert "readings_by_time" in indexes
        assert d.conn.execute("SELECT wall_corrected FROM readings").fetchone()[0] == JAN31
        plan = " ".join(str(tuple(r)) for r in d.conn.execute(
            "EXPLAIN QUERY PLAN SELECT wall_corrected, product_c, air_c FROM readings"
            " WHERE store = ? AND device = ? AND wall_corrected >= ? AND wall_corrected < ?",
            ("store-001", "fridge-1", 0, 1)))
        assert "COVERING INDEX readings_by_time" in plan
        assert [int(r[0]) for r in d.conn.execute("SELECT version FROM schema_migrations")
                ] == [1, 2]


def test_a_failing_migration_leaves_nothing_behind(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cloud.sqlite"
    Database.open(path).close()

    def broken(conn: sql.Connection, now: float) -> None:
        conn.execute("CREATE TABLE half_done (x INTEGER)")
        raise sqlite3.OperationalError("disk full")

    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS,
                                                    migrations.Migration(3, "broken", broken)))
    with pytest.raises(sqlite3.OperationalError, match="disk full"):
        Database.open(path)
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] == 2
        assert c.execute("SELECT name FROM sqlite_master WHERE name = 'half_done'"
                         ).fetchone() is None


def test_retention_below_two_years_is_refused() -> None:
    base = {"db": Path("cloud.sqlite"), "worker_id": "cloud-1"}
    assert CloudSettings(**base).readings_retention_days == 1095  # type: ignore[arg-type]
    assert CloudSettings(**base, readings_retention_days=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="readings_retention_days: must be 0"):
        CloudSettings(**base, readings_retention_days=365)  # type: ignore[arg-type]


def test_the_worker_sweep_makes_the_months_and_applies_the_retention(
        db: Database, db_target: Path | str,
        mqtt_settings: Callable[[str], MqttSettings]) -> None:
    ingest(db, TELEMETRY, readings([(1, JAN31, True)]), "w1", JAN31)
    now = at(2026, 3, 10)
    settings = CloudSettings(**db_settings(db_target), worker_id="cloud-1",
                             readings_retention_days=730)
    worker = IngestWorker(mqtt_settings("cloud-gateway"), settings, now=lambda: now)
    try:
        worker._sweep(db)  # what the database thread runs at start and every interval
    finally:
        worker._wake_r.close()  # never started: only its wake-up pipe to close
        worker._wake_w.close()
    assert db.count("readings") == 0  # January 2024: past 730 days
    assert {(a["action"], a["actor"]) for a in accounts.audit_rows(db.conn)} == {
        ("readings.retention", "cloud-1")}
    if db.postgres:
        assert {(2026, 3), (2026, 4), (2026, 5)} <= set(partitions.partitions(db.conn))
