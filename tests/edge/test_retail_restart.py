"""A power cut mid-handover: the real agent process is killed (SIGKILL) while the smart
fridge's door is open, the customer takes the rest and shuts the door while no agent runs,
and the restarted agent carries on with the same handover: the weights at the unlock are
still known, and the lanes as they are now say what was taken."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from counter_api import EGGS, KEY, MILK, STORE, Counter

from devstack.testkit.edge import (
    QUICK,
    edge_config,
    events,
    free_port,
    query,
    sim_fridge,
    start_edge,
    stop_child,
)
from devstack.testkit.mqtt_clients import publish
from devstack.testkit.wait import wait
from edge.config import PickupSettings
from hw_sim.runner import Runner
from hw_sim.scenario import Scenario
from xiaodian.config import build
from xiaodian.mqtt import MqttSettings
from xiaodian.wire.pickup import PickupCodec
from xiaodian.wire.retail import (
    Catalogue,
    CatalogueItem,
    Location,
    Order,
    OrderLine,
    catalogue_payload,
    order_payload,
)


def saved_handover(db: Path) -> dict[str, Any] | None:
    rows = query(db, "SELECT state FROM handover")
    return dict(json.loads(rows[0][0])) if rows else None


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
    port = free_port()
    key = tmp_path / "pickup.key"
    key.write_text(KEY.hex())
    key.chmod(0o600)
    cfg = edge_config(
        tmp_path / "edge",
        dataclasses.replace(mqtt_settings(STORE), reconnect_max_s=2.0),
        fridges=[("fridge-1", runner.scenario.sim.link_dir / "fridge-1")],
        pickup=PickupSettings(key),
        kiosk_port=port,
        **QUICK,
    )
    db = cfg.edge.db_path

    def start() -> subprocess.Popen[bytes]:
        return start_edge(cfg, tmp_path / "edge.toml", tmp_path / "edge.log")

    sim = threading.Thread(target=runner.run, daemon=True)
    sim.start()
    f = sim_fridge(runner)
    counter = Counter(port)
    proc = start()
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
        proc = start()

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
        stop_child(proc, 15)
        runner.request_stop()
        sim.join(timeout=15)
        runner.close()
