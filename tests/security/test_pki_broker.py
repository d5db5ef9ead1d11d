"""The private CA and the TLS-only broker, checked against a real Mosquitto."""

from __future__ import annotations

import dataclasses
import gc
import os
import shutil
import socket
import ssl
import stat
import subprocess
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import devstack.broker as broker_mod
from devstack.broker import Broker, BrokerError, acl_text, write_broker_config
from devstack.testkit.mqtt_clients import stop_client
from devstack.testkit.wait import wait
from xiaodian.mqtt import MqttSettings, TlsSettings, describe_tls_error, new_client
from xiaodian.pki import DevPki, PkiError, create_ca, dev_pki, issue_certificate

Settings = Callable[[str], MqttSettings]


# --- helpers -------------------------------------------------------------------------------


def connected(settings: MqttSettings, client_id: str, **connect_kw: object) -> mqtt.Client:
    """A paho client connected (CONNACK success) with its network loop running."""
    client = new_client(settings, client_id)
    client.connect(settings.host, settings.port, settings.keepalive, **connect_kw)
    client.loop_start()
    try:
        wait(client.is_connected, 30, f"{client_id} to connect", interval=0.01)
    except AssertionError:
        client.loop_stop()
        raise
    return client


def publish(client: mqtt.Client, topic: str, payload: bytes) -> None:
    info = client.publish(topic, payload, qos=1)
    info.wait_for_publish(5.0)
    assert info.is_published()


CONNECT = b"\x10\x15\x00\x04MQTT\x04\x02\x00\x05\x00\x09raw-probe"  # MQTT 3.1.1, clean session


def raw_connect(sock: socket.socket) -> bytes:
    """Send an MQTT CONNECT and return what comes back (b"" if the broker hung up)."""
    sock.sendall(CONNECT)
    return sock.recv(4)


