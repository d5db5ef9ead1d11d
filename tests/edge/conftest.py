"""Fixtures of the edge tests used by several modules (beside tests/conftest.py's broker and
MQTT clients); the parts they hand out live in helper modules beside the tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fake_fridge import FakeFridge
from notify_listener import Listener

from cloud_gateway.ingest import IngestWorker
from devstack.testkit.edge import ingest_worker
from xiaodian.mqtt import MqttSettings
from xiaodian.pki import load_command_private_key, make_command_key


@pytest.fixture
def cloud(tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings]) -> Iterator[IngestWorker]:
    """A real cloud ingest worker: it commits what arrives and sends the store receipts.
    (The modules that send signed commands use command_cloud's `cloud` instead.)"""
    with ingest_worker(mqtt_settings("cloud-gateway"), tmp_path / "cloud.sqlite3") as worker:
        yield worker


@pytest.fixture
def fridge(tmp_path: Path) -> Iterator[FakeFridge]:
    """A fridge controller played by the test on the pty "fridge-1" in tmp_path."""
    dev = FakeFridge(tmp_path / "fridge-1")
    yield dev
    dev.close()


@pytest.fixture
def signing(tmp_path: Path) -> tuple[Ed25519PrivateKey, str, Path]:
    """A command key pair made as `xiaodian pki command-key` makes it."""
    priv, pub, kid = make_command_key(tmp_path / "cmdkey")
    return load_command_private_key(priv), kid, pub


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Listener]:
    """systemd's notify socket, at tmp_path/"notify"."""
    lst = Listener(tmp_path / "notify")
    yield lst
    lst.close()
