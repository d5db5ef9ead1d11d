"""A link that stops answering is noticed by its missing PUBACK, not after two keep-alives
(270 s on a terminal): the broker is frozen (SIGSTOP), the uplink gives the connection up and
connects again once the broker answers, with nothing of the outbox lost on its side."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from devstack.broker import Broker
from edge import uplink as uplink_module
from edge.uplink import Uplink
from xiaodian import __version__
from xiaodian.mqtt import MqttSettings


def _poll_until(up: Uplink, cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        up.poll(0.05)


def test_a_publish_without_puback_ends_the_connection(
    broker: Broker, mqtt_settings: Callable[[str], MqttSettings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(uplink_module, "PUBACK_TIMEOUT_S", 1.0)  # 30 s in service
    settings = mqtt_settings("store-001")
    up = Uplink(MqttSettings(settings.host, settings.port, settings.tls, keepalive=270),
                "store-001", 1, ["fridge-1"], __version__)
    _poll_until(up, lambda: up.connected, 15, "the first connection")
    pid = broker.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        assert up.publish("xd/v1/store-001/telemetry", b"{}",
                          [("readings", "fridge-1", 1, 1)])
        _poll_until(up, lambda: not up.connected, 10, "the dead link given up")
        assert "no PUBACK" in up.counters.last_error
        assert up.inflight == {}  # the rows stay in the outbox, published again later
    finally:
        os.kill(pid, signal.SIGCONT)
    _poll_until(up, lambda: up.connected and up.counters.connects == 2, 30,
                "a new connection once the broker answers")
    up.close()
