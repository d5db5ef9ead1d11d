"""The cloud keeps each fridge-hour's vitals once (cloud_gateway/health.py), on SQLite and
on PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cloud_gateway import health
from cloud_gateway.db import Database
from cloud_gateway.ingest_core import ingest
from xiaodian.metrics_text import render
from xiaodian.wire.health import HEALTH_DEVICE
from xiaodian.wire.payloads import batch_payload, event_record

STORE = "store-001"
TOPIC = f"xd/v1/{STORE}/health"


def vitals(hour: int, duty: float, **change: Any) -> dict[str, Any]:
    v = {"fridge": "fridge-1", "hour": hour, "readings": 60, "compressor_known_s": 3600.0,
         "compressor_on_s": round(3600 * duty, 1), "duty": duty, "compressor_starts": 3,
         "defrosts": [{"duration_s": 1500.0, "ended_on": "timeout"},
                      {"duration_s": 900.0, "ended_on": "temperature"}],
         "defrost_s": 1500.0, "door_openings": 4, "door_open_s": 80.0,
         "pulldowns_s": [120.0, 30.0, 300.0], "pulldown_unrecovered": 0, "reboots": [],
         "probes": [], "mains_lost": 0, "mains_off_s": 0.0, "firmware": "0.1.0", "link": None}
    v.update(change)
    return v


def message(boot: int, records: list[tuple[int, dict[str, Any]]]) -> bytes:
    return batch_payload("events", STORE, HEALTH_DEVICE, boot,
                         [event_record(seq, "vitals", None, None, 1.7e9, True, d)
                          for seq, d in records])


def test_vitals_are_stored_once_per_fridge_and_hour(db_target: str | Path) -> None:
    with Database.open(db_target) as db:
        first = ingest(db, TOPIC, message(1, [(1, vitals(10, 0.4)), (2, vitals(11, 0.5))]),
                       "w", 100.0)
        again = ingest(db, TOPIC, message(1, [(1, vitals(10, 0.4)), (2, vitals(11, 0.5))]),
                       "w", 101.0)
        # A terminal that lost its note of what it sent reports hour 11 again, under a
        # new boot and with other numbers: the first copy stays.
        other_boot = ingest(db, TOPIC, message(2, [(1, vitals(11, 0.9)), (2, vitals(12, 0.6))]),
                            "w", 102.0)
        with db.transaction() as conn:
            rows = health.trend(conn, STORE, "fridge-1", 0)
            latest = health.latest(conn)
    assert (first.action, first.inserted, first.receipt is not None) == ("stored", 2, True)
    assert (again.inserted, again.duplicates) == (0, 2)
    assert other_boot.inserted == 2  # both are new events; only hour 12 is a new hour
    assert [(r.hour, r.duty) for r in rows] == [(10, 0.4), (11, 0.5), (12, 0.6)]
    r = rows[0]
    assert (r.defrosts, r.defrost_max_s, r.defrost_timeouts, r.pulldown_median_s,
            r.door_openings, r.firmware) == (2, 1500.0, 1, 120.0, 4, "0.1.0")
    assert latest[(STORE, "fridge-1")]["hour"] == 12


def test_a_bad_vitals_message_is_parked_and_stores_nothing(tmp_path: Path) -> None:
    with Database.open(tmp_path / "c.db") as db:
        bad = vitals(11, 0.5, compressor_starts=-1)
        out = ingest(db, TOPIC, message(1, [(1, vitals(10, 0.4)), (2, bad)]), "w", 100.0)
        with db.transaction() as conn:
            rows = health.trend(conn, STORE, "fridge-1", 0)
            parked = conn.execute("SELECT reason FROM dead_letters").fetchall()
    assert out.action == "parked" and "records[1].data.compressor_starts" in out.reason
    assert rows == [] and len(parked) == 1


def test_the_fleet_and_metrics_read_on_both_databases(db_target: str | Path) -> None:
    from cloud_gateway import fleet, metrics
    from xiaodian.wire.payloads import reading_record, state_payload

    now = 40 * 3600.0 + 100
    with Database.open(db_target) as db:
        ingest(db, f"xd/v1/{STORE}/state", state_payload(STORE, True, 1, now, "0.1",
                                                         ["fridge-1"]), "w", now - 50)
        ingest(db, f"xd/v1/{STORE}/telemetry", batch_payload("readings", STORE, "fridge-1", 1, [
            reading_record(1, 1, 1000, now - 60, True, [(0, "ok", 3.0)])]), "w", now - 59)
        ingest(db, f"xd/v1/{STORE}/events", batch_payload("events", STORE, "fridge-1", 1, [
            event_record(1, "door", 2, 2000, now - 30, True, {"open": True})]), "w", now - 29)
        ingest(db, TOPIC, message(1, [(1, vitals(38, 0.4)), (2, vitals(39, 0.5))]), "w", now)
        ingest(db, f"xd/v1/{STORE}/telemetry", batch_payload("readings", STORE, "fridge-2", 1, [
            reading_record(1, 1, 1000, now - 900, True, [(0, "ok", 3.0)])]), "w", now - 899)
        with db.transaction() as conn:
            rows = {r["device"]: r for r in fleet.fridges(conn, [STORE], now)}
            trend = fleet.trends(conn, STORE, "fridge-1", now, 7)
            log = fleet.event_log(conn, STORE, "fridge-1")
            text = render(metrics.families(conn, None, now))
    assert (rows["fridge-1"]["online"], rows["fridge-2"]["online"]) == (True, False)
    assert rows["fridge-1"]["last_seen"] == now - 29 and rows["fridge-1"]["duty"] == 0.5
    assert rows["fridge-1"]["firmware"] == "0.1.0" and rows["fridge-2"]["firmware"] is None
    assert trend["x"] == [38 * 3600, 39 * 3600] and trend["duty"] == [40.0, 50.0]
    assert (trend["defrosts"], trend["defrost_timeouts"], trend["pulldown_min"]) == (
        4, 2, [2.0, 2.0])
    assert [e["type"] for e in log] == ["door"]
    assert 'xiaodian_fridges{state="online"} 1' in text
    assert 'xiaodian_fridges{state="offline"} 1' in text
    assert 'xiaodian_stores{state="online"} 1' in text
