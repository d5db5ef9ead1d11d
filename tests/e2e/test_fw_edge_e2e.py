"""The edge agent against the simulated fridges running the real firmware: in-process under
CPython and inside a real `micropython` process, over real ptys, into the edge's SQLite.

The simulator runs in a thread of this process (so a test can act on the shop floor through
SimFridge's API while it runs), the agent in another; a real Mosquitto stands in for the
cloud's broker, with no cloud worker, so everything stays in the edge's outbox to look at.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devstack.testkit.edge import events as stored_events
from devstack.testkit.edge import readings as stored_readings
from devstack.testkit.edge import running
from devstack.testkit.edge import sim_fridge as fridge
from devstack.testkit.wait import wait
from edge.agent import Agent
from firmware_bridge import codec
from hw_sim.micropython_host import micropython_binary
from xiaodian.mqtt import MqttSettings

STORE = "store-001"


def events(agent: Agent, kind: str, *, outbox: bool = False) -> list[dict[str, Any]]:
    """Stored events of one type (oldest first); with `outbox`, only those with an outbox row."""
    return stored_events(agent.config.edge.db_path, kind, outbox=outbox)


def readings(agent: Agent) -> int:
    return stored_readings(agent.config.edge.db_path)


def sim(controller: str, speed: float, **fridge: Any) -> dict[str, Any]:
    spec = {
        "id": "fridge-1",
        "controller": controller,
        "door_openings_per_hour": 0,
        "defrost_every_h": 0,
        "sample_interval_s": 10,
        **fridge,
    }
    return {
        "sim": {"seed": 2, "speed": speed, "link_dir": "run", "truth": "run/truth.jsonl"},
        "fridges": [spec],
    }


def test_firmware_lanes_lock_readings_and_doors_reach_the_edge_outbox(
    tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings]
) -> None:
    """The pickup handover's path: UNLOCK from the terminal, the customer opens the door and
    takes an item, closes it; the edge's outbox holds lock, lanes, door and readings."""
    scenario = sim("firmware", 10.0, lanes=[1200, 800], lock=True)
    with running(scenario, tmp_path, mqtt_settings(STORE)) as (runner, agent):
        f = fridge(runner)
        # The boot LANES record, not the copy in the state report GET_HELLO asks for (either
        # may reach the edge first).
        boot = wait(lambda: [e for e in events(agent, "lanes", outbox=True)
                             if not e.get("state_report")], 20, "boot LANES at the edge")
        assert boot[0] == {
            "device": "fridge-1",
            "lanes": [
                {"lane": 0, "grams": 1200, "stable": True},
                {"lane": 1, "grams": 800, "stable": True},
            ],
        }
        wait(lambda: events(agent, "lock"), 10, "boot LOCK at the edge")
        assert not f.open_door()  # locked
        reader = agent.fridge_readers["fridge-1"]
        cmd = reader.send_command(codec.UNLOCK, codec.pack_unlock(60))
        assert cmd.done.wait(10) and cmd.outcome == "ok"
        assert f.open_door()
        f.take(0, 350)
        wait(
            lambda: any(
                e["lanes"][0] == {"lane": 0, "grams": 850, "stable": True}
                for e in events(agent, "lanes")
            ),
            20,
            "the lighter lane at the edge",
        )
        f.close_door()
        locks = wait(
            lambda: (x := events(agent, "lock", outbox=True))
            and x[-1]["reason"] == "door_closed"
            and x,
            20,
            "re-lock at the edge",
        )
        # The state report after the edge's GET_HELLO repeats the lock as it stands (here
        # "locked, boot" once more), marked state_report: the changes are the others.
        changes = [x for x in locks if not x.get("state_report")]
        assert [(x["locked"], x["reason"]) for x in changes] == [
            (True, "boot"),
            (False, "command"),
            (True, "door_closed"),
        ]
        assert all(set(x) - {"state_report"} == {"device", "locked", "reason"} for x in locks)
        doors = [e for e in events(agent, "door") if not e.get("state_report")]
        assert [d["open"] for d in doors] == [True, False]
        wait(lambda: readings(agent) >= 2, 20, "temperature readings at the edge")
        lanes = events(agent, "lanes", outbox=True)
        assert all(set(e) - {"state_report"} == {"device", "lanes"} for e in lanes)
        assert all(set(x) == {"lane", "grams", "stable"} for e in lanes for x in e["lanes"])


@pytest.mark.skipif(micropython_binary() is None, reason="no micropython binary")
def test_micropython_firmware_readings_doors_and_lanes_reach_the_edge(
    tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings]
) -> None:
    scenario = sim("micropython", 10.0, lanes=[500], initial_air_c=8.0)
    with running(scenario, tmp_path, mqtt_settings(STORE)) as (runner, agent):
        f = fridge(runner)
        hello = wait(lambda: events(agent, "hello"), 20, "HELLO from the micropython process")
        assert hello[-1]["device_id"] == "fridge-1" and hello[-1]["lane_count"] == 1
        wait(lambda: readings(agent) >= 2, 30, "readings from the micropython firmware")
        assert f.open_door()  # no lock fitted
        wait(lambda: [e for e in events(agent, "door") if e["open"]], 20, "door opened")
        f.close_door()
        wait(
            lambda: [e for e in events(agent, "door") if not e["open"] and not e.get(
                "state_report")],
            20,
            "door closed",
        )
        # The firmware's first LANES may come before its cells filled their window (it waits
        # boot_wait_ms, not forever: a slow machine gets "0 g, settling" first); what must
        # arrive is the settled 500 g, and no settled report may say anything else.
        stable = {"lane": 0, "grams": 500, "stable": True}
        lanes = wait(lambda: [e for e in events(agent, "lanes") if e["lanes"] == [stable]], 20,
                     "the settled LANES from the micropython firmware")
        assert lanes
        settled = [x for e in events(agent, "lanes") for x in e["lanes"] if x["stable"]]
        assert all(x == stable for x in settled), settled
        comp = wait(
            lambda: [e for e in events(agent, "compressor") if not e.get("state_report")],
            20,
            "the compressor started on a warm cabinet",
        )
        assert comp[0]["on"] is True
