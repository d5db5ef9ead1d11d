"""The store's MQTT session to the broker, driven from the agent's one thread.

"Reconnect outside, session inside": every connection attempt gets a fresh paho client, so
no message paho buffered for a dead connection is sent twice behind our back; what was not
acknowledged is still in the outbox and is published again from there. The session itself
is persistent (clean_start=False plus a Session Expiry Interval) so orders and commands the
cloud sends while the store is offline wait at the broker.

Inbound messages are acknowledged by hand (manual_ack): a command's PUBACK goes out only
once its verdict or result is recorded, so a crash before that means redelivery, not loss.
PUBACKs leave in the order the messages arrived, as MQTT requires.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.store import RecordKey
from xiaodian.backoff import Backoff
from xiaodian.mqtt import MqttSettings, describe_tls_error, new_client, response_properties
from xiaodian.wire import commands as signed_commands
from xiaodian.wire import compact, payloads

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600  # a store may be offline for a week and still get its orders
# A PUBLISH not acknowledged within this ends the connection: with a keep-alive of minutes
# (mobile NATs, docs/store-and-forward.md) a dead link would otherwise hold an alert for
# up to twice the keep-alive; a new connection publishes it again.
PUBACK_TIMEOUT_S = 30.0


@dataclass
class UplinkCounters:
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    published: int = 0
    acked: int = 0
    rejected: int = 0
    last_error: str = ""
    session_present: bool = False
    receipts: int = 0
    bad_receipts: int = 0
    commands_received: int = 0
    responses: int = 0


@dataclass(frozen=True)
class InboundCommand:
    """A message from `cmd/req`, not yet acknowledged to the broker."""

    mid: int
    qos: int
    payload: bytes
    response_topic: str
    correlation: bytes
    generation: int  # the connection it came on: only that one can acknowledge it


@dataclass(frozen=True)
class InboundRetail:
    """A catalogue, order or cancellation message, not yet acknowledged to the broker:
    `ack_retail` after it is committed (or parked), so a crash means redelivery."""

    mid: int
    qos: int
    topic: str
    payload: bytes
    generation: int


class Uplink:
    def __init__(
        self,
        settings: MqttSettings,
        store: str,
        boot: int,
        devices: list[str],
        agent_version: str,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        commands: bool = False,
        retail: bool = False,
        config_hash: str | None = None,
    ) -> None:
        self.settings = settings
        self.config_hash = config_hash  # in the state message: the cloud's inventory
        self.store = store
        self.boot = boot
        self.devices = devices
        self.agent_version = agent_version
        self.wall = wall
        self.monotonic = monotonic
        self.backoff = Backoff(settings.reconnect_min_s, settings.reconnect_max_s)
        self.client: mqtt.Client | None = None
        self.connected = False
        self.next_attempt = 0.0
        self.inflight: dict[int, list[RecordKey]] = {}
        self._sent_at: dict[int, float] = {}  # monotonic time each in-flight mid was handed over
        self.acked: list[RecordKey] = []
        self.confirmed: list[payloads.ReceiptEntry] = []
        self.counters = UplinkCounters()
        # Set when a connection ends so the agent republishes pending rows from the start.
        self.generation = 0
        self.commands = commands  # subscribe to signed commands (a [commands] table exists)
        self.inbound_commands: list[InboundCommand] = []
        self.retail = retail  # subscribe to the store's catalogue and orders
        self.inbound_retail: list[InboundRetail] = []
        self.retail_subscribed = False  # SUBACK for catalogue and orders on this connection
        self._retail_sub_mid: int | None = None
        self.commands_subscribed = False  # SUBACK for cmd/req on the current connection
        self._command_sub_mid: int | None = None
        self._ack_order: deque[tuple[int, int]] = deque()  # (mid, qos) in arrival order
        self._ackable: set[int] = set()
        # Waits between connection attempts. Not time.sleep: an Event waits on the monotonic
        # clock through a semaphore, which also holds under an LD_PRELOADed clock such as
        # libfaketime's, where clock_nanosleep fails with EINVAL and killed the agent at its
        # first disconnect.
        self._between_attempts = threading.Event()

    # ------------------------------------------------------------ connection

    def _state(self, online: bool) -> bytes:
        return payloads.state_payload(
            self.store, online, self.boot, self.wall(), self.agent_version, self.devices,
            self.config_hash)

    def _connect(self) -> None:
        client = new_client(self.settings, self.store, manual_ack=True)
        client.connect_timeout = 5.0
        client.will_set(payloads.topic(self.store, "state"), self._state(False), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        self.client = client
        try:
            client.connect(
                self.settings.host,
                self.settings.port,
                self.settings.keepalive,
                clean_start=False,
                properties=props,
            )
        except ssl.SSLError as exc:
            self._failed(describe_tls_error(exc))
        except OSError as exc:
            self._failed(f"cannot reach broker {self.settings.host}:{self.settings.port}: {exc}")

    def _failed(self, reason: str) -> None:
        if reason != self.counters.last_error:
            log.warning("uplink: %s", reason)
        self.counters.last_error = reason
        self.counters.connect_failures += 1
        self._drop_client()

    def _drop_client(self) -> None:
        # Detach first: the disconnect below fires on_disconnect, which must see a foreign
        # client (else it drops it a second time and overwrites the reason).
        client, self.client = self.client, None
        if client is not None:
            # Already gone or never connected: we only want the socket closed.
            with contextlib.suppress(OSError, ValueError):
                client.disconnect()
        self.connected = False
        self.commands_subscribed = False
        self.retail_subscribed = False
        self.inflight.clear()
        self._sent_at.clear()
        # Unacknowledged messages of this connection will be redelivered on the next one.
        self._ack_order.clear()
        self._ackable.clear()
        self.generation += 1
        self.next_attempt = self.monotonic() + self.backoff.next_delay()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._failed(f"broker refused the connection: {reason}")
            return
        self.connected = True
        self.backoff.reset()
        self.counters.connects += 1
        self.counters.session_present = bool(flags.session_present)
        self.counters.last_error = ""
        log.info(
            "uplink: connected to %s:%s (session present: %s)",
            self.settings.host,
            self.settings.port,
            flags.session_present,
        )
        client.publish(payloads.topic(self.store, "state"), self._state(True), qos=1, retain=True)
        # Our session normally keeps this subscription; a broker that lost its state does not.
        client.subscribe(payloads.topic(self.store, "receipts"), qos=1)
        if self.retail:
            _, self._retail_sub_mid = client.subscribe(
                [(payloads.topic(self.store, "catalogue"), 1),
                 (payloads.topic(self.store, "orders"), 1)])
        if self.commands:
            _, self._command_sub_mid = client.subscribe(
                signed_commands.request_topic(self.store), qos=1
            )

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if client is not self.client:
            return
        self.counters.disconnects += 1
        log.warning("uplink: disconnected: %s", reason)
        self.counters.last_error = f"disconnected: {reason}"
        self._drop_client()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if client is not self.client:
            return  # a dying connection's: it cannot be acknowledged, it comes again
        if msg.qos > 0:
            self._ack_order.append((msg.mid, msg.qos))
        if self.commands and msg.topic == signed_commands.request_topic(self.store):
            self._command_message(msg)
            return
        if self.retail and msg.topic in (payloads.topic(self.store, "catalogue"),
                                         payloads.topic(self.store, "orders")):
            self.inbound_retail.append(InboundRetail(
                msg.mid, msg.qos, msg.topic, bytes(msg.payload), self.generation))
            return
        if msg.qos > 0:
            self._ack(msg.mid)  # receipts are applied idempotently: taking them is enough
        try:
            entries = compact.parse_any_receipts(
                msg.topic, bytes(msg.payload), getattr(msg.properties, "ContentType", None))
        except payloads.PayloadError as exc:
            self.counters.bad_receipts += 1
            log.warning("uplink: ignoring a receipts message: %s", exc)
            return
        self.counters.receipts += 1
        self.confirmed.extend(entries)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if client is self.client and mid == self._retail_sub_mid:
            self.retail_subscribed = not any(r.is_failure for r in reasons)
        if client is self.client and mid == self._command_sub_mid:
            self.commands_subscribed = not any(r.is_failure for r in reasons)
            if not self.commands_subscribed:
                log.error("uplink: broker refused the command subscription: %s", reasons)

    def _command_message(self, msg: mqtt.MQTTMessage) -> None:
        props = msg.properties
        response_topic = getattr(props, "ResponseTopic", None) or signed_commands.response_topic(
            self.store
        )
        correlation = getattr(props, "CorrelationData", None) or b""
        self.counters.commands_received += 1
        self.inbound_commands.append(
            InboundCommand(
                msg.mid, msg.qos, bytes(msg.payload), response_topic, correlation, self.generation
            )
        )

    def _ack(self, mid: int) -> None:
        """Mark a message done and send every PUBACK now due, oldest first."""
        self._ackable.add(mid)
        while self._ack_order and self._ack_order[0][0] in self._ackable and self.client:
            head, qos = self._ack_order.popleft()
            self._ackable.discard(head)
            self.client.ack(head, qos)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        keys = self.inflight.pop(mid, None)
        self._sent_at.pop(mid, None)
        if keys is None:  # the birth message, or a message of an earlier connection
            return
        if reason.is_failure:
            # The broker refused it (e.g. not authorised): keep the rows, say so loudly.
            self.counters.rejected += 1
            self.counters.last_error = f"publish refused: {reason}"
            log.error("uplink: broker refused a message: %s", reason)
            return
        self.counters.acked += 1
        self.acked.extend(keys)

    # ------------------------------------------------------------ driving

    def poll(self, timeout: float) -> None:
        """Run the network for up to `timeout` seconds, connecting when it is time."""
        if self.client is None:
            if self.monotonic() >= self.next_attempt:
                self._connect()
            if self.client is None:
                self._between_attempts.wait(
                    min(timeout, max(0.0, self.next_attempt - self.monotonic()))
                )
                return
        assert self.client is not None
        if self._sent_at and self.monotonic() - min(self._sent_at.values()) > PUBACK_TIMEOUT_S:
            self._failed(f"no PUBACK within {PUBACK_TIMEOUT_S:g} s: the link is presumed dead")
            return
        try:
            rc = self.client.loop(timeout=timeout)
        except ssl.SSLError as exc:
            self._failed(describe_tls_error(exc))
            return
        except OSError as exc:
            self._failed(f"network error: {exc}")
            return
        if rc != mqtt.MQTT_ERR_SUCCESS and self.client is not None:
            self._failed(f"connection lost ({mqtt.error_string(rc)})")

    def can_publish(self) -> bool:
        return self.connected and len(self.inflight) < self.settings.max_inflight

    def publish(self, topic: str, payload: bytes, keys: list[RecordKey],
                content_type: str | None = None) -> bool:
        """Hand one message to paho; False (rows stay pending) when it cannot take it now.
        `content_type`: the MQTT 5 Content Type announcing the payload's format (none for
        version-1 JSON)."""
        if not self.can_publish() or self.client is None:
            return False
        props = None
        if content_type:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ContentType = content_type
        info = self.client.publish(topic, payload, qos=1, properties=props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            # MQTT_ERR_QUEUE_SIZE is back-pressure; the rows simply stay in SQLite.
            return False
        self.inflight[info.mid] = keys
        self._sent_at[info.mid] = self.monotonic()
        self.counters.published += 1
        return True

    def take_commands(self) -> list[InboundCommand]:
        taken, self.inbound_commands = self.inbound_commands, []
        return taken

    def respond(self, inbound: InboundCommand, payload: bytes) -> bool:
        """Answer a command on its Response Topic with its Correlation Data, then take it
        off the broker (PUBACK). False when its connection is gone: it will be redelivered
        and answered from the replay memory."""
        if self.client is None or not self.connected or inbound.generation != self.generation:
            return False
        info = self.client.publish(
            inbound.response_topic,
            payload,
            qos=1,
            properties=response_properties(inbound.correlation),
        )
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        self.counters.responses += 1
        if inbound.qos > 0:
            self._ack(inbound.mid)
        return True

    def take_retail(self) -> list[InboundRetail]:
        taken, self.inbound_retail = self.inbound_retail, []
        return taken

    def ack_retail(self, inbound: InboundRetail) -> bool:
        """Take a stored retail message off the broker; False if its connection is gone
        (it comes again and is recognised as a duplicate)."""
        if self.client is None or inbound.generation != self.generation:
            return False
        if inbound.qos > 0:
            self._ack(inbound.mid)
        return True

    def take_acked(self) -> list[RecordKey]:
        acked, self.acked = self.acked, []
        return acked

    def take_confirmed(self) -> list[payloads.ReceiptEntry]:
        confirmed, self.confirmed = self.confirmed, []
        return confirmed

    def close(self) -> None:
        """Disconnect cleanly: the broker then does not publish our Will (death) message, so
        we publish an explicit offline state first."""
        client, connected = self.client, self.connected
        # Detach first: callbacks fired by the disconnect below then see a foreign client.
        self.client = None
        self.connected = False
        if client is not None and connected:
            info = client.publish(
                payloads.topic(self.store, "state"), self._state(False), qos=1, retain=True
            )
            deadline = self.monotonic() + 2.0
            while not info.is_published() and self.monotonic() < deadline:
                client.loop(timeout=0.1)
            client.disconnect()
            client.loop(timeout=0.1)
