"""The cloud's alert state machine over the real parts (database on both backends, the
escalation tick, a loopback webhook checking signatures, the HTTP ack API): an alert it was
told is raised never stays cleared, duplicates stay duplicates, and a critical alert is
acknowledged only with a corrective action (issue #13)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from cloud_gateway.alerts.notifier import AlertService
from cloud_gateway.alerts.policy import EscalationPolicy
from cloud_gateway.alerts.settings import AlertSettings, Contact, StoreAlerts
from cloud_gateway.alerts.store import SCHEMA
from cloud_gateway.db import Database
from cloud_gateway.ingest import ingest
from cloud_gateway.web import Api, HttpServer
from devstack.testkit.http_client import request
from devstack.testkit.wait import wait
from devstack.testkit.webhooks import Received, WebhookReceiver
from xiaodian.wire.payloads import batch_payload

STORE = "store-001"
SECRET = b"s" * 40
TOKEN = b"t" * 40
T0 = 1_750_000_000.0
TOPIC = f"xd/v1/{STORE}/alerts"
# What an older agent sent (issue #13): the second "hot" under the first one's id.
AID = "fridge-2/hot/1749999000000"


def change(kind: str, at: float, reason: str = "hot_sustained") -> dict[str, Any]:
    data: dict[str, Any] = {"reason": reason, "value_c": 9.0, "limit_c": 8.0, "for_s": 900.0}
    if reason == "hot_cumulative":
        data = {"reason": reason, "value_c": 6.0, "limit_c": 5.0, "cumulative_s": 14400.0,
                "window_s": 86400.0}
    if kind == "cleared":
        data |= {"end": "back_below", "end_value_c": 3.9, "end_limit_c": 7.0, "end_for_s": 600.0}
    return {"change": kind, "id": AID, "fridge": "fridge-2", "rule": "hot",
            "severity": "critical", "audience": "owner", "started_at": T0 - 1000, "at": at,
            "duration_s": at - T0 + 1000, "peak_c": 9.0, "message": f"{kind} at {at}",
            "late": False, "data": data}


def batch(seq: int, ch: dict[str, Any], boot: int = 1) -> bytes:
    return batch_payload("events", STORE, "alerts", boot, [
        {"seq": seq, "type": "alert", "fseq": None, "dev_ms": None, "wall": ch["at"],
         "synced": True, "data": ch}])


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def _service(target: Path | str, url: str, clock: Clock) -> AlertService:
    contact = Contact(name="wang", webhook_url=url, webhook_secret_file=Path("/unused"))
    settings = AlertSettings(link_secret_file=Path("/unused"), tick_interval_s=0.05,
                             retry_initial_s=0.05, retry_max_s=0.2, timeout_s=5.0,
                             escalation=EscalationPolicy(),
                             stores=(StoreAlerts(STORE, (contact,)),))
    return AlertService(settings, target, "w-1", link_secret=b"l" * 40,
                        webhook_secrets={f"{STORE}/wang": SECRET},
                        public_url="http://127.0.0.1:1/", now=clock)


def _kinds(got: list[Received]) -> list[str]:
    return [r.body["kind"] for r in sorted(got, key=lambda r: r.delivery)]


def test_a_raise_after_the_clearing_reopens_is_told_and_acknowledged_anew(
        db_target: Path | str) -> None:
    clock = Clock()
    with WebhookReceiver(SECRET) as hook, Database.open(db_target) as db:
        svc = _service(db_target, hook.url, clock)
        svc.start()
        api = Api(db_target, api_token=TOKEN, alert_link_secret=b"l" * 40)
        try:
            with HttpServer(api, "127.0.0.1", 0) as server:
                ack_url = f"{server.url.rstrip('/')}/api/alerts/{STORE}/{AID}/ack"

                def ack(body: dict[str, str]) -> tuple[int, dict[str, Any]]:
                    r = request(ack_url, "POST", data=json.dumps(body).encode(), timeout=5,
                                headers={"Content-Type": "application/json",
                                         "Authorization": f"Bearer {TOKEN.decode()}"})
                    return r.status, json.loads(r.body)

                def told(n: int) -> list[str]:
                    wait(lambda: (svc.tick(db, clock()), len(hook.snapshot()) >= n)[1], 10,
                         f"{n} notices")
                    return _kinds(hook.snapshot())

                assert ingest(db, TOPIC, batch(1, change("raised", T0)), "w", T0).alerts == 1
                assert told(1) == ["alert"]
                # Critical: no acknowledgement without what was done about it.
                status, doc = ack({"by": "wang"})
                assert status == 422 and "corrective_action" in doc["error"]
                status, doc = ack({"by": "wang", "corrective_action": "moved stock"})
                assert status == 200 and doc["acked_by"] == "wang"
                ingest(db, TOPIC, batch(2, change("cleared", T0 + 600)), "w", T0 + 600)
                assert told(2) == ["alert", "all_clear"]
                # The same id raised again, after its clearing, for another cause.
                again = change("raised", T0 + 4 * 3600, "hot_cumulative")
                assert ingest(db, TOPIC, batch(3, again), "w", T0 + 4 * 3600).alerts == 1
                assert told(3) == ["alert", "all_clear", "alert"]
                row = db.conn.execute("SELECT state, acked_by, reopened_after, data FROM alerts"
                                      " WHERE id = ?", (AID,)).fetchone()
                assert (row[0], row[1], row[2]) == ("active", None, T0 + 600)
                assert json.loads(row[3])["reason"] == "hot_cumulative"
                notice = sorted(hook.snapshot(), key=lambda r: r.delivery)[-1].body
                assert "最近 24 小时内累计高于 5 °C 达 4 小时" in notice["text"], notice["text"]
                # Replays of every change (another boot, a redelivery) are duplicates.
                for seq, ch in enumerate((change("raised", T0), change("cleared", T0 + 600),
                                          again), start=1):
                    assert ingest(db, TOPIC, batch(seq, ch, boot=2), "w", clock()).alerts == 0
                    assert ingest(db, TOPIC, batch(seq, ch), "w", clock()).alerts == 0
                svc.tick(db, clock())
                status, doc = ack({"by": "li", "corrective_action": "called the technician"})
                assert status == 200 and doc["state"] == "active"
                # Both episodes' acknowledgements are kept, each with its action.
                assert [(a["by"], a["corrective_action"]) for a in doc["acks"]] == [
                    ("wang", "moved stock"), ("li", "called the technician")]
                ingest(db, TOPIC, batch(4, change("cleared", T0 + 5 * 3600, "hot_cumulative")),
                       "w", clock())
                assert told(4) == ["alert", "all_clear", "alert", "all_clear"]
        finally:
            svc.stop()
        assert hook.refused == 0


def test_a_warning_is_acknowledged_without_a_corrective_action(tmp_path: Path) -> None:
    from cloud_gateway.alerts import store

    with Database.open(tmp_path / "c.sqlite") as db:
        warm = change("raised", T0) | {"id": "fridge-2/warm/1", "rule": "warm",
                                         "severity": "warning"}
        ingest(db, TOPIC, batch(1, warm), "w", T0)
        with db.transaction() as conn:
            assert store.acknowledge(conn, STORE, "fridge-2/warm/1", "li", "", "api:x", T0)
            assert not store.acknowledge(conn, STORE, "fridge-2/nope/1", "li", "", "api:x", T0)


def test_an_alerts_table_of_an_older_version_gets_the_new_column(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.executescript(SCHEMA.replace("    reopened_after DOUBLE PRECISION,\n", ""))
    con.close()
    with Database.open(path) as db:
        ingest(db, TOPIC, batch(1, change("raised", T0)), "w", T0)
        ingest(db, TOPIC, batch(2, change("cleared", T0 + 600)), "w", T0)
        ingest(db, TOPIC, batch(3, change("raised", T0 + 900)), "w", T0)
        row = db.conn.execute("SELECT state, reopened_after FROM alerts").fetchone()
        assert tuple(row) == ("active", T0 + 600)


def test_notice_words_follow_the_contact_and_the_store_zone() -> None:
    from cloud_gateway.alerts.notice_text import notice

    row = {"store": STORE, "fridge": "fridge-2", "rule": "hot", "severity": "critical",
           "started_at": T0 - 1000, "message": "old words", "acked_by": None,
           "data": json.dumps(change("raised", T0, "hot_cumulative")["data"])}
    # 2025-06-15 22:50 in Shanghai, 14:50 UTC, 10:50 in New York.
    title, text = notice("alert", row)
    assert title == "冰箱报警" and "（自 2025/6/15 22:50 起）" in text, text
    assert "产品 6.0 °C；最近 24 小时内累计高于 5 °C 达 4 小时" in text
    title, text = notice("alert", row, "en", "America/New_York")
    assert title == "Fridge alert" and "10:50" in text and "CRITICAL, Too hot" in text, text
    assert "above 5 °C for 4 h in the last 24 h" in text
    cleared = row | {"data": json.dumps(change("cleared", T0)["data"])}
    over = notice("all_clear", cleared)[1]
    assert over.endswith("温度过高已解除：产品 3.9 °C，低于 7 °C 已 10 分钟"), over
    # An older agent's alert (no reason): its English message, not an error.
    old = row | {"data": "{}"}
    assert notice("alert", old)[1].endswith("：old words")
