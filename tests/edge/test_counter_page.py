"""The counter page in real headless Chromium, against a running agent, a real Mosquitto and
the cloud's ingest: orders arrive over MQTT, codes are scanned (keyboard wedge and serial
scanner), a pickup is confirmed, a forged code is refused, and a pickup done with the
broker down reaches the cloud once it is back."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cloud_gateway.ingest import IngestWorker
from devstack.broker import Broker
from devstack.testkit.browser import browser_page, have_chromium
from devstack.testkit.edge import RunningAgent, free_port, pty_link
from devstack.testkit.mqtt_clients import publish
from devstack.testkit.wait import wait
from edge.config import EdgeConfig, EdgeSettings, PickupSettings, ScannerPort
from xiaodian.mqtt import MqttSettings
from xiaodian.wire.pickup import PickupCodec
from xiaodian.wire.retail import (
    Catalogue,
    CatalogueItem,
    Order,
    OrderLine,
    catalogue_payload,
    order_payload,
)

STORE = "store-001"
KEY = bytes(range(100, 132))
MILK = "06901234567892"
BREAD = "06901234567816"

pytestmark = pytest.mark.skipif(not have_chromium(), reason="/usr/bin/chromium missing")


class Scanner:
    """The device end of a pty: a serial barcode scanner with AIM identifiers and CR LF."""

    def __init__(self, link: Path) -> None:
        self.master = pty_link(link)

    def scan(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r\n")

    def close(self) -> None:
        os.close(self.master)


def cloud_events(tmp_path: Path, type_: str) -> list[dict[str, Any]]:
    con = sqlite3.connect(tmp_path / "cloud.sqlite3")
    try:
        rows = con.execute("SELECT data FROM events WHERE store=? AND type=? ORDER BY device, "
                           "boot, seq", (STORE, type_)).fetchall()
    finally:
        con.close()
    return [json.loads(r[0]) for r in rows]


def test_counter_pickup_refusal_and_offline_pickup_in_chromium(
    tmp_path: Path, broker: Broker, mqtt_settings: Callable[[str], MqttSettings],
    cloud: IngestWorker,
) -> None:
    from playwright.sync_api import expect

    key_file = tmp_path / "pickup.key"
    key_file.write_text(KEY.hex() + "\n")
    key_file.chmod(0o600)
    port = free_port()
    scanner = Scanner(tmp_path / "scanner-1")
    cfg = EdgeConfig(
        edge=EdgeSettings(store_id=STORE, data_dir=tmp_path / "edge", publish_interval_s=0.1,
                          readings_interval_s=0.1, kiosk_port=port),
        mqtt=mqtt_settings(STORE),
        scanners=(ScannerPort("scanner-1", tmp_path / "scanner-1"),),
        pickup=PickupSettings(key_file),
    )
    cloud_mqtt = mqtt_settings("cloud-gateway")
    now = time.time()
    codec = PickupCodec(STORE, KEY)
    # Retained: the terminal gets it when it subscribes.
    publish(cloud_mqtt, f"xd/v1/{STORE}/catalogue", catalogue_payload(Catalogue(STORE, 1, (
        CatalogueItem(MILK, "Milk 1L", "piece", 7, "chilled"),
        CatalogueItem(BREAD, "Bread", "piece", 3, "ambient")))), retain=True)
    try:
        with RunningAgent(cfg) as agent:
            wait(lambda: agent.uplink.retail_subscribed, 15, "orders subscription")
            # A message that does not parse is parked and acknowledged: the next ones flow.
            publish(cloud_mqtt, f"xd/v1/{STORE}/orders", b'{"v": 1, "type": "order"}')
            for oid, who in ((101, "Wang L."), (102, "Li M.")):
                publish(cloud_mqtt, f"xd/v1/{STORE}/orders", order_payload(Order(
                    oid, STORE, "pickup", who, now, now + 3600,
                    (OrderLine(MILK, 2), OrderLine(BREAD, 1)))))
            with browser_page({"width": 1280, "height": 900}) as page:
                page.goto(f"http://127.0.0.1:{port}/counter?lang=en")  # the English words
                # Both orders came over MQTT (stored, then acknowledged) and are listed.
                expect(page.locator("#orders li[data-order='102']")).to_contain_text("Li M.",
                                                                                     timeout=20000)
                expect(page.locator("#orders")).to_contain_text("Milk 1L ×2")
                expect(page.locator("#net")).to_have_text("online")

                # 1. A pickup typed by a keyboard-wedge scanner into the focused field.
                page.keyboard.type("]Q1" + codec.issue(101, now + 3600))
                page.keyboard.press("Enter")
                expect(page.locator("#verdict.ok #verdict-title")).to_have_text(
                    "Order 101: Wang L.")
                expect(page.locator("#lines")).to_contain_text("Bread")
                page.click("#confirm")
                expect(page.locator("#verdict-title")).to_have_text("Order 101 picked up")
                expect(page.locator("#orders li[data-order='101']")).to_have_count(0)

                # 2. A forged code from the serial scanner: big red, and why.
                scanner.scan("]Q1" + PickupCodec(STORE, bytes(32)).issue(102, now + 3600))
                expect(page.locator("#verdict.bad")).to_have_attribute("data-reason", "bad_mac")
                expect(page.locator("#verdict-message")).to_contain_text("NOT a genuine")
                # The same order's code once more: already picked up.
                page.keyboard.type(codec.issue(101, now + 3600))
                page.keyboard.press("Enter")
                expect(page.locator("#verdict.bad")).to_have_attribute(
                    "data-reason", "already_redeemed")

                # 3. The shop's internet goes down: the pickup still works, and syncs later.
                broker.stop()
                expect(page.locator("#net")).to_contain_text("offline", timeout=15000)
                page.keyboard.type(codec.issue(102, now + 3600))
                page.keyboard.press("Enter")
                expect(page.locator("#verdict.ok #verdict-title")).to_have_text(
                    "Order 102: Li M.")
                # The clerk checks an item with the scanner: the handover stays on screen.
                page.keyboard.type("]E06901234567816")
                page.keyboard.press("Enter")
                expect(page.locator("#verdict-message")).to_have_text(
                    "In order 102: 1 ordered.")
                expect(page.locator("#verdict.ok #lines")).to_contain_text("Milk 1L")
                page.click("#report")  # one bread short: the clerk says so
                page.fill(f"input[data-item='{BREAD}']", "0")
                page.click("#send-diff")
                expect(page.locator("#verdict-title")).to_have_text(
                    "Order 102 picked up, with differences")
                expect(page.locator("#verdict-message")).to_contain_text("Bread -1")
                expect(page.locator("#unsent")).to_contain_text("to sync")
                assert not [e for e in cloud_events(tmp_path, "order") if e["order"] == 102
                            and e["state"] == "picked_up"]
                broker.start()
                expect(page.locator("#unsent")).to_have_text("all synced", timeout=45000)
    finally:
        scanner.close()
    # Everything reached the cloud exactly once.
    con = sqlite3.connect(cfg.edge.db_path)
    try:
        edge_ids = sorted(r[0] for r in con.execute("SELECT id FROM stock_movements"))
    finally:
        con.close()
    con = sqlite3.connect(cfg.edge.db_path)
    try:
        parked = con.execute("SELECT topic, reason FROM retail_rejects").fetchall()
    finally:
        con.close()
    assert len(parked) == 1 and parked[0][0] == f"xd/v1/{STORE}/orders"
    stock = cloud_events(tmp_path, "stock")
    assert sorted(s["id"] for s in stock) == edge_ids
    assert {(s["order"], s["item"], s["qty"]) for s in stock} == {
        (101, MILK, -2), (101, BREAD, -1), (102, MILK, -2)}
    progress = [(e["order"], e["state"], e["differences"]) for e in cloud_events(tmp_path, "order")]
    assert progress == [(101, "received", []), (102, "received", []), (101, "picked_up", []),
                        (102, "picked_up", [[BREAD, -1]])]
    assert [e["reason"] for e in cloud_events(tmp_path, "pickup")] == ["bad_mac",
                                                                       "already_redeemed"]
