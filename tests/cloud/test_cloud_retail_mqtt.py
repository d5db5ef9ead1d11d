"""Catalogues, orders and stock end to end on the cloud side: HTTP API -> SQLite -> a real
Mosquitto (TLS, ACL) -> a paho client holding the store's own certificate, and stock
events from that store back through the ingest worker."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from cloud_gateway.commands import CommandPublisher
from cloud_gateway.config import CloudSettings
from cloud_gateway.db import Database
from cloud_gateway.downlink import DownlinkSender
from cloud_gateway.ingest import IngestWorker
from cloud_gateway.web import Api, HttpServer
from devstack.broker import Broker
from devstack.testkit.http_client import local
from devstack.testkit.http_client import request as http_request
from devstack.testkit.mqtt_clients import connected
from devstack.testkit.pg_server import db_settings, db_toml
from devstack.testkit.wait import wait
from xiaodian.mqtt import MqttSettings
from xiaodian.pki import DevPki, load_pickup_key, make_pickup_key
from xiaodian.wire import retail as contract
from xiaodian.wire.payloads import batch_payload, event_record
from xiaodian.wire.pickup import PickupCodec

Settings = Callable[[str], MqttSettings]
TOKEN = "retail-" + "y" * 40
MILK = "06901234567892"
EGGS = "06901234567809"
ORDERS = "xd/v1/store-001/orders"
CATALOGUE = {"items": [
    {"item": MILK, "name": "Fresh milk 1 L", "unit": "piece", "shelf_life_days": 7,
     "storage": "chilled", "location": {"fridge": "fridge-1", "lane": 2, "unit_grams": 1030}},
    {"item": EGGS, "name": "Eggs x6", "unit": "piece", "shelf_life_days": 21,
     "storage": "chilled", "location": None},
]}


@dataclass
class Cloud:
    db: Path | str
    server: HttpServer
    sender: DownlinkSender
    publisher: CommandPublisher
    keys: Path

    def call(self, method: str, path: str, body: Any = None,
             token: str | None = TOKEN) -> tuple[int, Any]:
        url = local(self.server.port, path)
        if body is None:  # a read: its credentials only
            r = http_request(url, method, token=token, timeout=15)
        else:
            r = http_request(url, method, body, token=token, timeout=15)
        return r.status, r.json()


@pytest.fixture
def cloud(mqtt_settings: Settings, tmp_path: Path, pki: DevPki,
          db_target: Path | str) -> Iterator[Cloud]:
    """Worker, downlink sender and API, on SQLite and on PostgreSQL (conftest.db_target)."""
    db = db_target
    keys_root = tmp_path / "pki"
    make_pickup_key(keys_root, "store-001")
    gw = mqtt_settings("cloud-gateway")
    worker = IngestWorker(gw, CloudSettings(**db_settings(db), worker_id="cloud-1"))
    publisher = CommandPublisher(gw, "cloud-1-down")
    # A long retry: the tests say when to retry (kick), so nothing depends on timing.
    sender = DownlinkSender(db, publisher, retry_s=3600, publish_timeout_s=5.0)
    worker.start()
    publisher.start()
    sender.start()
    try:
        assert worker.wait_subscribed(10) and publisher.wait_connected(10)
        api = Api(db, worker.status, api_token=TOKEN.encode(), downlink=sender,
                  pickup_keys_dir=keys_root / "pickup")
        with HttpServer(api, "127.0.0.1", 0) as server:
            yield Cloud(db, server, sender, publisher, keys_root / "pickup")
    finally:
        sender.stop()
        publisher.stop()
        worker.stop()


def topic_payload(msg: Any) -> tuple[str, bytes]:
    return msg.topic, msg.payload


def send_stock(settings: MqttSettings, store: str, seq0: int,
               moves: list[tuple[str, str, int]], client: mqtt.Client | None = None) -> None:
    """Publish stock movements as the store's edge does: events of device `ledger`; on
    `client` if given (the store's one connection: its client id is its certificate's CN)."""
    recs = [event_record(seq0 + n, "stock", None, None, time.time(), True,
                         contract.movement_data(contract.Movement(uuid.uuid4().hex, k, i, q)))
            for n, (k, i, q) in enumerate(moves)]
    payload = batch_payload("events", store, "ledger", 1, recs)
    if client is not None:
        client.publish(f"xd/v1/{store}/events", payload, qos=1).wait_for_publish(5)
        return
    with connected(settings, store) as own:
        own.publish(f"xd/v1/{store}/events", payload, qos=1).wait_for_publish(5)


def test_catalogue_is_retained_and_orders_reach_only_their_store(
    cloud: Cloud, collect: Callable[..., Any], mqtt_settings: Settings
) -> None:
    # The store's one connection (the broker makes its client id its CN): it listens to its
    # orders, later to its catalogue, and sends its stock events.
    orders = collect("store-001", ORDERS)
    status, body = cloud.call("PUT", "/api/stores/store-001/catalogue", CATALOGUE)
    assert status == 200, body
    assert body["version"] == 1 and body["published_at"] is not None
    cloud.call("PUT", "/api/stores/store-002/catalogue", {"items": CATALOGUE["items"][:1]})
    # A terminal that subscribes later (a new one, or after a reinstall) gets it at once.
    orders.subscribe("xd/v1/store-001/catalogue")
    msg = orders.wait(1, topic="xd/v1/store-001/catalogue")[0]
    assert msg.retain and msg.qos == 1
    cat = contract.parse_downlink(msg.topic, msg.payload)
    assert isinstance(cat, contract.Catalogue) and cat.version == 1
    assert cat.items[0].location == contract.Location("fridge-1", 2, 1030)
    # Store 002 asking for everyone's catalogue is refused (the broker's subscribe rules);
    # asking for its own, it gets its own only.
    nosy = collect("store-002", "xd/v1/+/catalogue")
    [code] = nosy.subscribe("xd/v1/store-002/catalogue")
    assert not code.is_failure
    assert [m.topic for m in nosy.wait(1)] == ["xd/v1/store-002/catalogue"]

    status, body = cloud.call("GET", "/api/stores/store-001/catalogue")
    assert status == 200 and body["version"] == 1 and len(body["items"]) == 2

    # No stock yet: refused, with what is short.
    order = {"items": [{"item": MILK, "qty": 2}], "mode": "pickup", "customer": "Wang L.",
             "expires_in_s": 3600}
    status, body = cloud.call("POST", "/api/stores/store-001/orders", order)
    assert status == 409, body
    assert body["short"] == [{"item": MILK, "wanted": 2, "available": 0}]

    send_stock(mqtt_settings("store-001"), "store-001", 1,
               [("delivery", MILK, 5), ("delivery", EGGS, 6), ("sale", EGGS, -1)],
               client=orders.client)
    wait(lambda: cloud.call("GET", "/api/stores/store-001/stock")[1]["items"],
         timeout=10, what="stock from the store's events")
    status, body = cloud.call("POST", "/api/stores/store-001/orders", order)
    assert status == 201, body
    oid, code = body["id"], body["pickup_code"]
    assert body["order"]["state"] == "open" and body["order"]["published_at"] is not None

    got = contract.parse_downlink(*topic_payload(orders.wait(1, topic=ORDERS)[0]))
    assert isinstance(got, contract.Order)
    assert (got.id, got.store, got.mode, got.customer) == (oid, "store-001", "pickup", "Wang L.")
    assert got.lines == (contract.OrderLine(MILK, 2),)
    # The terminal verifies the code offline with the same per-store key.
    key = load_pickup_key(cloud.keys / "store-001.key")
    ticket = PickupCodec("store-001", key).verify(code, time.time())
    assert ticket.order_id == oid and ticket.expires_at == got.expires

    status, stock = cloud.call("GET", "/api/stores/store-001/stock")
    by_item = {i["item"]: i for i in stock["items"]}
    assert (by_item[MILK]["on_hand"], by_item[MILK]["reserved"],
            by_item[MILK]["available"]) == (5, 2, 3)
    assert by_item[EGGS]["available"] == 5 and by_item[MILK]["name"] == "Fresh milk 1 L"
    # A delivery order gets no pickup code: the counter would refuse it ("not for pickup").
    status, body = cloud.call("POST", "/api/stores/store-001/orders",
                              {**order, "items": [{"item": EGGS, "qty": 1}], "mode": "delivery"})
    assert status == 201 and body["pickup_code"] is None, body
    assert contract.parse_downlink(*topic_payload(orders.wait(2, topic=ORDERS)[1])).mode \
        == "delivery"

    status, body = cloud.call("POST", f"/api/stores/store-001/orders/{oid}/cancel",
                              {"reason": "customer called"})
    assert status == 200 and body["state"] == "cancelled"
    cancel = contract.parse_downlink(*topic_payload(orders.wait(3, topic=ORDERS)[2]))
    assert cancel == contract.Cancel(oid, "store-001", "customer called")
    status, body = cloud.call("GET", "/api/stores/store-001/orders")
    assert [(o["id"], o["state"]) for o in body["orders"]] == [(oid + 1, "open"),
                                                                (oid, "cancelled")]
    assert "pickup_code" not in json.dumps(body)  # reads never show codes


def test_writes_need_the_token_and_valid_bodies(cloud: Cloud) -> None:
    assert cloud.call("PUT", "/api/stores/store-001/catalogue", CATALOGUE, token=None)[0] == 401
    assert cloud.call("PUT", "/api/stores/store-001/catalogue", CATALOGUE, token="x")[0] == 403
    assert cloud.call("POST", "/api/stores/store-001/orders", {}, token="nope")[0] == 403
    status, body = cloud.call("PUT", "/api/stores/store-001/catalogue",
                              {"items": [dict(CATALOGUE["items"][0], storage="warm")]})
    assert status == 400 and "storage" in body["error"]
    status, body = cloud.call("POST", "/api/stores/store-001/orders",
                              {"items": [{"item": MILK, "qty": 1}], "customer": "A"})
    assert status == 404 and "no catalogue" in body["error"]
    cloud.call("PUT", "/api/stores/store-003/catalogue", CATALOGUE)
    status, body = cloud.call("POST", "/api/stores/store-003/orders",
                              {"items": [{"item": MILK, "qty": 1}], "customer": "A"})
    assert status == 503 and "no pickup key for store-003" in body["error"]
    assert cloud.call("DELETE", "/api/stores/store-001/catalogue")[0] == 405
    assert cloud.call("GET", "/api/stores/store-001/orders/77")[0] == 404


def test_an_order_made_while_the_broker_is_down_is_sent_when_it_is_back(
    cloud: Cloud, broker: Broker, collect: Callable[..., Any], mqtt_settings: Settings
) -> None:
    send_stock(mqtt_settings("store-001"), "store-001", 1, [("delivery", EGGS, 3)])
    assert cloud.call("PUT", "/api/stores/store-001/catalogue", CATALOGUE)[0] == 200
    wait(lambda: cloud.call("GET", "/api/stores/store-001/stock")[1]["items"],
         timeout=10, what="stock")
    # The terminal, as the edge connects: its session outlives the outage, and the order
    # may come the moment the cloud's publisher is back, before anyone could subscribe anew.
    got: list[contract.Order] = []
    terminal = _store_session(mqtt_settings("store-001"), "store-001-terminal", got)
    broker.stop()
    wait(lambda: not cloud.publisher.wait_connected(0), timeout=10, what="publisher to notice")
    status, body = cloud.call("POST", "/api/stores/store-001/orders",
                              {"items": [{"item": EGGS, "qty": 3}], "customer": "Zhao",
                               "mode": "delivery"})
    assert status == 201, body  # stored and reserved: the cloud owes it to the store now
    assert body["order"]["published_at"] is None
    with Database.open(cloud.db) as db:
        row = db.conn.execute("SELECT attempts, last_error FROM downlink WHERE kind = 'order'"
                              ).fetchone()
    assert row[0] >= 1 and "not connected" in row[1]
    broker.start()
    try:
        # Sent as soon as the publisher reconnects: no wait for the sender's retry_s.
        wait(lambda: got, timeout=10, what="the order")
    finally:
        terminal.disconnect()
        terminal.loop_stop()
    assert got[0].id == body["id"] and got[0].mode == "delivery"
    wait(lambda: cloud.call("GET", f"/api/stores/store-001/orders/{got[0].id}")[1]
         ["published_at"], timeout=10, what="published_at")


def test_cli_pushes_a_catalogue_creates_an_order_and_shows_stock(
    tmp_path: Path, pki: DevPki, broker: Broker, collect: Callable[..., Any],
    mqtt_settings: Settings, capsys: pytest.CaptureFixture[str], db_target: Path | str
) -> None:
    from devstack.cli import main

    tls = pki.client("cloud-gateway")
    make_pickup_key(tmp_path / "pki", "store-001")
    cfg = tmp_path / "cloud.toml"
    cfg.write_text(
        f'[cloud]\n{db_toml(db_target)}worker_id = "cli-test"\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        f'[mqtt.tls]\nca = "{tls.ca}"\ncert = "{tls.cert}"\nkey = "{tls.key}"\n'
        f'[pickup]\nkeys_dir = "{tmp_path / "pki" / "pickup"}"\n')
    cat = tmp_path / "catalogue.toml"
    cat.write_text(
        '[[items]]\nitem = "06901234567892"\nname = "Fresh milk 1 L"\nunit = "piece"\n'
        'shelf_life_days = 7\nstorage = "chilled"\n'
        'location = { fridge = "fridge-1", lane = 0, unit_grams = 1030 }\nprice_fen = 1250\n')
    orders = collect("store-001", ORDERS)
    assert main(["cloud", "catalogue", "push", "store-001", str(cat), "--config", str(cfg)]) == 0
    assert json.loads(capsys.readouterr().out) == {"store": "store-001", "version": 1,
                                                   "items": 1, "priced": 1, "sent": True}
    orders.subscribe("xd/v1/store-001/catalogue")  # the same store, one connection
    assert orders.wait(1, topic="xd/v1/store-001/catalogue")[0].retain

    argv = ["cloud", "order", "create", "--config", str(cfg), "--store", "store-001",
            "--item", f"{MILK}=2", "--customer", "Li"]
    assert main(argv) == 3  # nothing on hand yet
    assert "not enough stock" in capsys.readouterr().err
    # Stock arrives as the store's events; here stored directly through the ingest function.
    from cloud_gateway.ingest import ingest

    with Database.open(db_target) as db:
        rec = event_record(1, "stock", None, None, time.time(), True, contract.movement_data(
            contract.Movement(uuid.uuid4().hex, "delivery", MILK, 3)))
        ingest(db, "xd/v1/store-001/events",
               batch_payload("events", "store-001", "ledger", 1, [rec]), "t", time.time())
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sent"] and out["pickup_code"].startswith("PK1:")
    [msg] = orders.wait(1, topic=ORDERS)
    got = contract.parse_downlink(msg.topic, msg.payload)
    assert isinstance(got, contract.Order) and got.id == out["id"]

    assert main(["cloud", "stock", "store-001", "--config", str(cfg), "--format", "json"]) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    assert [(i["item"], i["on_hand"], i["reserved"], i["available"]) for i in items] == [
        (MILK, 3, 2, 1)]
    bad = tmp_path / "bad.toml"
    bad.write_text('[[items]]\nitem = "123"\n')
    assert main(["cloud", "catalogue", "push", "store-001", str(bad), "--config", str(cfg)]) == 1
    assert "bad.toml" in capsys.readouterr().err
    # A price that is not whole fen: refused, saying what to write; nothing stored.
    priced = tmp_path / "price.toml"
    priced.write_text(cat.read_text().replace("price_fen = 1250", "price_fen = 12.5"))
    assert main(["cloud", "catalogue", "push", "store-001", str(priced), "--config",
                 str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "price.toml: items[0].price_fen" in err and "write 1250 for ¥12.50" in err


def _store_session(settings: MqttSettings, client_id: str,
                   got: list[contract.Order]) -> Any:
    """The store's terminal as the edge connects: a persistent session (clean_start off,
    an hour's session expiry) subscribed to its orders, collecting them."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from xiaodian.mqtt import new_client

    client = new_client(settings, client_id)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600

    def on_message(c: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        parsed = contract.parse_downlink(msg.topic, bytes(msg.payload))
        if isinstance(parsed, contract.Order):
            got.append(parsed)

    subscribed: list[bool] = []
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe("xd/v1/store-001/orders", qos=1)
    client.on_subscribe = lambda *_: subscribed.append(True)
    client.connect(settings.host, settings.port, settings.keepalive, clean_start=False,
                   properties=props)
    client.loop_start()
    wait(lambda: subscribed, timeout=10, what="the store's SUBACK")
    return client


def test_a_broker_crash_loses_no_catalogue_and_no_unconfirmed_order(
    cloud: Cloud, broker: Broker, collect: Callable[..., Any], mqtt_settings: Settings
) -> None:
    """Mosquitto saves its database every 60 s (`autosave_interval`): SIGKILLed, it forgets
    what it acknowledged since. The cloud sends it all again when it reconnects."""
    import os
    import signal

    send_stock(mqtt_settings("store-001"), "store-001", 1, [("delivery", EGGS, 3)])
    wait(lambda: cloud.call("GET", "/api/stores/store-001/stock")[1]["items"] or None,
         timeout=10, what="stock")
    got: list[contract.Order] = []
    terminal = _store_session(mqtt_settings("store-001"), "store-001-terminal", got)
    terminal.disconnect()  # the shop's line is down: orders wait in its session
    terminal.loop_stop()
    # A clean stop saves the store's session (its subscription) to the broker's database.
    broker.restart()
    assert cloud.publisher.wait_connected(15)
    wait(lambda: cloud.sender.send_pending() == 0, timeout=10, what="resync after restart")
    # Within the next 60 s: a new catalogue version and an order, both PUBACKed...
    assert cloud.call("PUT", "/api/stores/store-001/catalogue", CATALOGUE)[0] == 200
    status, body = cloud.call("POST", "/api/stores/store-001/orders",
                              {"items": [{"item": EGGS, "qty": 1}], "customer": "Qian"})
    assert status == 201 and body["order"]["published_at"] is not None, body
    # ...then the broker dies without saving.
    before = cloud.publisher.connects
    assert broker.pid is not None
    os.kill(broker.pid, signal.SIGKILL)
    broker.stop()  # reaps it
    broker.start()
    wait(lambda: cloud.publisher.connects > before, timeout=15, what="publisher reconnect")
    # The terminal comes back: the order is there within seconds, not after resend_open_s.
    terminal = _store_session(mqtt_settings("store-001"), "store-001-terminal", got)
    try:
        wait(lambda: got, timeout=10, what="the order after the crash")
        assert got[0].id == body["id"]
    finally:
        terminal.disconnect()
        terminal.loop_stop()
    # A new terminal gets the catalogue at once, retained: the cloud published it again.
    # (After the old one: the broker makes the client id the store's certificate name, so
    # a clean-start connection of the same store would end the old one's session.)
    fresh = collect("store-001", "xd/v1/store-001/catalogue")
    msg = fresh.wait(1, 10)[0]
    assert msg.retain
    cat = contract.parse_downlink(msg.topic, msg.payload)
    assert isinstance(cat, contract.Catalogue) and cat.version == 1
