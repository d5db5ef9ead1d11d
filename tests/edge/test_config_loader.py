"""Configuration errors name the file and the key; good files become frozen objects."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from devstack.testkit.edge import edge_config, edge_toml
from edge.config import AgentUpdateSettings, EdgeConfig
from xiaodian.config import ConfigError, load_config
from xiaodian.pki.keys import make_agent_key

GOOD = """
[edge]
store_id = "store-001"
data_dir = "data"

[mqtt]
host = "127.0.0.1"
port = 8883
[mqtt.tls]
ca = "pki/ca.crt"
cert = "pki/store-001.crt"
key = "pki/store-001.key"

[[fridges]]
id = "fridge-1"
port = "/dev/ttyUSB0"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_file_gives_a_frozen_object_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, GOOD), EdgeConfig)
    assert cfg.edge.data_dir == tmp_path / "data"
    assert cfg.mqtt.tls.ca == tmp_path / "pki" / "ca.crt"
    assert cfg.fridges[0].port == Path("/dev/ttyUSB0")
    assert cfg.fridges[0].baudrate == 115200
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.edge.store_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        (("port = 8883", 'port = "8883"'), "mqtt.port", "expected an integer"),
        (("port = 8883", "port = 70000"), "mqtt.port", "between 1 and 65535"),
        (('host = "127.0.0.1"\n', ""), "mqtt.host", "missing required key"),
        (
            ('data_dir = "data"', 'data_dir = "data"\ndata_dri = "x"'),
            "edge.data_dri",
            "unknown key",
        ),
        (('id = "fridge-1"', 'id = "fridge 1"'), "fridges[0].id", "must be 1-64"),
        (
            ('port = "/dev/ttyUSB0"', 'port = "/dev/ttyUSB0"\nbaudrate = 12345'),
            "fridges[0].baudrate",
            "not a standard rate",
        ),
        (('store_id = "store-001"', "store_id = 17"), "edge.store_id", "expected a string"),
    ],
)
def test_each_bad_value_names_its_key_and_the_file(
    tmp_path: Path, change: tuple[str, str], key: str, problem: str
) -> None:
    path = _write(tmp_path, GOOD.replace(*change, 1))
    with pytest.raises(ConfigError) as err:
        load_config(path, EdgeConfig)
    assert err.value.key == key
    assert problem in err.value.problem
    assert str(path) in str(err.value)


def test_duplicate_device_ids_are_refused(tmp_path: Path) -> None:
    text = GOOD + '\n[[fridges]]\nid = "fridge-1"\nport = "/dev/ttyUSB1"\n'
    with pytest.raises(ConfigError, match="used twice"):
        load_config(_write(tmp_path, text), EdgeConfig)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml", EdgeConfig)
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[edge\n"), EdgeConfig)


@pytest.mark.parametrize("name", ["alerts", "Ledger", "orders", "counter", "terminal"])
def test_a_device_may_not_take_the_name_of_one_of_the_agents_own_streams(
    tmp_path: Path, name: str
) -> None:
    path = _write(tmp_path, GOOD.replace('id = "fridge-1"', f'id = "{name}"'))
    with pytest.raises(ConfigError, match=r"fridges\[0\]\.id.*agent's own streams") as err:
        load_config(path, EdgeConfig)
    assert str(path) in str(err.value)


def test_agent_update_defaults_follow_the_data_dir_and_bad_values_name_their_key(
        tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, GOOD), EdgeConfig)
    assert cfg.agent_update.keys == ()  # no section: the agent takes no update of itself
    assert cfg.agent_update.health_window_s == 180.0
    assert cfg.update_dir == tmp_path / "data" / "update"
    assert cfg.health_path() == tmp_path / "data" / "health.json"  # `edge run` by hand
    # Under systemd, in the unit's runtime directory (tmpfs), not on the terminal's flash.
    assert cfg.health_path("/run/xiaodian") == Path("/run/xiaodian/health.json")
    assert cfg.agent_update.status_file == Path("/var/lib/xiaodian-update/status.json")
    cfg = load_config(_write(tmp_path, GOOD + '[agent_update]\nupdate_dir = "u"\n'
                             'health_file = "h.json"\nstatus_file = "s.json"\n'), EdgeConfig)
    assert (cfg.update_dir, cfg.health_path("/run/xiaodian"), cfg.agent_update.status_file) == (
        tmp_path / "u", tmp_path / "h.json", tmp_path / "s.json")  # a set path wins
    for extra, key, problem in [
        ("health_window_s = 5", "agent_update.health_window_s", "between 30 and 1800"),
        ("health_window_s = 1801", "agent_update.health_window_s", "between 30 and 1800"),
        ('keys = ["missing.pub"]', "agent_update.keys", "cannot load"),
        ("keys = 3", "agent_update.keys", "expected a list"),
    ]:
        path = _write(tmp_path, GOOD + "[agent_update]\n" + extra + "\n")
        with pytest.raises(ConfigError) as err:
            load_config(path, EdgeConfig)
        assert (err.value.key, problem in err.value.problem) == (key, True), err.value


def test_the_testkit_writes_agent_update_as_the_agent_reads_it(tmp_path: Path) -> None:
    _, pub, _ = make_agent_key(tmp_path / "keys")
    base = load_config(_write(tmp_path, GOOD), EdgeConfig)
    wanted = AgentUpdateSettings(keys=(pub,), health_window_s=60.0,
                                 status_file=tmp_path / "root" / "status.json")
    cfg = edge_config(tmp_path / "data", base.mqtt, agent_update=wanted)
    (tmp_path / "round.toml").write_text(edge_toml(cfg), encoding="utf-8")
    assert load_config(tmp_path / "round.toml", EdgeConfig).agent_update == wanted
