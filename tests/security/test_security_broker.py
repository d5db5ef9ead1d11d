"""Revocation, renewal, expiry and signed commands against a real Mosquitto (2.0.11 here)."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from devstack.broker import Broker, _free_port, find_mosquitto, write_broker_config
from devstack.testkit.mqtt_clients import connected, start_client, stop_client, subscribe
from devstack.testkit.wait import wait
from edge.replay_store import ReplayStore
from xiaodian import pki
from xiaodian.mqtt import MqttSettings, command_publish, describe_tls_error, new_client
from xiaodian.pki.files import load_ca
from xiaodian.wire.commands import (
    CommandVerifier,
    Reason,
    key_id_for,
    sign_command,
)


@pytest.fixture
def fleet(tmp_path: Path) -> pki.DevPki:
    """A PKI made the way an operator makes one: init, issue-service, issue-store."""
    d = tmp_path / "pki"
    pki.init_pki(d)
    pki.issue_service(d, "cloud-gateway")
    for store in ("store-001", "store-002"):
        pki.issue_store(d, store)
    return pki.load_pki(d)


@pytest.fixture
def fleet_broker(fleet: pki.DevPki, tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path / "broker", fleet) as b:
        yield b


def handshake(broker: Broker, ca: Path, cert: Path, key: Path) -> ssl.SSLError | None:
    """None if the broker keeps the TLS connection, else the error it refused with.

    Reads before writing: under TLS 1.3 the broker judges the client certificate after the
    client's handshake has finished and answers with an alert, which a write could race.
    """
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    with socket.create_connection((broker.host, broker.port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname=broker.host) as tls:
                tls.settimeout(0.3)
                tls.recv(1)  # the broker says nothing before CONNECT: a timeout = kept
        except TimeoutError:
            return None
        except ssl.SSLError as exc:
            return exc
    raise AssertionError("broker closed the connection without a TLS alert")


def client_handshake(broker: Broker, fleet: pki.DevPki, name: str) -> ssl.SSLError | None:
    tls = fleet.client(name)
    return handshake(broker, tls.ca, tls.cert, tls.key)


def wait_refused(check: Callable[[], ssl.SSLError | None], timeout: float = 30.0) -> ssl.SSLError:
    return wait(check, timeout, "a refusal (still accepted)")


def connected_client(broker: Broker, fleet: pki.DevPki, name: str) -> mqtt.Client:
    settings = MqttSettings(host=broker.host, port=broker.port, tls=fleet.client(name))
    return start_client(settings, f"{name}-{time.monotonic_ns()}", wait_connected=5)


def test_revoked_store_is_refused_after_reload_and_restart(
    fleet_broker: Broker, fleet: pki.DevPki
) -> None:
    assert client_handshake(fleet_broker, fleet, "store-001") is None
    open_client = connected_client(fleet_broker, fleet, "store-001")
    try:
        pki.revoke(fleet.directory / "ca", "store-001", "key_compromise")
        # Mosquitto 2.0.11 does not notice a new CRL file by itself ...
        time.sleep(0.3)
        assert client_handshake(fleet_broker, fleet, "store-001") is None
        # ... but re-reads it on SIGHUP.
        fleet_broker.reload()
        error = wait_refused(lambda: client_handshake(fleet_broker, fleet, "store-001"))
        assert "revoked" in describe_tls_error(error)
        assert client_handshake(fleet_broker, fleet, "store-002") is None
        # A connection opened before the reload is not re-checked: it lives on.
        assert open_client.is_connected()
        fleet_broker.restart()
        error = wait_refused(lambda: client_handshake(fleet_broker, fleet, "store-001"))
        assert describe_tls_error(error).startswith("our client certificate was revoked")
    finally:
        stop_client(open_client)


def test_renewed_and_previous_certificates_both_connect(
    fleet_broker: Broker, fleet: pki.DevPki, tmp_path: Path
) -> None:
    tls = fleet.client("store-001")
    old = tmp_path / "old.crt"
    old.write_bytes(tls.cert.read_bytes())
    renewed = pki.renew(fleet.directory, "store-001")
    assert x509.load_pem_x509_certificate(tls.cert.read_bytes()) == renewed
    assert handshake(fleet_broker, tls.ca, tls.cert, tls.key) is None
    assert handshake(fleet_broker, tls.ca, old, tls.key) is None


def test_an_expired_client_certificate_is_refused(
    fleet_broker: Broker, fleet: pki.DevPki, tmp_path: Path
) -> None:
    ca_cert, ca_key = load_ca(fleet.directory / "ca")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "store-001")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now - dt.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "expired.crt", tmp_path / "expired.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    error = handshake(fleet_broker, fleet.ca, cert_path, key_path)
    assert error is not None
    assert "expired" in describe_tls_error(error)


def test_a_stale_crl_locks_out_every_client(fleet_broker: Broker, fleet: pki.DevPki) -> None:
    """Why `pki crl` must run before next-update: OpenSSL then refuses everyone."""
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    pki.write_crl(fleet.directory / "ca", days=1, now=past)
    fleet_broker.reload()
    error = wait_refused(lambda: client_handshake(fleet_broker, fleet, "cloud-gateway"))
    # The alert OpenSSL sends is "certificate expired", though the certificate is fine.
    assert "certificate expired" in str(error)
    pki.write_crl(fleet.directory / "ca")
    fleet_broker.reload()
    wait(lambda: client_handshake(fleet_broker, fleet, "cloud-gateway") is None, 30,
         "the fresh CRL picked up")


def test_dev_plaintext_listener_is_loopback_only_and_opt_in(
    fleet: pki.DevPki, tmp_path: Path
) -> None:
    tls_port, plain_port = _free_port("127.0.0.1"), _free_port("127.0.0.1")
    conf = write_broker_config(tmp_path / "b", fleet, tls_port, dev_plaintext_port=plain_port)
    assert f"listener {plain_port} 127.0.0.1" in conf.read_text().splitlines()

    # Run mosquitto on exactly that file (Broker would rewrite it).
    proc = subprocess.Popen(
        [find_mosquitto(), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        process_group=0,
    )
    try:
        def listening() -> socket.socket | None:
            try:
                return socket.create_connection(("127.0.0.1", plain_port), timeout=2)
            except ConnectionRefusedError:
                return None

        sock = wait(listening, 30, "the plaintext listener")
        with sock:
            # MQTT 3.1.1 CONNECT, client id "dev", no credentials: accepted (CONNACK 0).
            sock.sendall(b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x05\x00\x03dev")
            assert sock.recv(4) == b"\x20\x02\x00\x00"
    finally:
        proc.terminate()
        proc.wait(5)


def test_signed_command_travels_with_mqtt5_properties(
    broker: Broker, mqtt_settings: Callable[[str], MqttSettings], tmp_path: Path
) -> None:
    """Cloud -> broker -> store with the session PKI; only the target store receives it."""
    key = ed25519.Ed25519PrivateKey.generate()
    kid = key_id_for(key.public_key())
    received: list[mqtt.MQTTMessage] = []
    got = threading.Event()
    spy_got: list[str] = []

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        received.append(msg)
        got.set()

    clients = []
    for name, topic, handler in (
        ("store-001", "xd/v1/store-001/cmd/req", on_message),
        ("store-002", "#", lambda c, u, m: spy_got.append(m.topic)),
    ):
        c = start_client(mqtt_settings(name), f"{name}-cmd")
        subscribe(c, topic, handler)
        clients.append(c)
    cloud = start_client(mqtt_settings("cloud-gateway"), "cloud-cmd")
    try:
        now = time.time()
        signed = sign_command(
            key, kid, target="store-001", action="defrost",
            params={"device": "fridge-1", "minutes": 20}, issued_at=int(now), lifetime_s=60,
        )  # fmt: skip
        pub = command_publish(signed, now)
        info = cloud.publish(pub.topic, pub.payload, qos=pub.qos, properties=pub.properties)
        info.wait_for_publish(5)
        assert got.wait(5)
    finally:
        for c in [*clients, cloud]:
            stop_client(c)
    [msg] = received
    props = msg.properties
    assert props is not None
    assert props.ResponseTopic == "xd/v1/store-001/cmd/res"
    assert props.CorrelationData == signed.command.command_id.encode()
    assert 55 <= props.MessageExpiryInterval <= 60
    verifier = CommandVerifier(
        {kid: key.public_key()}, "store-001", time.time, ReplayStore(":memory:")
    )
    assert verifier.verify(msg.payload).reason is Reason.OK
    assert not [t for t in spy_got if t.startswith("xd/v1/store-001/")]


def test_the_broker_refuses_oversized_packets(
    mqtt_settings: Callable[[str], MqttSettings], collect: Callable[..., Any]
) -> None:
    cloud = collect("cloud-gateway", "xd/v1/+/telemetry")
    store = new_client(mqtt_settings("store-001"), "store-001-big")
    gone = threading.Event()
    store.on_disconnect = lambda *_: gone.set()
    store.connect("127.0.0.1", mqtt_settings("store-001").port)
    store.loop_start()
    try:
        store.publish("xd/v1/store-001/telemetry", b"x" * 600_000, qos=1)
        assert gone.wait(5), "broker kept a client that sent a 600 KB packet"
    finally:
        store.loop_stop()
    with connected(mqtt_settings("store-001"), "store-001-ok") as ok:
        ok.publish("xd/v1/store-001/telemetry", b"small", qos=1).wait_for_publish(5)
    assert [m.payload for m in cloud.wait(1)] == [b"small"]
