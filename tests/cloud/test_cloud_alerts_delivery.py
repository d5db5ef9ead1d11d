"""Alerts in the cloud with real receivers on loopback: a webhook HTTP server checking the
signature, a local SMTP server (aiosmtpd) for Apprise mailto://, the HTTP API for acks, and
the real broker end to end. Escalation time is an injected clock; nothing sleeps for minutes.
"""

from __future__ import annotations

import email
import email.header
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller
from alert_delivery import LINK_SECRET, STORE, T0, Clock, hook, service, settle
from webhook_receiver import Receiver

from cloud_gateway.alerts.notifier import ack_link
from cloud_gateway.alerts.policy import EscalationPolicy
from cloud_gateway.alerts.settings import Contact
from cloud_gateway.config import CloudSettings
from cloud_gateway.db import Database
from cloud_gateway.ingest import IngestWorker, ingest
from cloud_gateway.web import Api, HttpServer
from devstack.testkit.http_client import request as http_request
from devstack.testkit.mqtt_clients import connected
from xiaodian.mqtt import MqttSettings
from xiaodian.wire.payloads import batch_payload

TOKEN = b"t" * 40


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    with socket.socket() as s:  # aiosmtpd's Controller cannot bind port 0 itself
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    box = Mailbox()
    ctl = Controller(box, hostname="127.0.0.1", port=port)
    ctl.start()
    yield box, port
    ctl.stop()


def alert(change: str, at: float, severity: str = "critical", rule: str = "hot",
          audience: str = "owner", started_at: float = 1000.0) -> dict[str, Any]:
    return {"change": change, "id": f"fridge-1/{rule}/{round(started_at * 1000)}",
            "fridge": "fridge-1", "rule": rule, "severity": severity, "audience": audience,
            "started_at": started_at, "at": at, "duration_s": at - started_at, "peak_c": 9.1,
            "message": f"product 9.1 °C ({change})", "late": False,
            "data": {"reason": "hot_sustained", "value_c": 9.1, "limit_c": 8.0, "for_s": 900.0}}


def events(seq_alerts: list[tuple[int, dict[str, Any]]], boot: int = 1) -> bytes:
    records = [{"seq": s, "type": "alert", "fseq": None, "dev_ms": None, "wall": a["at"],
                "synced": True, "data": a} for s, a in seq_alerts]
    return batch_payload("events", STORE, "fridge-1", boot, records)


def deliveries(db: Database) -> list[tuple[int, int, bool, int | None]]:
    return [(r[0], r[1], bool(r[2]), r[3]) for r in db.conn.execute(
        "SELECT notification_id, attempt, ok, status_code FROM alert_deliveries ORDER BY id")]


def test_webhook_failing_twice_then_delivered_with_three_attempts_logged(
        db_target: Path | str, receiver: Callable[..., Receiver]) -> None:
    rx = receiver(fail=2)
    clock = Clock()
    svc = service(db_target, [hook("wang", rx.url)], clock)
    with Database.open(db_target) as db:
        ingest(db, f"xd/v1/{STORE}/events", events([(1, alert("raised", T0))]), "w-1", T0)
        svc.start()
        try:
            settle(svc, db, clock, lambda: len(rx.requests) == 1)
        finally:
            svc.stop()
        assert [(a, ok, code) for _, a, ok, code in deliveries(db)] == [
            (1, False, 500), (2, False, 500), (3, True, 204)]
        assert rx.bad_signatures == 0
        doc = rx.requests[0]
        assert doc["kind"] == "alert" and doc["alert"]["id"] == "fridge-1/hot/1000000"
        assert doc["ack_url"].startswith("http://127.0.0.1:1/ack/store-001/fridge-1/hot/")
        state = db.conn.execute("SELECT state, attempts FROM alert_notifications").fetchall()
        assert [tuple(r) for r in state] == [("delivered", 3)]


