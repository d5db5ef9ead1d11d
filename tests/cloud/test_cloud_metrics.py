"""`/metrics` on the cloud (#16 point 6): a real ingest worker behind a real broker, its
counters, queue and lag, and the fleet's state, in the Prometheus text format, for
operators only."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt

from cloud_gateway import accounts
from cloud_gateway.db import Database
from cloud_gateway.ingest_core import ingest
from cloud_gateway.web import Api, HttpServer
from devstack.testkit.edge import ingest_worker
from devstack.testkit.http_client import get
from devstack.testkit.prometheus import parse
from devstack.testkit.prometheus import value as _value
from devstack.testkit.wait import wait
from xiaodian.mqtt import MqttSettings, new_client
from xiaodian.wire.payloads import batch_payload, reading_record, state_payload


def test_metrics_count_what_the_worker_ingests(
    tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings]
) -> None:
    db_path = tmp_path / "cloud.sqlite"
    now = time.time()
    with Database.open(db_path) as db:
        ingest(db, "xd/v1/store-002/state", state_payload("store-002", False, 1, now, "0.1",
                                                         []), "t", now)
        with db.transaction() as conn:
            accounts.add_user(conn, "ops", "operator", [], "ops-password-1234", now)
            accounts.add_user(conn, "tech", "technician", ["store-001"], "tech-password-1234",
                              now)
            _i, ops = accounts.create_token(conn, "ops", "prometheus", [], now)
            _j, tech = accounts.create_token(conn, "tech", "laptop", [], now)
    store = new_client(mqtt_settings("store-001"), "store-001")
    store.connect(mqtt_settings("store-001").host, mqtt_settings("store-001").port)
    store.loop_start()
    try:
        with ingest_worker(mqtt_settings("cloud-gateway"), db_path) as worker, \
                HttpServer(Api(db_path, worker.status), "127.0.0.1", 0) as server:
            def scrape() -> dict[str, list[str]]:
                r = get(server.url + "metrics", headers={"Authorization": f"Bearer {ops}"})
                assert r.status == 200
                assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
                return parse(r.body.decode())

            before = scrape()
            assert _value(before, "xiaodian_ingest_stored_total") == 0
            assert _value(before, "xiaodian_ingest_queue_depth") == 0
            assert _value(before, "xiaodian_ingest_lag_seconds") == 0
            info = store.publish("xd/v1/store-001/state", state_payload(
                "store-001", True, 1, time.time(), "0.1", ["fridge-1"]), qos=1, retain=True)
            info.wait_for_publish(5)
            for first in (1, 6, 1):  # the last one again: duplicates, not stored twice
                records = [reading_record(s, s, 1000 * s, time.time(), True,
                                          [(0, "ok", 3.0), (1, "ok", 3.5)])
                           for s in range(first, first + 5)]
                store.publish("xd/v1/store-001/telemetry", batch_payload(
                    "readings", "store-001", "fridge-1", 1, records), qos=1).wait_for_publish(5)
            wait(lambda: _value(scrape(), "xiaodian_ingest_duplicates_total") == 5, 10,
                 "the worker's counters on /metrics")
            # A message the database thread cannot commit yet (we hold SQLite's write
            # lock) waits in the queue, and the lag grows with its age.
            lock = sqlite3.connect(db_path, timeout=5, isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")
            try:
                store.publish("xd/v1/store-001/telemetry", batch_payload(
                    "readings", "store-001", "fridge-1", 1, [reading_record(
                        11, 11, 11_000, time.time(), True, [(0, "ok", 3.0)])]),
                    qos=1).wait_for_publish(5)
                wait(lambda: _value(scrape(), "xiaodian_ingest_lag_seconds") >= 0.3, 10,
                     "a lag while the database is held")
                held = scrape()
                assert _value(held, "xiaodian_ingest_queue_depth") == 0  # taken, uncommitted
            finally:
                lock.execute("ROLLBACK")
                lock.close()
            wait(lambda: _value(scrape(), "xiaodian_ingest_stored_total") == 11, 10,
                 "the held message stored")
            after = scrape()
            assert _value(after, "xiaodian_ingest_lag_seconds") == 0
            assert _value(after, "xiaodian_ingest_stored_total") == 11
            assert _value(after, "xiaodian_ingest_received_total") >= 4
            assert _value(after, "xiaodian_stores", 'state="online"') == 1
            assert _value(after, "xiaodian_stores", 'state="offline"') == 1
            assert _value(after, "xiaodian_fridges", 'state="online"') == 1
            assert _value(after, "xiaodian_alerts_open", 'severity="critical"') == 0
            assert _value(after, "xiaodian_ingest_subscribed") == 1
            # Operators only: no credential, or a technician's, is refused.
            assert get(server.url + "metrics").status == 401
            assert get(server.url + "metrics",
                       headers={"Authorization": f"Bearer {tech}"}).status == 403
    finally:
        store.disconnect()
        store.loop_stop()
    assert isinstance(store, mqtt.Client)
