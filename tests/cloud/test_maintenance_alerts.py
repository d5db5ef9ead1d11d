"""Maintenance alerts in the cloud (cloud_gateway/maintenance_alerts.py), on SQLite and
PostgreSQL: hourly vitals ingested as a terminal sends them raise one when the condenser
fouls, it reaches the store's technician by a signed webhook (never the owner), is not a
cold-chain alert, and clears with an all-clear once the condenser is clean."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec
from alert_delivery import Clock, hook, service, settle
from vitals_series import H0, series
from webhook_receiver import Receiver

from cloud_gateway import maintenance_alerts
from cloud_gateway.db import Database
from cloud_gateway.ingest import ingest
from xiaodian.wire.health import HEALTH_DEVICE, Vitals
from xiaodian.wire.payloads import batch_payload, event_record

STORE = "store-001"


def _send(db: Database, vitals: list[Vitals], first_seq: int) -> None:
    """The vitals as the terminal sends them: events of the `health` stream, a day a batch."""
    for i in range(0, len(vitals), 24):
        part = vitals[i:i + 24]
        records = [event_record(first_seq + i + k, "vitals", None, None, v.hour * 3600 + 1860.0,
                                True, msgspec.to_builtins(v)) for k, v in enumerate(part)]
        wall = part[-1].hour * 3600 + 1900.0
        out = ingest(db, f"xd/v1/{STORE}/health",
                     batch_payload("events", STORE, HEALTH_DEVICE, 1, records), "w-1", wall)
        assert out.action == "stored", out.reason


def test_fouling_tells_the_technician_not_the_owner_and_clears(
        db_target: Path | str, receiver: Callable[..., Receiver]) -> None:
    owner, tech = receiver(), receiver()
    # Four weeks as usual, a week with the condenser fouled (+8 points of duty), then clean.
    vs = series(days=45, duty_extra=lambda d: 0.08 if 28 <= d < 35 else 0.0)
    clock = Clock(H0 * 3600.0 + 35 * 86_400)
    svc = service(db_target, [hook("wang", owner.url), hook("li", tech.url, "technician")],
                  clock)
    with Database.open(db_target) as db:
        _send(db, vs[:35 * 24], 1)
        (m,) = maintenance_alerts.open_alerts(db.conn, [STORE])
        assert (m["fridge"], m["rule"]) == ("fridge-1", "duty_rising")
        assert m["evidence"]["rise_pct"] >= 10
        assert 28 * 24 <= m["raised_hour"] - H0 < 35 * 24
        # Not a cold-chain alert: nothing in `alerts`, which owners, HACCP and the shop read.
        assert db.conn.execute("SELECT COUNT(*) FROM alerts").fetchone()[0] == 0
        svc.start()
        try:
            settle(svc, db, clock, lambda: len(tech.requests) == 1)
            doc = tech.requests[0]
            assert doc["kind"] == "alert" and doc["class"] == "maintenance"
            assert doc["contact"] == "li" and "ack_url" not in doc
            assert doc["title"] == "冰箱需要维护"
            assert "压缩机" in doc["text"] and "冷凝器" in doc["text"], doc["text"]
            assert tech.bad_signatures == 0
            # The condenser is cleaned: ten ordinary days later the alert is over.
            _send(db, vs[35 * 24:], 35 * 24 + 1)
            assert maintenance_alerts.open_alerts(db.conn, [STORE]) == []
            settle(svc, db, clock, lambda: len(tech.requests) == 2)
            assert tech.requests[1]["kind"] == "all_clear"
        finally:
            svc.stop()
        assert owner.requests == []
        rows = db.conn.execute("SELECT alert_id, contact FROM alert_notifications").fetchall()
        assert {(r[0].split("/")[0], r[1]) for r in rows} == {("maintenance", "li")}


def test_normal_weeks_raise_nothing(db_target: Path | str) -> None:
    with Database.open(db_target) as db:
        _send(db, series(days=35, seed=3), 1)
        assert maintenance_alerts.open_alerts(db.conn, [STORE]) == []
        assert db.conn.execute("SELECT COUNT(*) FROM maintenance_alerts").fetchone()[0] == 0