def test_escalation_backup_repeat_ack_reminder_all_clear_with_injected_clock(
        db_target: Path | str, receiver: Callable[..., Receiver]) -> None:
    owner, backup = receiver(), receiver()
    clock = Clock()
    svc = service(db_target, [hook("wang", owner.url), hook("li", backup.url, "backup")], clock)
    with Database.open(db_target) as db:
        ingest(db, f"xd/v1/{STORE}/events", events([(1, alert("raised", T0))]), "w-1", T0)
        svc.start()
        try:
            settle(svc, db, clock, lambda: len(owner.requests) == 1)  # at once
            clock.t = T0 + 19 * 60
            svc.tick(db, clock())
            clock.t = T0 + 20 * 60
            settle(svc, db, clock, lambda: len(backup.requests) == 1)
            assert backup.requests[0]["kind"] == "escalation" and len(owner.requests) == 1
            clock.t = T0 + 30 * 60
            settle(svc, db, clock, lambda: len(owner.requests) == 2 and len(backup.requests) == 2)
            assert owner.requests[1]["kind"] == "repeat"
            with db.transaction() as conn:  # what the ack routes do (tested below)
                conn.execute("UPDATE alerts SET acked_at = ?, acked_by = 'wang'", (clock.t,))
            clock.t = T0 + 89 * 60  # no repeat once acknowledged
            svc.tick(db, clock())
            clock.t = T0 + 90 * 60  # 60 min after the ack: a reminder
            settle(svc, db, clock, lambda: len(owner.requests) == 3)
            assert owner.requests[2]["kind"] == "reminder"
            ingest(db, f"xd/v1/{STORE}/events", events([(2, alert("cleared", T0 + 5400))]),
                   "w-1", clock.t)
            settle(svc, db, clock, lambda: len(owner.requests) == 4 and len(backup.requests) == 4)
        finally:
            svc.stop()
    kinds = [r["kind"] for r in owner.requests]
    assert kinds == ["alert", "repeat", "reminder", "all_clear"]
    assert [r["kind"] for r in backup.requests] == ["escalation", "repeat", "reminder",
                                                    "all_clear"]


def test_quiet_hours_hold_a_warning_not_a_critical(
        db_target: Path | str, receiver: Callable[..., Receiver]) -> None:
    rx = receiver()
    clock = Clock()  # 23:06 in Shanghai
    policy = EscalationPolicy(quiet_start="22:00", quiet_end="07:00")
    svc = service(db_target, [hook("wang", rx.url)], clock, policy)
    with Database.open(db_target) as db:
        ingest(db, f"xd/v1/{STORE}/events", events([
            (1, alert("raised", T0, severity="warning", rule="warm")),
            (2, alert("raised", T0, severity="critical", rule="hot"))]), "w-1", T0)
        svc.start()
        try:
            settle(svc, db, clock, lambda: len(rx.requests) == 1)
            for _ in range(5):
                svc.tick(db, clock())
            time.sleep(0.2)
        finally:
            svc.stop()
    assert [r["alert"]["rule"] for r in rx.requests] == ["hot"]


