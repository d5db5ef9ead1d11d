"""A power cut mid-handover: the real agent process is killed (SIGKILL) while the smart
fridge's door is open, the customer takes the rest and shuts the door while no agent runs,
and the restarted agent carries on with the same handover: the weights at the unlock are
still known, and the lanes as they are now say what was taken."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from test_retail_lanes import EGGS, KEY, MILK, STORE, Counter, publish, wait

from edge.scan.pickup import PickupCodec
from hw_sim.fridge import FridgeDevice
from hw_sim.runner import Runner
from hw_sim.scenario import Scenario
from xiaodian.config import build
from xiaodian.mqtt import MqttSettings
from xiaodian.retail import (
    Catalogue,
    CatalogueItem,
    Location,
    Order,
    OrderLine,
    catalogue_payload,
    order_payload,
)


def _toml(v: object) -> str:
    return json.dumps(str(v))  # a JSON string is a valid TOML string


def edge_toml(tmp_path: Path, mqtt: MqttSettings, port: int, link: Path) -> Path:
    key = tmp_path / "pickup.key"
    key.write_text(KEY.hex())
    assert mqtt.tls is not None
    path = tmp_path / "edge.toml"
    path.write_text(
        f"[edge]\nstore_id = {_toml(STORE)}\ndata_dir = {_toml(tmp_path / 'edge')}\n"
        f"kiosk_port = {port}\npublish_interval_s = 0.1\nreadings_interval_s = 0.1\n"
        f"[mqtt]\nhost = {_toml(mqtt.host)}\nport = {mqtt.port}\nreconnect_max_s = 2.0\n"
        f"[mqtt.tls]\nca = {_toml(mqtt.tls.ca)}\ncert = {_toml(mqtt.tls.cert)}\n"
        f"key = {_toml(mqtt.tls.key)}\n"
        f"[[fridges]]\nid = \"fridge-1\"\nport = {_toml(link)}\n"
        f"[pickup]\nkey_file = {_toml(key)}\nkey_id = 0\n")
    return path


def saved_handover(db: Path) -> dict[str, Any] | None:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = con.execute("SELECT state FROM handover").fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        con.close()
    return None if row is None else dict(json.loads(row[0]))


def events(db: Path, type_: str) -> list[dict[str, Any]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute("SELECT data FROM events WHERE type=? ORDER BY boot, seq",
                           (type_,)).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()
    return [json.loads(r[0]) for r in rows]


def test_agent_killed_with_the_door_open_carries_on_with_the_handover(
    tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings]
) -> None:
    scenario = {
        "sim": {"seed": 3, "speed": 10.0, "link_dir": "run", "truth": "run/truth.jsonl"},
        "fridges": [{"id": "fridge-1", "controller": "firmware", "door_openings_per_hour": 0,
                     "defrost_every_h": 0, "sample_interval_s": 10, "lanes": [1000, 1200],
                     "lock": True}],
    }
    runner = Runner(build(scenario, Scenario, tmp_path / "scenario.toml"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = edge_toml(tmp_path, mqtt_settings(STORE), port,
                       runner.scenario.sim.link_dir / "fridge-1")
    db = tmp_path / "edge" / "edge.sqlite3"
    log = (tmp_path / "edge.log").open("ab")
    argv = [sys.executable, "-m", "xiaodian", "edge", "run", "--config", str(config)]
    sim = threading.Thread(target=runner.run, daemon=True)
    sim.start()
    device = next(d for d in runner.devices if d.id == "fridge-1")
    assert isinstance(device, FridgeDevice)
    f = device.sim
    counter = Counter(port)
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        cloud = mqtt_settings("cloud-gateway")
        publish(cloud, f"xd/v1/{STORE}/catalogue", catalogue_payload(Catalogue(STORE, 1, (
            CatalogueItem(MILK, "Milk 1L", "piece", 7, "chilled", Location("fridge-1", 0, 250)),
            CatalogueItem(EGGS, "Eggs x6", "piece", 14, "chilled",
                          Location("fridge-1", 1, 600))))), retain=True)
        now = time.time()
        order = order_payload(Order(7, STORE, "pickup", "Wang L.", now, now + 3600,
                                    (OrderLine(MILK, 2), OrderLine(EGGS, 1))))

        def state() -> dict[str, Any] | None:
            try:
                return counter.state()
            except OSError:
                return None  # not listening yet

        def order_seen() -> bool:
            # Sent until it is there: one sent before the new agent first subscribed would
            # be lost, and the agent stores a redelivered order once.
            publish(cloud, f"xd/v1/{STORE}/orders", order)
            try:
                return bool(wait(lambda: (s := state()) and [o for o in s["orders"]
                                                             if o["order"] == 7], 3, "order 7"))
            except AssertionError:
                return False

        wait(order_seen, 30, "order 7 at the counter")
        wait(lambda: events(db, "lanes"), 20, "settled lane weights")
        v = counter.post("scan", {"code": PickupCodec(STORE, KEY).issue(7, now + 3600)})
        assert v["ok"], v
        wait(lambda: counter.state()["handover"]["fridges"]["fridge-1"]["phase"] == "unlocked",
             15, "the lane door unlocked")
        assert f.open_door()
        f.take(0, 500)  # two milk
        # Saved in the agent's database: the door seen open, the weights at the unlock and
        # the milk lane settled since.
        saved = wait(lambda: (h := saved_handover(db)) and ["fridge-1", 0, 500] in h["final"]
                     and h, 30, "the open door and the milk lane saved")
        assert saved["fridges"]["fridge-1"][0] == "open"
        assert saved["baseline"] == [["fridge-1", 0, 1000], ["fridge-1", 1, 1200]]

        proc.kill()  # SIGKILL: the power cut
        proc.wait(10)
        f.take(1, 600)  # meanwhile the customer takes the eggs and shuts the door
        f.close_door()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

        h = wait(lambda: (s := state()) and (h := s["handover"]) and h["waiting_for"] is None
                 and h, 45, "the restarted agent measuring the lanes")
        assert h["order"] == 7
        assert [(ln["item"], ln["taken"]) for ln in h["lines"]] == [(MILK, 2), (EGGS, 1)]
        assert h["differences"] == []
        assert "resumed" in counter.state()["verdict"]["message"]
        assert counter.post("confirm", {"order": 7})["title"] == "Order 7 picked up"
        checks = events(db, "lane_check")
        assert [(c["lane"], c["order"], c["verdict"]) for c in checks] == [(0, 7, "ok"),
                                                                          (1, 7, "ok")]
        assert checks[1]["measured_grams"] == 600
        stock = sorted((m["item"], m["qty"], m["order"]) for m in events(db, "stock"))
        assert stock == [(EGGS, -1, 7), (MILK, -2, 7)]
        assert saved_handover(db) is None  # done with: a further restart starts clean
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        runner.request_stop()
        sim.join(timeout=15)
        runner.close()
