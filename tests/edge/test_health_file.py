"""The agent's health statement (edge/health_file.py): its fields from what the agent knows,
written atomically with mode 0644 and never fsynced, and a real agent writing it from its
main loop into systemd's runtime directory, not its data directory."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fake_fridge import FakeFridge, agent_config, reader_up
from notify_listener import Listener

from cloud_gateway.ingest import IngestWorker
from devstack.testkit.edge import RunningAgent
from devstack.testkit.wait import wait
from edge import durable_file, health_file
from edge.health_file import HealthFile
from xiaodian import __version__
from xiaodian.mqtt import MqttSettings


def test_the_statement_says_exactly_what_the_agent_knows() -> None:
    doc = health_file.statement(version="1.2.3", pid=42, started_at=100.0, at=130.0,
                                ready=True, connected=False,
                                devices_read=["fridge-2", "fridge-1", "fridge-1"],
                                devices=["fridge-2", "fridge-1"], confirmed=False,
                                outbox_empty=False)
    assert doc == {"version": "1.2.3", "pid": 42, "started_at": 100.0, "at": 130.0,
                   "ready": True, "connected": False, "devices_read": ["fridge-1", "fridge-2"],
                   "devices": ["fridge-1", "fridge-2"], "outbox_moving": False}
    for confirmed, empty in [(True, False), (False, True)]:
        assert health_file.statement(version="1.2.3", pid=1, started_at=0, at=0, ready=False,
                                     connected=True, devices_read=[], devices=[],
                                     confirmed=confirmed,
                                     outbox_empty=empty)["outbox_moving"] is True


def test_the_file_counts_only_configured_fridges_read_in_this_run(tmp_path: Path) -> None:
    os.umask(0o077)  # systemd's: the helper must still read the statement
    try:
        h = HealthFile(tmp_path / "health.json", "1.2.3", 10.0, ["fridge-1", "fridge-2"],
                       pid=7)
        h.saw_readings(["fridge-1", "scanner", "fridge-1"])
        written = h.step(at=11.0, ready=True, connected=True, confirmed=True,
                         outbox_empty=False)
    finally:
        os.umask(0o022)
    on_disk = json.loads((tmp_path / "health.json").read_text())
    assert on_disk == written
    assert on_disk["devices_read"] == ["fridge-1"] and on_disk["pid"] == 7
    assert stat.S_IMODE((tmp_path / "health.json").stat().st_mode) == 0o644
    assert not (tmp_path / "health.json.tmp").exists()


def test_the_statement_is_never_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rewritten every 5 s for as long as the agent runs: an fsync each time was ~17,000
    synced writes a day to the terminal's flash, for a file worthless after a power cut."""
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    durable_file.write_atomically(tmp_path / "other.json", b"{}")
    assert len(synced) == 2  # the spy sees a durable write: the file and its directory
    synced.clear()
    h = HealthFile(tmp_path / "health.json", "1.2.3", 0.0, ["fridge-1"])
    for at in range(3):
        h.step(at=float(at), ready=True, connected=True, confirmed=True, outbox_empty=False)
    assert synced == []
    assert json.loads((tmp_path / "health.json").read_text())["at"] == 2.0


def test_a_write_that_fails_is_logged_once_and_never_raises(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    h = HealthFile(tmp_path / "missing-dir" / "health.json", "1.2.3", 0.0, [])
    for _ in range(3):
        h.step(at=1.0, ready=False, connected=False, confirmed=False, outbox_empty=True)
    assert len([r for r in caplog.records if "health statement" in r.message]) == 1


def _statement(path: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc


def test_the_running_agent_states_its_health_from_its_main_loop(
        cloud: IngestWorker, listener: Listener, tmp_path: Path, fridge: FakeFridge,
        monkeypatch: pytest.MonkeyPatch, mqtt_settings: Callable[[str], MqttSettings]) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))  # as under systemd
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    run = tmp_path / "run"  # RuntimeDirectory=xiaodian: /run/xiaodian, made by systemd
    run.mkdir()
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(run))
    cfg = agent_config(tmp_path, mqtt_settings("store-001"), tmp_path / "fridge-1")
    path = run / "health.json"
    with RunningAgent(cfg) as agent:
        wait(lambda: reader_up(agent), 10, "serial port opened")
        first = wait(lambda: _statement(path), 20, "a first statement")
        assert first["devices_read"] == []  # nothing read in this run yet
        assert (first["version"], first["pid"], first["devices"]) == (
            __version__, os.getpid(), ["fridge-1"])
        fridge.hello()
        for i in range(3):
            fridge.temp(i * 10_000, 3.0)

        def healthy_now() -> dict[str, Any] | None:
            d = _statement(path)
            ok = (d.get("devices_read") == ["fridge-1"] and d["ready"] and d["connected"]
                  and d["outbox_moving"])
            return d if ok else None

        healthy = wait(healthy_now, 20, "ready, connected, fridge-1 read, outbox moving")
        assert healthy["started_at"] == first["started_at"] <= first["at"] <= healthy["at"]
        assert listener.said("READY=1")
        assert not (cfg.edge.data_dir / "health.json").exists()  # nothing on the flash
