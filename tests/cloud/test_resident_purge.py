"""The clean-up of residents' data (docs/privacy.md), on SQLite and PostgreSQL: exactly the
code rows past every rate window, the sessions past their expiry and the residents left
with neither an order nor a session go; the rest, and the rate limits, stay. The cloud
worker's periodic sweep runs it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cloud_gateway import residents
from cloud_gateway.config import CloudSettings
from cloud_gateway.db import Database
from cloud_gateway.ingest import IngestWorker
from xiaodian.mqtt import MqttSettings

NOW = 1_796_608_800.0
KEEP = residents.CODE_KEEP_S


class Sent:
    def __init__(self) -> None:
        self.codes: list[tuple[str, str]] = []

    def send(self, phone: str, code: str) -> None:
        self.codes.append((phone, code))


def code_row(conn: object, phone: str, client: str, at: float) -> None:
    conn.execute(  # type: ignore[attr-defined]
        "INSERT INTO resident_codes (phone, client, salt, digest, created_at, expires_at,"
        " attempts) VALUES (?, ?, 's', 'd', ?, ?, 0)",
        (phone, client, at, at + residents.CODE_TTL_S))


def resident(conn: object, phone: str, at: float) -> int:
    conn.execute("INSERT INTO residents (phone, created_at) VALUES (?, ?)",  # type: ignore[attr-defined]
                 (phone, at))
    return int(conn.execute("SELECT id FROM residents WHERE phone = ?",  # type: ignore[attr-defined]
                            (phone,)).fetchone()[0])


def session(conn: object, digest: str, who: int, expires: float) -> None:
    conn.execute("INSERT INTO resident_sessions (digest, resident, created_at, expires_at)"  # type: ignore[attr-defined]
                 " VALUES (?, ?, ?, ?)", (digest, who, expires - residents.SESSION_TTL_S,
                                          expires))


def seed(db: Database) -> dict[str, int]:
    with db.transaction() as conn:
        code_row(conn, "13800000001", "10.0.0.1", NOW - KEEP - 1)  # past every window: goes
        code_row(conn, "13800000001", "10.0.0.1", NOW - KEEP)  # exactly at the edge: goes
        code_row(conn, "13800000002", "10.0.0.2", NOW - KEEP + 1)  # still counted: stays
        code_row(conn, "13800000003", "10.0.0.3", NOW - 10)  # live code: stays
        ordered = resident(conn, "13800000010", NOW - 90 * 86400)
        logged_in = resident(conn, "13800000011", NOW - 90 * 86400)
        gone = resident(conn, "13800000012", NOW - 90 * 86400)  # its session expired
        session(conn, "old-ordered", ordered, NOW - 1)
        session(conn, "live", logged_in, NOW + 60)
        session(conn, "old-gone", gone, NOW - 5)
        conn.execute("INSERT INTO resident_orders (order_id, resident, store, mode,"
                     " window_start, window_end, address, amount_fen, payment, created_at)"
                     " VALUES (1, ?, 'store-001', 'pickup', 0, 0, '', 100, '{}', 0)",
                     (ordered,))
    return {"ordered": ordered, "logged_in": logged_in, "gone": gone}


def test_the_purge_removes_exactly_what_is_past_its_time(db_target: Path | str) -> None:
    with Database.open(db_target) as db:
        who = seed(db)
        with db.transaction() as conn:
            got = residents.purge(conn, NOW)
        assert got == {"codes": 2, "sessions": 2, "residents": 1}
        codes = sorted(float(r[0]) for r in db.conn.execute(
            "SELECT created_at FROM resident_codes"))
        assert codes == [NOW - KEEP + 1, NOW - 10]
        assert [r[0] for r in db.conn.execute("SELECT digest FROM resident_sessions")] == [
            "live"]
        left = sorted(int(r[0]) for r in db.conn.execute("SELECT id FROM residents"))
        assert left == sorted([who["ordered"], who["logged_in"]])
        # Run again at the same time: nothing more is due.
        with db.transaction() as conn:
            assert residents.purge(conn, NOW) == {"codes": 0, "sessions": 0, "residents": 0}


def test_the_rate_limit_survives_the_purge(tmp_path: Path) -> None:
    sent = Sent()
    with Database.open(tmp_path / "cloud.sqlite") as db:
        for k in range(residents.CODES_PER_PHONE):
            with db.transaction() as conn:
                residents.request_code(conn, "13900000000", f"10.0.1.{k}", NOW + k, sent)
        with db.transaction() as conn:
            residents.purge(conn, NOW + 100)  # well inside the number's window
        with pytest.raises(residents.ResidentError) as exc, db.transaction() as conn:
            residents.request_code(conn, "13900000000", "10.0.1.9", NOW + 101, sent)
        assert exc.value.throttled
        # Past the longest window the rows go, and the number may ask again.
        with db.transaction() as conn:
            assert residents.purge(conn, NOW + 2 + KEEP)["codes"] == residents.CODES_PER_PHONE
            residents.request_code(conn, "13900000000", "10.0.1.9", NOW + 2 + KEEP, sent)
    assert len(sent.codes) == residents.CODES_PER_PHONE + 1


def test_the_cloud_workers_sweep_runs_the_purge(
        tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings]) -> None:
    path = tmp_path / "cloud.sqlite"
    with Database.open(path) as db:
        seed(db)
        worker = IngestWorker(mqtt_settings("cloud-gateway"),  # not started: no connection
                              CloudSettings(db=path, worker_id="cloud-1"), now=lambda: NOW)
        try:
            worker._sweep(db)  # what its database thread runs every command_sweep_interval_s
        finally:
            worker._wake_r.close()  # never started, so never stopped
            worker._wake_w.close()
        assert db.conn.execute("SELECT COUNT(*) FROM resident_codes").fetchone()[0] == 2
        assert db.conn.execute("SELECT COUNT(*) FROM resident_sessions").fetchone()[0] == 1
