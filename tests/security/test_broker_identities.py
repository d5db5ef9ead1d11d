"""A hostile store with its own valid certificate, against the real broker: it can neither
take the cloud's share of other stores' messages nor take over another client's identity.

Everything is judged by delivery (what reaches whom), never by a SUBACK or CONNACK, with
the real `mosquitto_sub`/`mosquitto_pub` binaries and with paho.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from devstack.broker import Broker
from devstack.testkit.mqtt_clients import connected, stop_client
from xiaodian.mqtt import MqttSettings, TlsSettings, new_client
from xiaodian.pki import DevPki

Settings = Callable[[str], MqttSettings]
N = 20  # messages per run: with one hostile member of two, about half used to vanish

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto_sub") is None or shutil.which("mosquitto_pub") is None,
    reason="mosquitto-clients not installed (sudo apt-get install -y mosquitto-clients)",
)


def cli_args(broker: Broker, tls: TlsSettings, client_id: str) -> list[str]:
    return [
        "-h", "127.0.0.1", "-p", str(broker.port), "-V", "mqttv5", "-i", client_id,
        "--cafile", str(tls.ca), "--cert", str(tls.cert), "--key", str(tls.key),
    ]  # fmt: skip


def own_files_only(pki: DevPki, name: str, tmp_path: Path) -> TlsSettings:
    """`name`'s certificate and key alone in a directory, as on a real store terminal.

    In the test PKI every certificate lies side by side, and new_client would pick the
    victim's own certificate for the victim's client id (TlsSettings.for_client).
    """
    src = pki.client(name)
    own = tmp_path / f"{name}-tls"
    own.mkdir(exist_ok=True)
    cert, key = own / src.cert.name, own / src.key.name
    shutil.copy(src.cert, cert)
    shutil.copy(src.key, key)
    return TlsSettings(ca=src.ca, cert=cert, key=key)


@contextmanager
def mosquitto_sub(broker: Broker, tls: TlsSettings, client_id: str, topic: str) -> Iterator[
    list[str]
]:
    """A `mosquitto_sub` running while inside, subscribed (its SUBACK seen) when entered;
    yields the lines it has printed so far (debug output, then `topic payload` lines)."""
    # Line-buffered, or a subscribed mosquitto_sub would print nothing until it exits.
    stdbuf = ["stdbuf", "-oL"] if shutil.which("stdbuf") else []
    proc = subprocess.Popen(
        [*stdbuf, "mosquitto_sub", *cli_args(broker, tls, client_id),
         "-t", topic, "-q", "1", "-v", "-d"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    subscribed = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if "received SUBACK" in line:
                subscribed.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert subscribed.wait(5), f"mosquitto_sub got no SUBACK: {lines}"
        yield lines
    finally:
        # Refused its subscription, it leaves by itself; a SIGTERM during that exit can
        # leave it hanging, so give it a moment first, and kill it if need be.
        try:
            proc.wait(1)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(5)
        assert proc.stdout is not None
        proc.stdout.close()


def mosquitto_pub(broker: Broker, tls: TlsSettings, client_id: str, topic: str,
                  payloads: list[str]) -> None:
    """One `mosquitto_pub` connection publishing each payload at QoS 1 (`-l`: a line each)."""
    subprocess.run(
        ["mosquitto_pub", *cli_args(broker, tls, client_id), "-t", topic, "-q", "1", "-l"],
        input="".join(p + "\n" for p in payloads), text=True, check=True, timeout=20,
        capture_output=True,
    )  # fmt: skip


def received_publishes(lines: list[str]) -> list[str]:
    return [line for line in lines if "received PUBLISH" in line]


# --- 1. the cloud's shared groups ------------------------------------------------------------


@pytest.mark.parametrize("leaf", ["telemetry", "events", "alerts", "cmd/res"])
def test_a_hostile_store_in_the_cloud_s_shared_group_takes_nothing_away(
    broker: Broker, pki: DevPki, collect: Callable[..., Any], leaf: str
) -> None:
    shared = f"$share/ingest/xd/v1/+/{leaf}"
    cloud = collect("cloud-gateway", shared)
    hostile_tls = pki.client("store-002")
    # Two hostile members, the real binary and paho: without the subscribe rules each got
    # its turn of the round robin and the broker dropped it on the read ACL.
    paho_hostile = new_client(
        MqttSettings(broker.host, broker.port, hostile_tls), "store-002"
    )
    got_by_paho: list[str] = []
    suback: list[Any] = []
    answered = threading.Event()
    paho_hostile.on_message = lambda c, u, m: got_by_paho.append(m.topic)
    paho_hostile.on_subscribe = lambda c, u, mid, codes, p: (suback.extend(codes), answered.set())
    paho_hostile.on_connect = lambda c, *_: c.subscribe(shared, qos=1)
    with mosquitto_sub(broker, hostile_tls, "store-002-spy", shared) as spy_lines:
        paho_hostile.connect(broker.host, broker.port)
        paho_hostile.loop_start()
        try:
            assert answered.wait(5), "no SUBACK for the hostile paho client"
            payloads = [f'{{"n":{i}}}' for i in range(N)]
            mosquitto_pub(broker, pki.client("store-001"), "store-001",
                          f"xd/v1/store-001/{leaf}", payloads)
            messages = cloud.wait(N, timeout=10)
        finally:
            stop_client(paho_hostile)
        assert sorted(m.payload.decode() for m in messages) == sorted(payloads)
        assert {m.topic for m in messages} == {f"xd/v1/store-001/{leaf}"}
        assert received_publishes(spy_lines) == []
    assert got_by_paho == []
    # Secondary: the broker refuses such a SUBSCRIBE outright (subscribe rules).
    assert [code.is_failure for code in suback] == [True]


def test_a_store_cannot_rewrite_the_subscribe_rules(
    broker: Broker, pki: DevPki, collect: Callable[..., Any]
) -> None:
    """The plugin's `$CONTROL` API is closed to every client: a store granting itself `#`
    changes neither the rules file nor what the cloud receives."""
    rules = broker.directory / "subscribe-rules.json"
    before = rules.read_text(encoding="utf-8")
    grant = json.dumps({"commands": [{
        "command": "addRoleACL", "rolename": "store-store-002", "acltype": "subscribePattern",
        "topic": "#", "allow": True, "priority": 100,
    }]})
    hostile = pki.client("store-002")
    mosquitto_pub(broker, hostile, "store-002", "$CONTROL/dynamic-security/v1", [grant])
    shared = "$share/ingest/xd/v1/+/telemetry"
    cloud = collect("cloud-gateway", shared)
    with mosquitto_sub(broker, hostile, "store-002", shared) as spy_lines:
        payloads = [str(i) for i in range(N)]
        mosquitto_pub(broker, pki.client("store-001"), "store-001",
                      "xd/v1/store-001/telemetry", payloads)
        assert sorted(m.payload.decode() for m in cloud.wait(N, timeout=10)) == sorted(payloads)
        assert received_publishes(spy_lines) == []
    assert rules.read_text(encoding="utf-8") == before


def test_the_cloud_workers_still_share_the_load(
    collect: Callable[..., Any], mqtt_settings: Settings
) -> None:
    """The subscribe rules admit cloud identities to the shared group: the two share N."""
    shared = "$share/ingest/xd/v1/+/telemetry"
    a, b = collect("cloud-gateway", shared), collect("cloud-gateway", shared)
    with connected(mqtt_settings("store-001"), "store-001") as store:
        for i in range(N):
            store.publish("xd/v1/store-001/telemetry", str(i).encode(), qos=1).wait_for_publish(5)
    a.wait(1)
    b.wait(1)  # each got a share
    deadline = time.monotonic() + 10
    while len(a.messages) + len(b.messages) < N and time.monotonic() < deadline:
        time.sleep(0.05)
    both = [m.payload for m in a.messages + b.messages]
    assert sorted(both, key=int) == [str(i).encode() for i in range(N)]


# --- 2. client ids bound to certificates -----------------------------------------------------


class Victim:
    """A client with a persistent session (1 h), subscribed to `topic`, counting its drops."""

    def __init__(self, settings: MqttSettings, client_id: str, topic: str) -> None:
        self.settings, self.client_id, self.topic = settings, client_id, topic
        self.messages: list[bytes] = []
        self.disconnects = 0
        self.session_present: bool | None = None
        self._cond = threading.Condition()
        self.client: mqtt.Client | None = None

    def connect(self) -> None:
        client = new_client(self.settings, self.client_id)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_: self._notify()
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        props = mqtt.Properties(mqtt.PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        client.connect(self.settings.host, self.settings.port, clean_start=False,
                       properties=props)
        client.loop_start()
        self.client = client
        with self._cond:
            assert self._cond.wait_for(lambda: self.session_present is not None, 5)

    def subscribe(self) -> None:
        assert self.client is not None
        with self._cond:
            self._subscribed = False
        self.client.subscribe(self.topic, qos=1)
        with self._cond:
            assert self._cond.wait_for(lambda: self._subscribed, 5)

    def go_offline(self) -> None:
        """Disconnect, keeping the session (its expiry is an hour)."""
        assert self.client is not None
        stop_client(self.client)
        self.client, self.session_present = None, None
        self.disconnects = 0

    def wait(self, count: int, timeout: float = 5.0) -> list[bytes]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.messages) >= count, timeout), (
                f"expected {count} message(s), got {self.messages}"
            )
            return list(self.messages)

    def _notify(self) -> None:
        with self._cond:
            self._subscribed = True
            self._cond.notify_all()

    def _on_connect(self, c: mqtt.Client, u: Any, flags: Any, rc: Any, p: Any) -> None:
        with self._cond:
            self.session_present = bool(flags.session_present)
            self._cond.notify_all()

    def _on_message(self, c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(bytes(msg.payload))
            self._cond.notify_all()

    def _on_disconnect(self, *_: Any) -> None:
        with self._cond:
            self.disconnects += 1


# (victim's certificate and client id, what it subscribes to, who feeds it, on which topic)
VICTIMS = {
    "another store": ("store-001", "xd/v1/store-001/orders", "cloud-gateway",
                      "xd/v1/store-001/orders"),
    "a cloud worker": ("cloud-1", "$share/ingest/xd/v1/+/telemetry", "store-001",
                       "xd/v1/store-001/telemetry"),
}


def impersonate(broker: Broker, tls: TlsSettings, client_id: str, topic: str,
                tool: str) -> list[str]:
    """Connect with store-002's certificate claiming `client_id` (clean start, so a session
    of that id would be wiped) and subscribe; what it received, once disconnected."""
    if tool == "mosquitto_sub":
        with mosquitto_sub(broker, tls, client_id, topic) as lines:
            pass
        return received_publishes(lines)
    got: list[str] = []
    client = new_client(MqttSettings(broker.host, broker.port, tls), client_id)
    client.on_message = lambda c, u, m: got.append(m.topic)
    subscribed = threading.Event()
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.connect(broker.host, broker.port, clean_start=True)
    client.loop_start()
    try:
        assert subscribed.wait(5)
    finally:
        stop_client(client)
    return got


@pytest.mark.parametrize("tool", ["mosquitto_sub", "paho"])
@pytest.mark.parametrize("victim_kind", list(VICTIMS))
def test_another_client_s_id_cannot_be_taken(
    broker: Broker, pki: DevPki, mqtt_settings: Settings, tmp_path: Path,
    victim_kind: str, tool: str,
) -> None:
    name, topic, feeder, feed_topic = VICTIMS[victim_kind]
    attacker = own_files_only(pki, "store-002", tmp_path)
    victim = Victim(mqtt_settings(name), name, topic)
    victim.connect()
    victim.subscribe()

    def feed(*payloads: bytes) -> None:
        with connected(mqtt_settings(feeder), feeder) as client:
            for p in payloads:
                client.publish(feed_topic, p, qos=1).wait_for_publish(5)

    try:
        # Online: the broker makes the attacker store-002, so the victim is not cut off.
        stolen = impersonate(broker, attacker, name, topic, tool)
        feed(b"while online")
        assert victim.wait(1) == [b"while online"]
        assert victim.disconnects == 0, "the victim's connection was taken over"
        # Offline: the session and its queued QoS 1 messages survive a clean-start claim.
        victim.go_offline()
        feed(b"queued 1", b"queued 2", b"queued 3")
        stolen += impersonate(broker, attacker, name, topic, tool)
        victim.connect()
        assert victim.session_present is True, "the victim's session was wiped"
        assert victim.wait(4)[1:] == [b"queued 1", b"queued 2", b"queued 3"]
    finally:
        if victim.client is not None:
            stop_client(victim.client)
    assert stolen == []
    # And the broker's own account: the claim was made under the attacker's CN.
    log = broker.log_path.read_text(encoding="utf-8", errors="replace")
    assert f"as {name} (p5, c1, k60, u'store-002')" not in log
    assert "u'store-002'" in log


def test_cloud_run_refuses_connections_that_would_share_a_certificate(
    pki: DevPki, broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the worker's certificate at hand: its downlink publisher would connect under
    the same CN, cut the worker off and, starting clean, wipe its queued messages."""
    from devstack.cli import main

    tls = own_files_only(pki, "cloud-1", tmp_path)
    cfg = tmp_path / "cloud.toml"
    cfg.write_text(
        f'[cloud]\ndb = "{tmp_path / "c.sqlite"}"\nworker_id = "cloud-1"\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        f'[mqtt.tls]\nca = "{tls.ca}"\ncert = "{tls.cert}"\nkey = "{tls.key}"\n')
    assert main(["cloud", "run", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "refusing to start" in err and "'cloud-1-down'" in err
    assert str(tls.cert.with_name("cloud-1-down.crt")) in err
