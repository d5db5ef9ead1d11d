"""A wave end to end on the cloud side with a real Mosquitto (TLS, ACL): the supply tick
cuts it off, the manifest reaches the store's connection through the downlink, the store
signs it off short and publishes its receipt; across a broker restart and a resend the
hit pre-order is short, refunded and its resident told exactly once, through Apprise to a
real local receiver."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from receiving_world import AFTER, BEFORE, SHOP_MILK_FEN, WAVE, place, receipt
from sms_gateway import Gateway

from cloud_gateway import resident_notices, shop
from cloud_gateway.commands import CommandPublisher
from cloud_gateway.config import CloudSettings
from cloud_gateway.db import Database
from cloud_gateway.downlink import DownlinkSender
from cloud_gateway.ingest import IngestWorker
from cloud_gateway.resident_notice_sender import send_due
from cloud_gateway.resident_notices import NoticeSettings
from cloud_gateway.supply import dispatch, receiving, scheduler, waves
from devstack.broker import Broker
from devstack.testkit.mqtt_clients import connected
from devstack.testkit.supply_world import MILK, S1, ZONE, seed
from devstack.testkit.wait import wait
from xiaodian.mqtt import MqttSettings
from xiaodian.wire import retail as contract
from xiaodian.wire.payloads import batch_payload, event_record

CFG = scheduler.SchedulerSettings()


def counts(path: Path) -> dict[str, int]:
    with Database.open(path) as db:
        return {t: int(db.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
                for t in ("manifest_receipts", "preorder_shortages", "refunds",
                          "resident_notices", "dead_letters")}


def test_a_short_delivery_is_refunded_and_told_once_across_a_broker_restart(
        mqtt_settings: Callable[[str], MqttSettings], broker: Broker, tmp_path: Path,
        collect: Callable[..., Any]) -> None:
    path = tmp_path / "cloud.sqlite"
    with Database.open(path) as db:
        with db.transaction() as conn:
            seed(conn, BEFORE, stores=(S1,))
            shop.set_price(conn, S1, MILK, SHOP_MILK_FEN, BEFORE)
        a = place(db, S1, "王芳", BEFORE, (MILK, 2), resident="13800000001")
        b = place(db, S1, "李雷", BEFORE + 60, (MILK, 1), resident="13800000002")
        assert scheduler.tick(db, AFTER, "cloud-1", CFG).cut == [(ZONE, WAVE)]
        with db.transaction() as conn:
            waves.advance(conn, ZONE, WAVE, "picked", AFTER)
            dispatch.dispatch(conn, ZONE, WAVE, AFTER)
    gw = mqtt_settings("cloud-gateway")
    worker = IngestWorker(gw, CloudSettings(db=path, worker_id="cloud-1"))
    publisher = CommandPublisher(gw, "cloud-1-down")
    sender = DownlinkSender(path, publisher, retry_s=3600, publish_timeout_s=5.0)
    gateway = Gateway()
    # The store's connection, subscribed before anything is sent to it.
    store = collect(S1, f"xd/v1/{S1}/orders")
    worker.start()
    publisher.start()
    sender.start()
    try:
        assert worker.wait_subscribed(10) and publisher.wait_connected(10)
        # The store gets its manifest (and its two pre-orders) through the downlink.
        sender.kick()
        msgs = [contract.parse_downlink(m.topic, m.payload) for m in store.wait(1, 15)]
        (m,) = [x for x in msgs if isinstance(x, contract.Manifest)]
        milk = next(ln for ln in m.lines if ln.item == MILK)
        shelf = milk.qty - sum(s.qty for s in milk.serves)
        # The clerk finds one piece more than the shelf's missing: b, placed last, is hit.
        data = receipt(m, {MILK: [("short", shelf + 1)]})
        payload = batch_payload("events", S1, "ledger", 1,
                                [event_record(1, "receipt", None, None, AFTER, True, data)])
        store.client.publish(f"xd/v1/{S1}/events", payload, qos=1).wait_for_publish(5)
        wait(lambda: counts(path)["refunds"] == 1, timeout=15, what="the refund")
        store.close()
        first = counts(path)
        # The broker restarts; the terminal, unsure its batch was stored, sends it again.
        broker.restart()
        assert worker.wait_subscribed(15)
        before = worker.status()["duplicates"]
        with connected(mqtt_settings(S1), S1) as again:
            again.publish(f"xd/v1/{S1}/events", payload, qos=1).wait_for_publish(5)
        wait(lambda: worker.status()["duplicates"] > before, timeout=15,
             what="the resent receipt seen as a duplicate")
        assert counts(path) == first and first["dead_letters"] == 0
        with Database.open(path) as db:
            assert [(s["item"], s["qty"]) for s in receiving.order_shortages(db.conn, b)] == [
                (MILK, 1)]
            assert receiving.refunded_fen(db.conn, b) == SHOP_MILK_FEN
            assert receiving.order_shortages(db.conn, a) == []
            kinds = [n.kind for n in resident_notices.for_order(db.conn, b)]
            assert kinds == ["short", "refund"]
            cfg = NoticeSettings(apprise_template=f"json://127.0.0.1:{gateway.port}/sms/{{phone}}")
            # The worker stamped the notices with its own (real) clock.
            assert send_due(db, cfg, "cloud-1", time.time) == 3  # a arrived; b short, refund
            assert send_due(db, cfg, "cloud-1", lambda: time.time() + 3600) == 0
        told_b = [body["message"] for p, body in gateway.got if p == "/sms/13800000002"]
        assert len(told_b) == 2 and any("¥12.90" in t for t in told_b)
    finally:
        gateway.close()
        sender.stop()
        publisher.stop()
        worker.stop()
