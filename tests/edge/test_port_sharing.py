"""The agent holds its ports exclusively, and says so when a tool that takes no lock (cat,
screen) already has one open: such a reader takes bytes from the agent."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import serial

from devstack.testkit.edge import QUICK, RunningAgent, edge_config, pty_link
from devstack.testkit.wait import wait
from xiaodian.mqtt import MqttSettings


def test_the_agent_locks_its_port_and_names_a_process_that_shares_it(
        tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings]) -> None:
    port = tmp_path / "fridge-1"
    master = pty_link(port)
    cat = subprocess.Popen([sys.executable, "-c", "import sys, time; f = open(sys.argv[1], 'rb',"
                            " buffering=0); print('open', flush=True); time.sleep(60)",
                            str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert cat.stdout is not None and cat.stdout.readline() == "open\n"
        cfg = edge_config(tmp_path / "edge", mqtt_settings("store-001"),
                          fridges=[("fridge-1", port)], **QUICK)
        with RunningAgent(cfg) as agent:
            reader = agent.fridge_readers["fridge-1"]
            wait(reader.opened.is_set, 10, "the agent opened its port")
            assert f"pid {cat.pid}" in reader.stats()["shared_with"]
            # A second opener that asks for the lock, as every tool of ours does, is refused.
            try:
                serial.Serial(str(port), 115200, exclusive=True).close()
                raise AssertionError("opened a port the agent holds exclusively")
            except serial.SerialException as exc:
                assert "exclusively lock" in str(exc)
    finally:
        cat.kill()
        cat.wait()
        if cat.stdout is not None:
            cat.stdout.close()
        os.close(master)
