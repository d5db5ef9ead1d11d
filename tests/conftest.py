"""Shared fixtures: a private CA, a real Mosquitto per test, and real MQTT clients for it.

def test_example(mqtt_settings, collect):
    sub = collect("cloud-gateway", "xd/v1/+/telemetry")   # subscribed when it returns
    client = new_client(mqtt_settings("store-001"), "store-001")
    ...publish...
    assert sub.wait(1)[0].payload == b"..."
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from devstack.broker import Broker
from devstack.testkit.pg_server import PgServer, find_bindir
from xiaodian.mqtt import MqttSettings, new_client
from xiaodian.pki import DevPki, dev_pki

STORES = ("store-001", "store-002")
# The broker makes every client id its certificate's CN, so each cloud connection a test
# opens needs a certificate of its own: a worker id, and its command (-cmd), downlink
# (-down) and CLI (-cli) publishers (TlsSettings.for_client finds them beside the
# cloud-gateway one). Observers are for `collect` on the cloud side.
WORKERS = ("cloud-1", "cloud-2", "cloud-a", "cloud-b", "cloud-k", "ingest-test", "cli-test")
OBSERVERS = tuple(f"observer-{n}" for n in range(1, 9))
SERVICES = (
    "cloud-gateway",
    *(f"{w}{suffix}" for w in WORKERS for suffix in ("", "-cmd", "-down", "-cli")),
    *OBSERVERS,
)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    """CA, broker certificate and client certificates for STORES and SERVICES."""
    return dev_pki(tmp_path_factory.mktemp("pki"), STORES, SERVICES)


@pytest.fixture
def broker(pki: DevPki, tmp_path: Path) -> Iterator[Broker]:
    """A Mosquitto of this test's own on a free loopback port; stopped afterwards."""
    with Broker(tmp_path / "broker", pki) as b:
        yield b


@pytest.fixture
def mqtt_settings(broker: Broker, pki: DevPki) -> Callable[[str], MqttSettings]:
    """`mqtt_settings(name)`: settings for the broker with `name`'s client certificate."""

    def make(name: str) -> MqttSettings:
        return MqttSettings(host=broker.host, port=broker.port, tls=pki.client(name))

    return make


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Collector:
    """A paho client subscribed to one topic filter, keeping every message it receives."""

    def __init__(self, settings: MqttSettings, client_id: str) -> None:
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._connack: Any = None
        self._suback: list[Any] | None = None
        self.client = new_client(settings, client_id)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._settings = settings

    def start(self, topic: str, qos: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self.client.connect(self._settings.host, self._settings.port, self._settings.keepalive)
        self.client.loop_start()
        with self._cond:
            if not self._cond.wait_for(lambda: self._connack is not None, _left(deadline)):
                raise TimeoutError("no CONNACK")
            if self._connack.is_failure:
                raise ConnectionError(f"connection refused: {self._connack}")
        self.client.subscribe(topic, qos)
        with self._cond:
            if not self._cond.wait_for(lambda: self._suback is not None, _left(deadline)):
                raise TimeoutError(f"no SUBACK for {topic}")

    def subscribe(self, topic: str, qos: int = 1, timeout: float = 5.0) -> list[Any]:
        """Subscribe to one more filter; the SUBACK's reason codes once it arrives."""
        with self._cond:
            self._suback = None
        self.client.subscribe(topic, qos)
        with self._cond:
            if not self._cond.wait_for(lambda: self._suback is not None, timeout):
                raise TimeoutError(f"no SUBACK for {topic}")
            return list(self._suback or [])

    def wait(self, count: int, timeout: float = 5.0, topic: str | None = None) -> list[Received]:
        """All messages so far (on `topic` only, if given), once there are at least `count`;
        AssertionError at the deadline."""

        def mine() -> list[Received]:
            return [m for m in self.messages if topic is None or m.topic == topic]

        with self._cond:
            if not self._cond.wait_for(lambda: len(mine()) >= count, timeout):
                raise AssertionError(
                    f"expected {count} message(s) within {timeout} s, got {self.messages!r}"
                )
            return mine()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        with self._cond:
            self._connack = rc
            self._cond.notify_all()

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, rcs: Any, props: Any
    ) -> None:
        with self._cond:
            self._suback = list(rcs)
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Received(msg.topic, bytes(msg.payload), msg.qos, msg.retain))
            self._cond.notify_all()


@pytest.fixture
def collect(mqtt_settings: Callable[[str], MqttSettings]) -> Iterator[Callable[..., Collector]]:
    """`collect(name, topic, qos=1)`: a Collector connected as `name`, already subscribed.

    A service name gets an observer certificate of its own (same rights), so collectors
    never take over a cloud connection the test runs under that name; a store name is that
    store (its client id is its store id: do not run a second client of it meanwhile).
    """
    collectors: list[Collector] = []
    observers = iter(OBSERVERS)

    def start(name: str, topic: str, qos: int = 1, timeout: float = 5.0) -> Collector:
        identity = next(observers) if name in SERVICES else name
        c = Collector(mqtt_settings(identity), identity)
        collectors.append(c)
        c.start(topic, qos, timeout)
        return c

    yield start
    for c in collectors:
        c.close()


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


# ---------------------------------------------------------------- databases (SQLite, PostgreSQL)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A private PostgreSQL server for the session (devstack/testkit/pg_server.py), started
    on first use.

    Skipped only when the machine has no PostgreSQL server binaries at all
    (scripts/bootstrap.sh installs them); any other failure to start is an error."""
    if find_bindir() is None:
        pytest.skip("PostgreSQL server binaries (initdb, postgres) not installed:"
                    " sudo apt-get install -y postgresql")
    from cloud_gateway.db import Database

    server = PgServer.start()
    try:
        # Every test's database is a copy of one that has the cloud schema already.
        Database.open(server.create_database("xd_template")).close()
        server.template = "xd_template"
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh database on the session's PostgreSQL server (with the cloud schema); its URL."""
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """What `Database.open` takes, once per backend: a new SQLite file or PostgreSQL URL."""
    if request.param == "sqlite":
        return tmp_path / "cloud.sqlite"
    url: str = request.getfixturevalue("pg_url")
    return url
