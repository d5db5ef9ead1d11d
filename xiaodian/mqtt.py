"""MQTT connection settings shared by the edge agent and the cloud gateway.

TLS with server verification is the only transport. There is no plaintext fallback: a
client that cannot verify the broker does not connect, and says why.
"""

from __future__ import annotations

import math
import ssl
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from xiaodian.wire.commands import CommandError, SignedCommand, request_topic, response_topic


@dataclass(frozen=True)
class TlsSettings:
    ca: Path  # CA that signed the broker's certificate (pinned, not the system store)
    cert: Path  # this client's certificate; its CN is the store id or service name
    key: Path

    def for_client(self, client_id: str) -> TlsSettings:
        """The certificate to connect as `client_id`: `<client_id>.<ext>` beside `cert` if
        there is one (and its key), else `cert` itself.

        The broker makes the client id the certificate's CN (use_username_as_clientid), so a
        process with several connections (a cloud worker, its command and downlink
        publishers) needs one certificate per connection, or they would take over each
        other's session.
        """
        if self.cert.stem == client_id:
            return self
        cert = self.cert.with_name(client_id + self.cert.suffix)
        key = self.key.with_name(client_id + self.key.suffix)
        if cert.is_file() and key.is_file():
            return TlsSettings(ca=self.ca, cert=cert, key=key)
        return self


@dataclass(frozen=True)
class MqttSettings:
    host: str
    port: int
    tls: TlsSettings
    keepalive: int = 30
    # Keep at or below the broker's Receive Maximum (Mosquitto: 20); paho does not honour it.
    max_inflight: int = 20
    # Bound paho's in-memory queue: past it publish() returns MQTT_ERR_QUEUE_SIZE and the
    # rows stay in SQLite.
    max_queued: int = 100
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError("port: must be between 1 and 65535")
        if self.keepalive < 5:
            raise ValueError("keepalive: must be at least 5 seconds")
        if not 1 <= self.max_inflight <= 65535:
            raise ValueError("max_inflight: must be between 1 and 65535")
        if self.reconnect_min_s <= 0 or self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s: must be >= reconnect_min_s > 0")


def new_client(settings: MqttSettings, client_id: str, *, manual_ack: bool = False) -> mqtt.Client:
    """A paho client for MQTT 5 over verified TLS, not yet connected.

    It presents the certificate `settings.tls.for_client(client_id)` picks; the broker then
    uses that certificate's CN as the client id, whatever `client_id` says.
    """
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    tls = settings.tls.for_client(client_id)
    for p in (tls.ca, tls.cert, tls.key):
        if not p.is_file():
            raise FileNotFoundError(f"TLS file not found: {p}")
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    client.tls_set_context(ctx)
    client.max_inflight_messages_set(settings.max_inflight)
    client.max_queued_messages_set(settings.max_queued)
    return client


def describe_tls_error(exc: BaseException) -> str:
    """Turn an ssl failure into the cause a technician can act on."""
    text = str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or text
        if "expired" in reason:
            return f"broker certificate expired ({reason})"
        if "Hostname mismatch" in reason or "IP address mismatch" in reason:
            return f"broker certificate does not match the host name ({reason})"
        if "unable to get local issuer" in reason or "self-signed" in reason:
            return f"broker certificate not signed by the configured CA ({reason})"
        if "revoked" in reason:
            return f"broker certificate revoked ({reason})"
        return f"broker certificate rejected ({reason})"
    if "certificate revoked" in text:
        return f"our client certificate was revoked ({text})"
    if "unknown ca" in text:
        return f"broker does not trust our client certificate's CA ({text})"
    if "certificate expired" in text:
        return f"our client certificate expired ({text})"
    return f"TLS failure: {text}"


# ------------------------------------------------------------------ signed commands


@dataclass(frozen=True)
class CommandPublish:
    topic: str
    payload: bytes
    properties: Properties
    qos: int = 1


def command_publish(signed: SignedCommand, now: float) -> CommandPublish:
    """The PUBLISH that carries `signed`: Response Topic, Correlation Data, Message Expiry.

    The broker drops it once expired, so a store back from a long outage is not handed a
    pile of stale commands (it would refuse them anyway).
    """
    cmd = signed.command
    remaining = math.ceil(cmd.expires_at - now)
    if remaining < 1:
        raise CommandError(f"command {cmd.command_id} has already expired")
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ResponseTopic = response_topic(cmd.target)
    props.CorrelationData = cmd.command_id.encode()
    props.MessageExpiryInterval = remaining
    return CommandPublish(request_topic(cmd.target), signed.wire, props)


def response_properties(correlation_data: bytes) -> Properties:
    """Properties for the store's answer: the request's Correlation Data, echoed."""
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.CorrelationData = correlation_data
    return props
