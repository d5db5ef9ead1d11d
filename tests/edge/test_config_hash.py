"""The configuration's fingerprint: stable for the same settings, different for any
changed setting, blind to what is inside the key files it names."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from devstack.testkit.edge import edge_config
from edge.config_hash import canonical, config_hash
from xiaodian.mqtt import MqttSettings, TlsSettings
from xiaodian.pki import DevPki


@pytest.fixture
def mqtt(pki: DevPki, tmp_path: Path) -> MqttSettings:
    """A store's settings with its own copy of the key (the test rewrites it)."""
    tls = pki.client("store-001")
    key = tmp_path / "store.key"
    shutil.copy(tls.key, key)
    return MqttSettings(host="127.0.0.1", port=8883,
                        tls=TlsSettings(ca=tls.ca, cert=tls.cert, key=key))


def test_same_settings_same_hash_and_any_change_shows(tmp_path: Path,
                                                      mqtt: MqttSettings) -> None:
    a = edge_config(tmp_path / "a", mqtt, fridges=[("fridge-1", tmp_path / "tty1")])
    again = edge_config(tmp_path / "a", mqtt, fridges=[("fridge-1", tmp_path / "tty1")])
    assert config_hash(a) == config_hash(again)
    assert len(config_hash(a)) == 64
    other_port = edge_config(tmp_path / "a", mqtt, fridges=[("fridge-1", tmp_path / "tty2")])
    other_interval = edge_config(tmp_path / "a", mqtt, fridges=[("fridge-1", tmp_path / "tty1")],
                                 readings_interval_s=30.0)
    assert len({config_hash(a), config_hash(other_port), config_hash(other_interval)}) == 3


def test_key_contents_never_enter_it(tmp_path: Path, mqtt: MqttSettings) -> None:
    cfg = edge_config(tmp_path / "a", mqtt, fridges=[("fridge-1", tmp_path / "tty1")])
    before = config_hash(cfg)
    key = mqtt.tls.key.read_text()
    assert str(mqtt.tls.key) in canonical(cfg)  # the path, which says where it is
    assert key.strip().splitlines()[1] not in canonical(cfg)
    mqtt.tls.key.write_text(key.replace("A", "B", 1))  # another key, same file
    assert config_hash(cfg) == before
