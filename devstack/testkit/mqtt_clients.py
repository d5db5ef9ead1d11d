"""Paho clients on a test broker (TLS with the name's own certificate, MQTT 5): connected
and looping, subscribed with the SUBACK awaited, and a one-shot publish."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import paho.mqtt.client as mqtt

from devstack.testkit.wait import wait
from xiaodian.mqtt import MqttSettings, new_client


def start_client(
    settings: MqttSettings, client_id: str, *, wait_connected: float = 0.0
) -> mqtt.Client:
    """A client connected to `settings`' broker with its network loop running. With
    `wait_connected`, waits (at most that many seconds) for the CONNACK."""
    client = new_client(settings, client_id)
    client.connect(settings.host, settings.port, settings.keepalive)
    client.loop_start()
    if wait_connected:
        wait(client.is_connected, wait_connected, f"{client_id} to connect", interval=0.01)
    return client


def stop_client(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


@contextmanager
def connected(settings: MqttSettings, client_id: str | None = None) -> Iterator[mqtt.Client]:
    """`with connected(settings) as client:` started, and disconnected on the way out."""
    client = start_client(settings, client_id or f"test-{time.monotonic_ns()}")
    try:
        yield client
    finally:
        stop_client(client)


def subscribe(
    client: mqtt.Client,
    topic: str,
    on_message: Callable[[mqtt.Client, Any, mqtt.MQTTMessage], None] | None = None,
    qos: int = 1,
    timeout: float = 5.0,
) -> None:
    """Subscribe `client` (before or after it connects) and wait for the SUBACK; the
    subscription is made again on every (re)connection."""
    subscribed = threading.Event()
    if on_message is not None:
        client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=qos)
    if client.is_connected():
        client.subscribe(topic, qos=qos)
    assert subscribed.wait(timeout), f"no SUBACK for {topic}"


def publish(
    settings: MqttSettings,
    topic: str,
    payload: bytes,
    retain: bool = False,
    qos: int = 1,
    timeout: float = 10.0,
) -> None:
    """Publish once from a client of its own, waiting until the broker has it."""
    with connected(settings, f"cloud-test-{time.monotonic_ns()}") as client:
        client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(timeout)