def tls_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def tls_refusal(broker: Broker, ctx: ssl.SSLContext) -> ssl.SSLError:
    """The TLS error with which the broker refuses this client (fails if it does not refuse).

    Reads before writing: under TLS 1.3 the broker judges the client certificate after the
    client's handshake has finished and answers with an alert; data sent by the client
    then would race the broker's close, and a TCP reset can swallow the alert.
    """
    with socket.create_connection((broker.host, broker.port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname=broker.host) as tls:
                data = tls.recv(4)  # a timeout here means the broker kept the connection
        except ssl.SSLError as exc:
            return exc
    raise AssertionError(f"broker did not refuse the client (read {data!r})")


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    """A second, unrelated CA with a certificate for store-001: an impostor's PKI."""
    return dev_pki(tmp_path_factory.mktemp("other-pki"), ["store-001"], [])


# --- PKI -----------------------------------------------------------------------------------


def test_dev_pki_certificates(pki: DevPki) -> None:
    ca = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    server = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]

    for name in ("store-001", "store-002", "cloud-gateway"):
        tls = pki.client(name)
        cert = x509.load_pem_x509_certificate(tls.cert.read_bytes())
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        assert stat.S_IMODE(tls.key.stat().st_mode) == 0o600
        assert stat.S_IMODE(tls.key.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((pki.directory / "ca" / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(pki.ca.parent.stat().st_mode) == 0o700
    with pytest.raises(KeyError):
        pki.client("store-999")


def test_dev_pki_is_idempotent(tmp_path: Path) -> None:
    first = dev_pki(tmp_path, ["store-001"])
    # Every file but the CA's index (which records store-009's new certificate) is unchanged.
    before = {
        p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != "index.json"
    }
    second = dev_pki(tmp_path, ["store-001", "store-009"])
    assert second.ca == first.ca
    assert all(p.read_bytes() == data for p, data in before.items())  # nothing reissued
    assert second.client("store-009").cert.is_file()


def test_ca_and_certificates_are_never_overwritten(tmp_path: Path) -> None:
    create_ca(tmp_path / "ca")
    with pytest.raises(FileExistsError):
        create_ca(tmp_path / "ca")
    issue_certificate(tmp_path / "ca", tmp_path / "out", "store-001")
    with pytest.raises(FileExistsError):
        issue_certificate(tmp_path / "ca", tmp_path / "out", "store-001")


def test_dev_pki_refuses_a_certificate_from_another_ca(tmp_path: Path, other_ca: DevPki) -> None:
    pki = dev_pki(tmp_path, ["store-001"])
    foreign = other_ca.client("store-001")
    shutil.copy(foreign.cert, pki.client("store-001").cert)
    shutil.copy(foreign.key, pki.client("store-001").key)
    with pytest.raises(PkiError, match="not issued by the CA in use"):
        dev_pki(tmp_path, ["store-001"])


@pytest.mark.parametrize("name", ["store/1", "+", "#", "a b", "", "-x", "store-001\n"])
def test_names_that_would_break_topics_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="certificate name"):
        dev_pki(tmp_path, [name])


def test_config_runs_as_root_only_when_started_as_root(pki: DevPki, tmp_path: Path) -> None:
    text = write_broker_config(tmp_path, pki, 8883).read_text()
    assert ("user root" in text.splitlines()) == (os.geteuid() == 0)
    assert "listener 8883 127.0.0.1" in text
    assert text.count("listener ") == 1
    assert "user cloud-gateway" in acl_text(["cloud-gateway"])


# --- the broker ----------------------------------------------------------------------------


def test_store_telemetry_reaches_the_cloud_gateway(mqtt_settings: Settings, collect) -> None:
    cloud = collect("cloud-gateway", "xd/v1/+/telemetry")
    store = connected(mqtt_settings("store-001"), "store-001")
    try:
        publish(store, "xd/v1/store-001/telemetry", b'{"t": 3.0}')
    finally:
        stop_client(store)
    [msg] = cloud.wait(1)
    assert (msg.topic, msg.payload, msg.qos) == ("xd/v1/store-001/telemetry", b'{"t": 3.0}', 1)


def test_a_store_receives_nothing_of_another_store(mqtt_settings: Settings, collect) -> None:
    spy = collect("store-001", "#")  # refused (subscribe rules); delivery is checked too
    [code] = spy.subscribe("xd/v1/store-001/orders")
    assert not code.is_failure
    cloud_sees = collect("cloud-gateway", "xd/v1/#")
    # Store 002's one connection (its client id is its CN): it listens and publishes.
    store2 = collect("store-002", "xd/v1/store-002/orders")
    cloud = connected(mqtt_settings("cloud-gateway"), "cloud-gateway")
    try:
        publish(cloud, "xd/v1/store-002/orders", b"order for 002")
        publish(store2.client, "xd/v1/store-002/telemetry", b"readings of 002")
        assert store2.wait(1)[0].payload == b"order for 002"
        # Routed to the gateway means the broker has decided about every subscriber.
        cloud_sees.wait(2)
        # Control, sent after the others: once it arrives, anything leaked would have too.
        publish(cloud, "xd/v1/store-001/orders", b"order for 001")
    finally:
        stop_client(cloud)
    assert [(m.topic, m.payload) for m in spy.wait(1)] == [
        ("xd/v1/store-001/orders", b"order for 001")
    ]


def test_a_store_cannot_publish_as_another_store(mqtt_settings: Settings, collect) -> None:
    cloud = collect("cloud-gateway", "xd/v1/#")
    store = connected(mqtt_settings("store-001"), "store-001")
    try:
        # Mosquitto 2.0 acknowledges a denied QoS 1 publish and drops it.
        store.publish("xd/v1/store-002/telemetry", b"forged", qos=1).wait_for_publish(5)
        store.publish("xd/v1/store-001/orders", b"self-made order", qos=1).wait_for_publish(5)
        publish(store, "xd/v1/store-001/telemetry", b"genuine")
    finally:
        stop_client(store)
    assert [m.payload for m in cloud.wait(1)] == [b"genuine"]


def test_a_client_without_certificate_is_refused(broker: Broker, pki: DevPki) -> None:
    error = tls_refusal(broker, tls_context(pki.ca))
    assert "certificate required" in str(error) or "handshake failure" in str(error)


def test_a_server_certificate_cannot_be_used_as_a_client(broker: Broker, pki: DevPki) -> None:
    ctx = tls_context(pki.ca, pki.server_cert, pki.server_key)
    assert "unsupported certificate" in str(tls_refusal(broker, ctx))


def test_a_client_certificate_from_another_ca_is_refused(
    broker: Broker, pki: DevPki, other_ca: DevPki
) -> None:
    foreign = other_ca.client("store-001")
    error = tls_refusal(broker, tls_context(pki.ca, foreign.cert, foreign.key))
    assert "does not trust our client certificate's CA" in describe_tls_error(error)


def test_a_client_trusting_another_ca_refuses_the_broker(
    mqtt_settings: Settings, pki: DevPki, other_ca: DevPki
) -> None:
    own = pki.client("store-001")
    settings = dataclasses.replace(
        mqtt_settings("store-001"), tls=TlsSettings(ca=other_ca.ca, cert=own.cert, key=own.key)
    )
    client = new_client(settings, "store-001")
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        client.connect(settings.host, settings.port)
    cause = describe_tls_error(info.value)
    # paho 2.2 does not close the socket when the TLS handshake fails; free it here rather
    # than have its ResourceWarning surface in whichever test runs the next collection.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del info
        gc.collect()
    assert "not signed by the configured CA" in cause


def test_plaintext_mqtt_is_refused(broker: Broker) -> None:
    with socket.create_connection((broker.host, broker.port), timeout=5) as sock:
        try:
            reply = raw_connect(sock)
        except ConnectionResetError:
            reply = b""
    assert not reply.startswith(b"\x20")  # no CONNACK
    assert reply == b"" or reply[0] == 0x15  # a hang-up or a TLS alert record


def test_queued_order_survives_a_broker_restart(broker: Broker, mqtt_settings: Settings) -> None:
    props = mqtt.Properties(mqtt.PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    store = connected(mqtt_settings("store-001"), "store-001", clean_start=False, properties=props)
    subscribed = threading.Event()
    store.on_subscribe = lambda *_: subscribed.set()
    store.subscribe("xd/v1/store-001/orders", qos=1)
    assert subscribed.wait(5)
    stop_client(store)  # offline, session kept
    cloud = connected(mqtt_settings("cloud-gateway"), "cloud-gateway")
    publish(cloud, "xd/v1/store-001/orders", b"queued order")
    stop_client(cloud)
    port = broker.port
    broker.restart()
    assert broker.port == port

    received: list[bytes] = []
    arrived = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        received.append(msg.payload)
        arrived.set()

    store = new_client(mqtt_settings("store-001"), "store-001")
    store.on_message = on_message
    store.connect(broker.host, broker.port, clean_start=False, properties=props)
    store.loop_start()
    try:
        assert arrived.wait(5), "queued order not delivered after the restart"
    finally:
        stop_client(store)
    assert received == [b"queued order"]


@pytest.mark.skipif(
    shutil.which("mosquitto_sub") is None or shutil.which("mosquitto_pub") is None,
    reason="mosquitto-clients (mosquitto_pub, mosquitto_sub) not installed",
)
def test_mosquitto_cli_clients_with_store_and_gateway_certificates(
    broker: Broker, pki: DevPki
) -> None:
    def args(name: str) -> list[str]:
        tls = pki.client(name)
        return [
            "-h", broker.host, "-p", str(broker.port), "-V", "mqttv5", "-q", "1",
            "--cafile", str(tls.ca), "--cert", str(tls.cert), "--key", str(tls.key),
        ]  # fmt: skip

    topic = "xd/v1/store-001/orders"
    # A persistent session (-c, fixed id) makes the order wait for the subscriber, so no
    # race between subscribing and publishing: -E exits once the SUBACK has arrived.
    session = [*args("store-001"), "-c", "-i", "store-001-cli", "-t", topic]
    subprocess.run(["mosquitto_sub", *session, "-E"], check=True, timeout=10)
    subprocess.run(
        ["mosquitto_pub", *args("cloud-gateway"), "-t", topic, "-m", "cli order"],
        check=True,
        timeout=10,
    )
    got = subprocess.run(
        ["mosquitto_sub", *session, "-C", "1", "-W", "5"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert (got.returncode, got.stdout) == (0, "cli order\n"), got.stderr
    # The same tool as store-001 cannot read store-002's orders.
    denied = [*args("store-001"), "-t", "xd/v1/store-002/orders", "-C", "1", "-W", "2"]
    subprocess.run(
        ["mosquitto_pub", *args("cloud-gateway"), "-t", "xd/v1/store-002/orders", "-r",
         "-m", "retained order for 002"],
        check=True,
        timeout=10,
    )  # fmt: skip
    got = subprocess.run(["mosquitto_sub", *denied], capture_output=True, text=True, timeout=10)
    assert got.stdout == ""


def test_start_failure_shows_the_broker_log(pki: DevPki, tmp_path: Path) -> None:
    bad_key = tmp_path / "bad.key"
    bad_key.write_text("not a key\n")
    bad = dataclasses.replace(pki, server_key=bad_key)
    with pytest.raises(
        BrokerError, match=r"(?s)exited with code .*log:.*Unable to load server key"
    ):
        Broker(tmp_path / "broker", bad, start_timeout=5).start()


def test_missing_mosquitto_names_the_package(
    monkeypatch: pytest.MonkeyPatch, pki: DevPki, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(broker_mod, "EXTRA_BIN_DIRS", (str(tmp_path),))
    with pytest.raises(BrokerError, match="apt-get install -y mosquitto"):
        Broker(tmp_path / "broker", pki).start()
