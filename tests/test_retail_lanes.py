"""A pickup handover against the simulated smart fridge running the real firmware: the
terminal unlocks the lane door over serial, the clerk takes the items, the load cells say
how many left; and outside a handover, an item gone without a sale is flagged."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edge.agent import Agent
from edge.config import EdgeConfig, EdgeSettings, FridgePort, PickupSettings
from edge.scan.pickup import PickupCodec
from hw_sim.fridge import FridgeDevice, SimFridge
from hw_sim.runner import Runner
from hw_sim.scenario import Scenario
from xiaodian.config import build
from xiaodian.mqtt import MqttSettings, new_client
from xiaodian.retail import (
    Catalogue,
    CatalogueItem,
    Location,
    Order,
    OrderLine,
    catalogue_payload,
    order_payload,
)

STORE = "store-001"
KEY = bytes(range(50, 82))
MILK = "06901234567892"
EGGS = "06901234567809"


def wait(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def publish(settings: MqttSettings, topic: str, payload: bytes, retain: bool = False) -> None:
    client = new_client(settings, f"cloud-test-{time.monotonic_ns()}")
    client.connect(settings.host, settings.port, settings.keepalive)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


class Counter:
    """The counter page's HTTP API, as the page uses it."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}/api/counter"

    def post(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(f"{self.base}/{action}", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=15) as r:
            return dict(json.load(r))

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.base}?since=-1", timeout=15) as r:
            return dict(json.load(r))


@contextmanager
def store(tmp_path: Path, mqtt: MqttSettings) -> Iterator[tuple[SimFridge, Agent, Counter]]:
    scenario = {
        "sim": {"seed": 2, "speed": 10.0, "link_dir": "run", "truth": "run/truth.jsonl"},
        "fridges": [{"id": "fridge-1", "controller": "firmware", "door_openings_per_hour": 0,
                     "defrost_every_h": 0, "sample_interval_s": 10, "lanes": [1000, 1200],
                     "lock": True}],
    }
    runner = Runner(build(scenario, Scenario, tmp_path / "scenario.toml"))
    key = tmp_path / "pickup.key"
    key.write_text(KEY.hex())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agent = Agent(EdgeConfig(
        edge=EdgeSettings(store_id=STORE, data_dir=tmp_path / "edge", publish_interval_s=0.1,
                          readings_interval_s=0.1, kiosk_port=port),
        mqtt=mqtt, fridges=(FridgePort("fridge-1", runner.scenario.sim.link_dir / "fridge-1"),),
        pickup=PickupSettings(key)))
    done = threading.Event()
    sim = threading.Thread(target=runner.run, daemon=True)
    edge = threading.Thread(target=agent.run, kwargs={"until": done.is_set}, daemon=True)
    sim.start()
    edge.start()
    device = next(d for d in runner.devices if d.id == "fridge-1")
    assert isinstance(device, FridgeDevice)
    try:
        yield device.sim, agent, Counter(port)
    finally:
        done.set()
        edge.join(timeout=15)
        runner.request_stop()
        sim.join(timeout=15)
        runner.close()
    assert not edge.is_alive() and not sim.is_alive()


def edge_events(agent: Agent, type_: str) -> list[dict[str, Any]]:
    con = sqlite3.connect(f"file:{agent.config.edge.db_path}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute("SELECT data FROM events WHERE type=? ORDER BY boot, seq",
                           (type_,)).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()
    return [json.loads(r[0]) for r in rows]


def test_handover_unlocks_the_lane_weighs_what_was_taken_and_flags_a_theft(
    tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings]
) -> None:
    cloud = mqtt_settings("cloud-gateway")
    with store(tmp_path, mqtt_settings(STORE)) as (f, agent, counter):
        wait(lambda: agent.uplink.retail_subscribed, 15, "orders subscription")
        publish(cloud, f"xd/v1/{STORE}/catalogue", catalogue_payload(Catalogue(STORE, 1, (
            CatalogueItem(MILK, "Milk 1L", "piece", 7, "chilled", Location("fridge-1", 0, 250)),
            CatalogueItem(EGGS, "Eggs x6", "piece", 14, "chilled",
                          Location("fridge-1", 1, 600))))), retain=True)
        now = time.time()
        publish(cloud, f"xd/v1/{STORE}/orders", order_payload(Order(
            7, STORE, "pickup", "Wang L.", now, now + 3600, (OrderLine(MILK, 2),
                                                            OrderLine(EGGS, 1)))))
        wait(lambda: [o for o in counter.state()["orders"] if o["order"] == 7], 15, "order 7")
        wait(lambda: edge_events(agent, "lanes"), 20, "settled lane weights")
        assert not f.open_door()  # locked until the terminal unlocks it

        v = counter.post("scan", {"code": "]Q1" + PickupCodec(STORE, KEY).issue(7, now + 3600)})
        assert v["ok"] and v["title"] == "Order 7: Wang L."
        assert [ln["where"] for ln in v["handover"]["lines"]] == ["fridge-1 lane 0",
                                                                  "fridge-1 lane 1"]
        wait(lambda: counter.state()["handover"]["fridges"]["fridge-1"]["phase"] == "unlocked",
             15, "the lane door unlocked")
        assert f.open_door()
        f.take(0, 500)  # two milk, as ordered
        f.take(1, 1200)  # two boxes of eggs: one more than ordered
        wait(lambda: counter.state()["handover"]["fridges"]["fridge-1"]["phase"] == "open", 15,
             "door open at the terminal")
        f.close_door()
        h = wait(lambda: (s := counter.state()["handover"]) and s["waiting_for"] is None and s,
                 30, "weights settled after the door closed")
        assert h["differences"] == [[EGGS, 1]]
        assert [(ln["item"], ln["taken"]) for ln in h["lines"]] == [(MILK, 2), (EGGS, 2)]
        done = counter.post("confirm", {"order": 7})
        assert done["title"] == "Order 7 picked up, with differences"
        checks = edge_events(agent, "lane_check")
        assert [(c["lane"], c["order"], c["verdict"]) for c in checks] == [
            (0, 7, "ok"), (1, 7, "mismatch")]
        assert checks[1]["expected_grams"] == 600 and checks[1]["measured_grams"] == 0
        stock = [(m["item"], m["qty"], m["order"]) for m in edge_events(agent, "stock")]
        assert sorted(stock) == [(EGGS, -2, 7), (MILK, -2, 7)]
        assert edge_events(agent, "order")[-1]["differences"] == [[EGGS, 1]]

        # Outside a handover: one milk leaves the lane with no sale (the lock is back on,
        # so someone reached in through a gap): a mismatch.
        f.take(0, 250)
        gone = wait(lambda: edge_events(agent, "lane_check")[2:], 30, "the unexplained drop")
        assert gone[0]["verdict"] == "mismatch" and gone[0]["order"] is None
        assert "gone without a sale" in gone[0]["note"]
        # A sale scanned first explains the next one.
        assert counter.post("scan", {"code": "]E06901234567892"})["title"] == "Sale: Milk 1L"
        f.take(0, 250)
        sold = wait(lambda: edge_events(agent, "lane_check")[3:], 30, "the sold item leaving")
        assert sold[0]["verdict"] == "ok"
