"""Hourly vitals end to end, speeded up (#16 point 1): the simulated fridge, the real agent,
Mosquitto with TLS and ACL, and a cloud ingest worker. The terminal's clock runs as fast as
the simulator, so an hour passes in about half a minute; every count in the cloud's row is
checked against the simulator's ground truth placed on the agent's own time line."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloud_gateway import health
from cloud_gateway.db import Database
from devstack.testkit.edge import QUICK, edge_config, ingest_worker, query
from devstack.testkit.wait import wait
from edge.agent import Agent
from edge.vitals_job import REPORT_DELAY_S
from edge.wallclock import WallClock
from hw_sim.runner import Runner
from hw_sim.scenario import FridgeSpec, Scenario, SimSettings
from xiaodian.mqtt import MqttSettings

SPEED = 200.0


def test_an_hour_of_the_simulated_fridge_reaches_the_cloud_as_vitals(
    tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings]
) -> None:
    hour = math.floor(time.time() / 3600) + 1
    # Started half an hour before hour H: the first defrost (1 h after boot) falls in it.
    start_wall, start_real = hour * 3600.0 - 1800.0, time.monotonic()

    def fast_now() -> float:  # the terminal's clock, as fast as the simulation
        return start_wall + (time.monotonic() - start_real) * SPEED

    spec = FridgeSpec(id="fridge-1", sample_interval_s=30, heartbeat_interval_s=30,
                      door_openings_per_hour=12, defrost_every_h=1, defrost_minutes=20)
    runner = Runner(Scenario(SimSettings(link_dir=tmp_path / "run", truth=tmp_path / "t.jsonl",
                                         speed=SPEED, seed=7), fridges=(spec,)))
    cfg = edge_config(tmp_path / "edge", mqtt_settings("store-001"),
                      fridges=[("fridge-1", tmp_path / "run" / "fridge-1")], **QUICK)
    cloud_db = tmp_path / "cloud.db"
    agent = Agent(cfg, clock=WallClock(now=fast_now, synced=lambda: True))
    done = threading.Event()
    agent_thread = threading.Thread(target=agent.run, kwargs={"until": done.is_set},
                                    daemon=True)
    sim = threading.Thread(target=runner.run, daemon=True)

    def cloud_rows() -> list[health.HourRow]:
        with Database.open_readonly(cloud_db) as db, db.transaction() as conn:
            return health.trend(conn, "store-001", "fridge-1", 0)

    with ingest_worker(mqtt_settings("cloud-gateway"), cloud_db):
        agent_thread.start()
        try:
            wait(lambda: all(r.opened.is_set() for r in agent.readers), 30, "ports open")
            sim.start()
            # Hour H ends 5400 simulated s after the start and is reported REPORT_DELAY_S later.
            wait(lambda: any(r.hour == hour for r in cloud_rows()),
                 (5400 + REPORT_DELAY_S) / SPEED + 30, "the vitals of the hour in the cloud")
        finally:
            done.set()
            agent_thread.join(timeout=15)
            runner.request_stop()
            sim.join(timeout=15)
            runner.close()
    assert not agent_thread.is_alive() and not sim.is_alive()

    with Database.open_readonly(cloud_db) as db, db.transaction() as conn:
        (data,) = conn.execute("SELECT data FROM device_vitals WHERE store = 'store-001'"
                               " AND device = 'fridge-1' AND hour = ?", (hour,)).fetchone()
        stored = conn.execute("SELECT count(*) FROM events WHERE device = 'health'"
                              " AND type = 'vitals'").fetchone()[0]
    v: dict[str, Any] = json.loads(data)
    rows = cloud_rows()
    # The partial hour the agent started in came first; each hour once.
    assert [r.hour for r in rows] == [hour - 1, hour]
    assert stored == 2

    # Ground truth on the agent's time line: its anchor for this device boot.
    db_path = cfg.edge.db_path
    ((anchor,),) = query(db_path, "SELECT value FROM meta WHERE key LIKE 'anchor:fridge-1/%'")
    _dev, _boot, a_wall, a_ms = json.loads(anchor)
    truth = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]

    def in_hour(rec: dict[str, Any]) -> bool:
        t = a_wall + (rec["dev_ms"] - a_ms) / 1000.0
        return hour * 3600 <= t < (hour + 1) * 3600

    def records(kind: str, **match: Any) -> list[dict[str, Any]]:
        return [r for r in truth if r.get("device") == "fridge-1" and r.get("kind") == kind
                and not r.get("state_report") and "dev_ms" in r and in_hour(r)
                and all(r.get(k) == x for k, x in match.items())]

    assert v["readings"] == len(records("temp")) == 120
    assert v["door_openings"] == len(records("door", open=True)) > 0
    assert v["compressor_starts"] == len(records("compressor", on=True))
    ends = records("defrost", active=False)
    assert [d["ended_on"] for d in v["defrosts"]] == [d["reason"] for d in ends]
    assert len(ends) == 1 and abs(v["defrosts"][0]["duration_s"] - 1200) <= 1
    assert 0 < v["duty"] < 1 and v["compressor_known_s"] == 3600.0
    # The compressor's on-time from the truth's switchings (state reports included).
    switches = sorted(((a_wall + (r["dev_ms"] - a_ms) / 1000.0, bool(r["on"])) for r in truth
                       if r.get("device") == "fridge-1" and r.get("kind") == "compressor"
                       and not r.get("corrupted")), key=lambda s: s[0])
    a, b, on_s = hour * 3600.0, (hour + 1) * 3600.0, 0.0
    for (t, on), (t_next, _) in zip(switches, [*switches[1:], (b, False)], strict=True):
        if on:
            on_s += max(0.0, min(t_next, b) - max(t, a))
    assert abs(v["compressor_on_s"] - on_s) <= 0.2
    assert v["firmware"] is not None and v["reboots"] == []
    assert v["probes"] == [{"index": i, "ok": 120, "crc": 0, "missing": 0, "suspect": 0}
                           for i in (0, 1)]
    link = v["link"]
    assert link["frames"] > 120 and (link["errors"], link["missed"], link["per_10k"]) == (
        0, 0, 0.0)
    assert len(v["pulldowns_s"]) + v["pulldown_unrecovered"] <= v["door_openings"]
