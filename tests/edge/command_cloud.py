"""The cloud's side of signed commands as the edge tests play it: a paho client holding the
real signing key, publishing commands for STORE and collecting the agent's answers.

Its fixture is called `cloud` in the modules that send commands (test_edge_commands,
test_self_update_agent), which import it from here: conftest.py's `cloud` is the ingest
worker the other agent tests use, and a module's own fixture overrides the conftest one.
`signing`, the key it signs with, is in conftest.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devstack.testkit.mqtt_clients import start_client, stop_client, subscribe
from xiaodian.mqtt import MqttSettings, command_publish
from xiaodian.wire.commands import SignedCommand, request_topic, response_topic, sign_command

STORE = "store-001"


class Cloud:
    """The cloud's side of commands: signs, publishes, collects answers by correlation."""

    def __init__(self, settings: MqttSettings, key: Ed25519PrivateKey, kid: str) -> None:
        self.key, self.kid = key, kid
        self.answers: dict[bytes, list[dict[str, Any]]] = {}
        self._cond = threading.Condition()
        self.client = start_client(settings, "cloud-gateway-commands")
        subscribe(self.client, response_topic(STORE), self._on_message)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        correlation = bytes(getattr(msg.properties, "CorrelationData", b""))
        with self._cond:
            self.answers.setdefault(correlation, []).append(json.loads(msg.payload))
            self._cond.notify_all()

    def sign(self, action: str, params: dict[str, Any], **kw: Any) -> SignedCommand:
        kw.setdefault("target", STORE)
        kw.setdefault("issued_at", int(time.time()))
        return sign_command(self.key, self.kid, action=action, params=params, **kw)

    def send(self, signed: SignedCommand) -> bytes:
        """Publish as the real cloud would; returns the correlation data."""
        pub = command_publish(signed, time.time())
        self.client.publish(pub.topic, pub.payload, qos=1, properties=pub.properties)
        return signed.command.command_id.encode()

    def send_raw(self, payload: bytes, correlation: bytes) -> bytes:
        """Publish any bytes on the store's request topic (what a forger or a stale queue
        could deliver), with a response topic but no expiry."""
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = response_topic(STORE)
        props.CorrelationData = correlation
        self.client.publish(request_topic(STORE), payload, qos=1, properties=props)
        return correlation

    def answer(self, correlation: bytes, count: int = 1, timeout: float = 5.0) -> dict[str, Any]:
        with self._cond:
            ok = self._cond.wait_for(
                lambda: len(self.answers.get(correlation, [])) >= count, timeout
            )
            assert ok, f"no answer {count} for {correlation!r}: {self.answers!r}"
            return self.answers[correlation][count - 1]

    def close(self) -> None:
        stop_client(self.client)


@pytest.fixture
def cloud(
    mqtt_settings: Callable[[str], MqttSettings], signing: tuple[Ed25519PrivateKey, str, Path]
) -> Iterator[Cloud]:
    c = Cloud(mqtt_settings("cloud-gateway"), signing[0], signing[1])
    yield c
    c.close()