def test_apprise_mailto_reaches_a_local_smtp_server(
        db_target: Path | str, smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    clock = Clock()
    url = f"mailto://127.0.0.1:{port}?from=alerts@xd.test&to=owner@xd.test&mode=insecure"
    svc = service(db_target, [Contact(name="wang", apprise=(url,))], clock)
    raised = alert("raised", T0, started_at=T0 - 900)  # 22:51:40 in Shanghai
    with Database.open(db_target) as db:
        ingest(db, f"xd/v1/{STORE}/events", events([(1, raised)]), "w-1", T0)
        svc.start()
        try:
            settle(svc, db, clock, lambda: len(box.messages) == 1)
        finally:
            svc.stop()
        assert deliveries(db)[0][2] is True
    mail = box.messages[0]
    assert mail.rcpt_tos == ["owner@xd.test"]
    msg = email.message_from_bytes(mail.content)
    text = "".join(str(part.get_payload(decode=True), "utf-8") for part in msg.walk()
                   if part.get_content_type() == "text/plain")
    # In Chinese (the contact set no language), the start in the store's time zone.
    subject = str(email.header.make_header(email.header.decode_header(msg["Subject"])))
    assert subject == "冰箱报警"
    assert "store-001 fridge-1：严重，温度过高（自 2025/6/15 22:51 起）" in text, text
    assert "产品 9.1 °C，高于 8 °C 已 15 分钟" in text  # from the reason and numbers
    assert "确认告警：" in text and "/ack/store-001/fridge-1/hot/1749999100000?t=wang." in text


def test_redelivered_and_replayed_alert_events_change_nothing(
        db_target: Path | str, receiver: Callable[..., Receiver]) -> None:
    rx = receiver()
    clock = Clock()
    svc = service(db_target, [hook("wang", rx.url)], clock)
    raised = events([(1, alert("raised", T0))])
    with Database.open(db_target) as db:
        topic = f"xd/v1/{STORE}/events"
        assert ingest(db, topic, raised, "w-1", T0).alerts == 1
        assert ingest(db, topic, raised, "w-1", T0).alerts == 0  # broker redelivery
        # The same change replayed by the edge under another boot and seq.
        assert ingest(db, topic, events([(7, alert("raised", T0))], boot=2), "w-1", T0).alerts == 0
        # Out of order: the clear first, then an older update; still cleared.
        assert ingest(db, topic, events([(3, alert("cleared", T0 + 600))]), "w-1", T0).alerts == 1
        assert ingest(db, topic, events([(2, alert("updated", T0 + 300))]), "w-1", T0).alerts == 0
        svc.tick(db, clock())
        rows = db.conn.execute("SELECT state, message FROM alerts").fetchall()
        assert [tuple(r) for r in rows] == [("cleared", "product 9.1 °C (cleared)")]
        assert db.count("alert_notifications") == 1  # "resolved": it was over before told
        # Terminal-only alerts are kept and shown, never sent.
        ingest(db, topic, events([(4, alert("raised", T0, "warning", "door", "terminal"))]),
               "w-1", T0)
        svc.tick(db, clock())
        assert db.count("alert_notifications") == 1 and db.count("alerts") == 2


def _request(url: str, method: str = "GET", body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    r = http_request(url, method, data=body, headers=headers, timeout=5)
    return r.status, r.body


def test_ack_via_api_and_via_link_records_who_when_and_corrective_action(
        db_target: Path | str) -> None:
    db_path = db_target
    with Database.open(db_path) as db:
        ingest(db, f"xd/v1/{STORE}/events", events([(1, alert("raised", T0))]), "w-1", T0)
    api = Api(db_path, api_token=TOKEN, alert_link_secret=LINK_SECRET)
    with HttpServer(api, "127.0.0.1", 0) as server:
        base = server.url.rstrip("/")
        auth = {"Authorization": f"Bearer {TOKEN.decode()}"}  # reads need a role too
        code, body = _request(f"{base}/api/stores/{STORE}/alerts?state=active", headers=auth)
        assert code == 200 and [a["id"] for a in json.loads(body)["alerts"]] == [
            "fridge-1/hot/1000000"]
        ack_url = f"{base}/api/alerts/{STORE}/fridge-1/hot/1000000/ack"
        payload = json.dumps({"by": "wang", "corrective_action": "moved stock"}).encode()
        json_ct = {"Content-Type": "application/json"}
        assert _request(ack_url, "POST", payload, json_ct)[0] == 401
        assert _request(ack_url, "POST", payload, json_ct | {
            "Authorization": "Bearer " + "x" * 40})[0] == 403
        code, body = _request(ack_url, "POST", payload, json_ct | {
            "Authorization": f"Bearer {TOKEN.decode()}"})
        assert code == 200
        doc = json.loads(body)
        assert doc["acked_by"] == "wang" and doc["corrective_action"] == "moved stock"
        assert doc["acks"][0]["via"] == "api:127.0.0.1"

        link = ack_link(base, LINK_SECRET, f"{STORE}/fridge-1/hot/1000000", "li")
        code, page = _request(link)
        assert code == 200 and b"<form" in page and b'name="corrective_action"' in page
        assert _request(link.replace("t=li.", "t=li.0"))[0] == 403  # a forged token
        path = urlsplit(link)
        form = f"{path.query}&by=Li+Na&corrective_action=door+shut%2C+probe+checked".encode()
        code, page = _request(f"{base}{path.path}", "POST", form,
                              {"Content-Type": "application/x-www-form-urlencoded"})
        assert code == 200 and "已确认" in page.decode()  # the form's pages: Chinese first
        code, body = _request(f"{base}/api/alerts/{STORE}/fridge-1/hot/1000000", headers=auth)
        doc = json.loads(body)
        assert doc["acked_by"] == "Li Na"
        assert doc["corrective_action"] == "door shut, probe checked"
        assert [(a["by"], a["via"]) for a in doc["acks"]] == [
            ("wang", "api:127.0.0.1"), ("Li Na", "link:li")]


@pytest.mark.e2e
def test_alert_event_through_the_broker_reaches_the_webhook(
        mqtt_settings: Callable[[str], MqttSettings], tmp_path: Path,
        receiver: Callable[..., Receiver]) -> None:
    rx = receiver()
    svc = service(tmp_path / "cloud.sqlite", [hook("wang", rx.url)], Clock(time.time()))
    svc._now = time.time  # the real clock: the worker ticks on its own
    db = tmp_path / "cloud.sqlite"
    worker = IngestWorker(mqtt_settings("cloud-gateway"),
                          CloudSettings(db=db, worker_id="cloud-1"), alerts=svc)
    worker.start()
    svc.start()
    try:
        assert worker.wait_subscribed(10)
        with connected(mqtt_settings(STORE), STORE) as client:
            info = client.publish(f"xd/v1/{STORE}/events",
                                  events([(1, alert("raised", time.time()))]), qos=1)
            info.wait_for_publish(5)
            doc = rx.wait(1)[0]
    finally:
        worker.stop()
        svc.stop()
    assert doc["kind"] == "alert" and doc["alert"]["store"] == STORE
    assert rx.bad_signatures == 0
