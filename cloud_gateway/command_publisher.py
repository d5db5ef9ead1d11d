"""The MQTT client that publishes commands, orders and catalogues and waits for the PUBACK.

Why commands have a client of their own rather than the ingest worker's connection: see
the docstring of `cloud_gateway.commands`, which re-exports these names.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from xiaodian.mqtt import CommandPublish, MqttSettings, new_client

# The name it logged under before it had a module of its own; log filters keep working.
log = logging.getLogger("cloud_gateway.commands")


# ---------------------------------------------------------------- publishing

# MQTT 5 PUBACK reason 0x10: the broker took the message but nobody subscribes to its
# topic, so nobody will ever get it (a store's terminal that takes no commands).
NO_MATCHING_SUBSCRIBERS = 0x10
NO_SUBSCRIBERS = "no_subscribers"


@dataclass(frozen=True)
class PublishResult:
    # acked: the broker took it (PUBACK success); refused: PUBACK with a failure code;
    # unconfirmed: handed to paho but no PUBACK in time (it may still go out);
    # not_sent: never handed over (not connected, queue full).
    status: Literal["acked", "refused", "unconfirmed", "not_sent"]
    detail: str = ""


class Publisher(Protocol):
    def publish(self, pub: CommandPublish, timeout: float) -> PublishResult: ...


class CommandPublisher:
    """A small MQTT client of its own for commands (why: see `cloud_gateway.commands`)."""

    _MAX_PENDING_ACKS = 1024  # PUBACK outcomes kept for waiters; older ones are dropped

    def __init__(self, settings: MqttSettings, client_id: str) -> None:
        self.settings = settings
        self.client_id = client_id
        self._cond = threading.Condition()
        self._connected = False
        self._acks: OrderedDict[int, ReasonCode] = OrderedDict()
        self._client: mqtt.Client | None = None
        # Successful connections so far: a new one may be to a broker that lost what it had
        # acknowledged (a crash between two saves of its database); see DownlinkSender.
        self.connects = 0
        self._connect_listeners: list[Callable[[], None]] = []

    def add_connect_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener()` (on paho's thread: keep it short) after every connection."""
        self._connect_listeners.append(listener)

    def start(self) -> None:
        """Connect in the background (retrying); FileNotFoundError if a TLS file is missing."""
        s = self.settings
        client = new_client(s, self.client_id)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_connect_fail = self._on_connect_fail
        client.reconnect_delay_set(max(1, round(s.reconnect_min_s)), round(s.reconnect_max_s))
        client.connect_async(s.host, s.port, s.keepalive, clean_start=True)
        client.loop_start()
        self._client = client

    def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def __enter__(self) -> CommandPublisher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_connected(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._connected, timeout)

    def publish(self, pub: CommandPublish, timeout: float) -> PublishResult:
        return self.publish_message(pub.topic, pub.payload, timeout, qos=pub.qos,
                                    properties=pub.properties)

    def publish_message(self, topic: str, payload: bytes, timeout: float, *, qos: int = 1,
                        retain: bool = False,
                        properties: Properties | None = None) -> PublishResult:
        """Publish and wait for the PUBACK (orders and catalogues use this too)."""
        client = self._client
        with self._cond:
            connected = self._connected
        if client is None or not connected:
            # Not handed to paho at all: paho would queue it and send it after a reconnect,
            # long after we told the caller it failed.
            return PublishResult("not_sent", "not connected to the broker")
        info = client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            return PublishResult("not_sent", "too many messages waiting for the broker")
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            return PublishResult("not_sent", mqtt.error_string(info.rc))
        # NO_CONN here (the link dropped just now) means queued by paho: it may still go.
        with self._cond:
            if not self._cond.wait_for(lambda: info.mid in self._acks, timeout):
                return PublishResult("unconfirmed", f"no PUBACK within {timeout:g} s")
            reason = self._acks.pop(info.mid)
        if reason.is_failure:
            return PublishResult("refused", f"broker refused it: {reason}")
        if reason.value == NO_MATCHING_SUBSCRIBERS:
            return PublishResult("acked", NO_SUBSCRIBERS)
        return PublishResult("acked")

    # Callbacks run on paho's loop thread.

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason: ReasonCode, properties: Properties | None) -> None:
        if reason.is_failure:
            log.error("command publisher %s: broker refused the connection: %s",
                      self.client_id, reason)
            return
        log.info("command publisher %s connected", self.client_id)
        with self._cond:
            self._connected = True
            self.connects += 1
            self._cond.notify_all()
        for listener in self._connect_listeners:
            listener()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason: ReasonCode, properties: Properties | None) -> None:
        with self._cond:
            self._connected = False
        if reason.is_failure:
            log.warning("command publisher %s disconnected: %s", self.client_id, reason)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        log.warning("command publisher %s cannot connect to %s:%d (retrying)", self.client_id,
                    self.settings.host, self.settings.port)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode,
                    properties: Properties | None) -> None:
        with self._cond:
            self._acks[mid] = reason
            while len(self._acks) > self._MAX_PENDING_ACKS:
                self._acks.popitem(last=False)  # its waiter gave up long ago
            self._cond.notify_all()
