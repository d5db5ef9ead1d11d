"""systemd's notify protocol from the agent: what it says and when (ServiceState, time
injected), that it reaches a real datagram socket named by $NOTIFY_SOCKET, and that the
watchdog is fed by the agent's own main loop: a blocked loop feeds nothing.

The same agent under a real systemd (READY, a kill, a hang, an upgrade):
tests/packaging/test_terminal_deb.py.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from notify_listener import Listener

from devstack.testkit.edge import QUICK, RunningAgent, edge_config, pty_link
from devstack.testkit.wait import wait
from edge.service_notify import Notifier, ServiceState, socket_address, watchdog_seconds
from xiaodian.mqtt import MqttSettings


def test_ready_once_every_port_is_open_and_the_status_names_the_missing() -> None:
    s = ServiceState(started=100.0, watchdog_s=None, version="1.2.3")
    assert s.step(101.0, {"fridge-1": True, "fridge-2": False}) == []
    assert s.step(102.0, {"fridge-1": True, "fridge-2": True}) == [
        "READY=1\nSTATUS=xiaodian 1.2.3: serial ports open: fridge-1, fridge-2"]
    assert s.step(103.0, {"fridge-1": True, "fridge-2": True}) == []  # said once
    # A port lost later changes the status line, never readiness.
    assert s.step(104.0, {"fridge-1": True, "fridge-2": False}) == [
        "STATUS=xiaodian 1.2.3: waiting for serial ports: fridge-2"]


def test_a_missing_port_delays_readiness_only_for_the_grace_period() -> None:
    s = ServiceState(started=0.0, watchdog_s=None, grace_s=30.0)
    assert s.step(29.9, {"fridge-1": False}) == []
    assert s.step(30.0, {"fridge-1": False}) == [
        "READY=1\nSTATUS=waiting for serial ports: fridge-1"]


def test_the_watchdog_is_fed_at_half_its_interval() -> None:
    s = ServiceState(started=0.0, watchdog_s=10.0)
    fed = [t / 10 for t in range(0, 201) if "WATCHDOG=1" in s.step(t / 10, {})]
    assert fed == [0.0, 5.0, 10.0, 15.0, 20.0]


def test_watchdog_and_socket_from_the_environment() -> None:
    assert watchdog_seconds({"WATCHDOG_USEC": "3000000"}, 42) == 3.0
    assert watchdog_seconds({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "42"}, 42) == 3.0
    assert watchdog_seconds({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "7"}, 42) is None
    assert watchdog_seconds({"WATCHDOG_USEC": "0"}, 42) is None
    assert watchdog_seconds({}, 42) is None
    assert socket_address("@sd-notify") == "\0sd-notify"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("vsock:2:1234") is None
    assert not Notifier({}).enabled  # outside systemd: silent


def test_messages_reach_the_socket_named_by_notify_socket(
        listener: Listener, tmp_path: Path) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "1000000"})
    assert n.enabled and n.watchdog_s == 1.0
    assert n.send("READY=1\nSTATUS=ok")
    wait(lambda: listener.said("READY=1"), 5, "READY=1 at the listener")
    assert listener.said("STATUS=ok")
    n.close()


def test_the_agents_main_loop_feeds_the_watchdog_and_a_blocked_loop_does_not(
        listener: Listener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        mqtt_settings: Callable[[str], MqttSettings]) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # fed every 0.2 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    link = tmp_path / "fridge-1"
    master = pty_link(link)
    cfg = edge_config(tmp_path / "edge", mqtt_settings("store-001"),
                      fridges=[("fridge-1", link)], **QUICK)
    try:
        with RunningAgent(cfg) as agent:
            wait(lambda: listener.said("READY=1"), 20, "READY=1 once the port is open")
            assert agent.readers[0].opened.is_set()
            wait(lambda: len(listener.said("WATCHDOG=1")) >= 5, 10, "watchdog feeds")
            # Block the loop in one of its steps, as a hung call would.
            release, blocked = threading.Event(), threading.Event()
            step = agent.step_vitals

            def hang() -> None:
                blocked.set()
                release.wait(30)
                step()

            monkeypatch.setattr(agent, "step_vitals", hang)
            assert blocked.wait(10)
            # A marker behind whatever the loop sent before it blocked (datagrams keep
            # their order): once it is in, every earlier feed has been counted.
            marker = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify")})
            marker.send("X-TEST=blocked")
            wait(lambda: listener.said("X-TEST=blocked"), 5, "the marker")
            marker.close()
            before = len(listener.said("WATCHDOG=1"))
            # Four feed intervals pass with the loop blocked (the readers still run).
            assert not release.wait(0.8)
            assert len(listener.said("WATCHDOG=1")) == before
            monkeypatch.setattr(agent, "step_vitals", step)
            release.set()
            wait(lambda: len(listener.said("WATCHDOG=1")) >= before + 3, 10,
                 "feeds again once the loop runs")
        assert listener.said("STOPPING=1")
    finally:
        os.close(master)
