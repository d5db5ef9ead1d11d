"""Old and new agents into one cloud: a store on version-1 JSON and a store on the compact
format, through a real Mosquitto (TLS, ACL) into one ingest worker, on SQLite and on
PostgreSQL. Both get their receipts (their outboxes empty) and the cloud holds the same
records from both; a compact message the cloud cannot read is parked, and the rest goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud_gateway.config import CloudSettings
from cloud_gateway.db import Database
from cloud_gateway.ingest import IngestWorker
from devstack.testkit.edge import RunningAgent, edge_config
from devstack.testkit.pg_server import db_settings
from devstack.testkit.wait import wait
from edge.store import EdgeStore, NewEvent, NewReading
from xiaodian.mqtt import MqttSettings, new_client
from xiaodian.wire import compact

Settings = Callable[[str], MqttSettings]
T0 = 1_780_000_000.0


def _records(n: int) -> list[NewReading | NewEvent]:
    out: list[NewReading | NewEvent] = []
    for i in range(n):
        for f in ("fridge-1", "fridge-2"):
            out.append(NewReading(f, i + 1, 3_600_000 + 10_000 * i, T0 + 10 * i + 0.0123,
                                  True, [(0, "ok", 3.0 + (i % 5) / 16),
                                         (1, "missing" if i == 3 else "ok",
                                          None if i == 3 else 4.25)], 1))
        if i % 4 == 0:
            out.append(NewEvent("fridge-1", "door", i + 1, 3_600_000 + 10_000 * i + 5,
                                T0 + 10 * i + 5, True, {"open": i % 8 == 0}, 1))
    return out


def _pending(path: Path) -> int:
    store = EdgeStore.open_readonly(path)
    try:
        return int(store.db.execute("SELECT count(*) FROM outbox").fetchone()[0])
    finally:
        store.close()


def _cloud_rows(db: Path | str, store: str) -> list[tuple[object, ...]]:
    with Database.open_readonly(db) as d:
        readings = [("r", r[0], r[1], round(float(r[2]), 3), r[3], r[4])
                    for r in d.conn.execute(
                        "SELECT device, seq, wall, probes, dev_ms FROM readings"
                        " WHERE store = ? AND device LIKE 'fridge-%' ORDER BY device, seq",
                        (store,))]
        events = [("e", r[0], r[1], round(float(r[2]), 3), r[3], r[4])
                  for r in d.conn.execute(
                      "SELECT device, seq, wall, data, type FROM events"
                      " WHERE store = ? AND device LIKE 'fridge-%' ORDER BY device, seq",
                        (store,))]
    return readings + events


def test_a_json_agent_and_a_compact_agent_share_one_cloud(
    mqtt_settings: Settings, db_target: Path | str, tmp_path: Path
) -> None:
    worker = IngestWorker(mqtt_settings("cloud-gateway"),
                          CloudSettings(**db_settings(db_target), worker_id="cloud-1"))
    worker.start()
    try:
        assert worker.wait_subscribed(10)
        agents = {}
        for store, fmt in (("store-001", "json"), ("store-002", "compact")):
            cfg = edge_config(tmp_path / store, mqtt_settings(store), store=store,
                              publish_interval_s=0.1, readings_interval_s=0.1,
                              wire_format=fmt)
            seed = EdgeStore(cfg.edge.db_path)
            seed.add(_records(30))
            seed.close()
            agents[store] = cfg
        with RunningAgent(agents["store-001"]), RunningAgent(agents["store-002"]):
            for store, cfg in agents.items():
                wait(lambda p=cfg.edge.db_path: _pending(p) == 0, 30,
                     f"{store}'s outbox confirmed by the cloud")
        counts = worker.counters.snapshot()
    finally:
        worker.stop()
    assert counts["parked"] == 0
    old, new = _cloud_rows(db_target, "store-001"), _cloud_rows(db_target, "store-002")
    assert sum(r[0] == "r" for r in old) == 30 * 2
    assert sum(r[0] == "e" and r[5] == "door" for r in old) == 8
    assert old == new  # the same records, whichever format carried them
    # The compact agent sent fewer, larger messages (one per store per pass).
    assert counts["receipts"] >= 2


def test_a_bad_compact_message_is_parked_and_the_next_one_stored(
    mqtt_settings: Settings, db_target: Path | str
) -> None:
    worker = IngestWorker(mqtt_settings("cloud-gateway"),
                          CloudSettings(**db_settings(db_target), worker_id="cloud-1"))
    worker.start()
    settings = mqtt_settings("store-001")
    store = new_client(settings, "store-001")
    store.connect(settings.host, settings.port, settings.keepalive)
    store.loop_start()
    try:
        assert worker.wait_subscribed(10)
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ContentType = compact.CONTENT_TYPE
        good = compact.bundle_payload("store-001", [("events", "fridge-1", 1, [
            {"seq": 1, "type": "door", "fseq": 1, "dev_ms": 5, "wall": T0, "synced": True,
             "data": {"open": True}}])])
        for payload in (bytes([0x21]) + b"garbage", good):
            info = store.publish("xd/v1/store-001/bundle", payload, qos=1, properties=props)
            info.wait_for_publish(5)
            assert info.rc == mqtt.MQTT_ERR_SUCCESS
        # Counted before the ack is handed over: both acked means both committed.
        wait(lambda: worker.counters.snapshot()["acked"] >= 2, 15, "both acknowledged")
        counts = worker.counters.snapshot()
    finally:
        store.disconnect()
        store.loop_stop()
        worker.stop()
    assert (counts["parked"], counts["stored"]) == (1, 1)
    with Database.open_readonly(db_target) as d:
        (reason,) = [r[0] for r in d.conn.execute("SELECT reason FROM dead_letters")]
    assert "not deflate data" in reason
