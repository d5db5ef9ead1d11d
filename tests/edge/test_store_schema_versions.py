"""The edge database across releases: PRAGMA user_version says which schema wrote it, is
never lowered, and a release runs on a file a later one changed (a rollback after a
self-update): migrations only add, and the agent names every column it writes."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from fake_fridge import FakeFridge, agent_config, reader_up, settled

from cloud_gateway.ingest import IngestWorker
from devstack.testkit.edge import RunningAgent, query
from devstack.testkit.wait import wait
from edge import update_jobs
from edge.artefact_update import UpdateRequest
from edge.retail import ledger, receiving
from edge.store import EdgeStore, NewEvent, NewReading
from edge.store_schema import SCHEMA_VERSION
from xiaodian.mqtt import MqttSettings

STORE = "store-001"
LATER = SCHEMA_VERSION + 1


def user_version(db: Path) -> int:
    return int(query(db, "PRAGMA user_version", missing_ok=False)[0][0])


def later_release_changes(db: Path) -> None:
    """What a later release's migrations may do: add a defaulted column to every table, add
    a table, raise user_version."""
    con = sqlite3.connect(db)
    try:
        tables = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
        for t in tables:
            con.execute(f"ALTER TABLE {t} ADD COLUMN later_note TEXT DEFAULT 'later'")
        con.execute("CREATE TABLE later_things (id INTEGER PRIMARY KEY, what TEXT)")
        con.execute(f"PRAGMA user_version = {LATER}")
        con.commit()
    finally:
        con.close()


def test_a_new_file_and_an_older_one_are_marked_and_a_newer_mark_is_never_lowered(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "edge.sqlite3"
    EdgeStore(db).close()
    assert user_version(db) == SCHEMA_VERSION
    con = sqlite3.connect(db)
    con.execute("PRAGMA user_version = 0")  # as the releases before versioning left it
    con.commit()
    con.close()
    EdgeStore(db).close()
    assert user_version(db) == SCHEMA_VERSION
    later_release_changes(db)
    with caplog.at_level(logging.WARNING, logger="edge.store"):
        EdgeStore(db).close()
    assert user_version(db) == LATER
    assert any(f"schema {LATER}, newer" in r.message for r in caplog.records)


def test_every_writer_names_its_columns_so_a_later_column_changes_nothing(
        tmp_path: Path) -> None:
    db = tmp_path / "edge.sqlite3"
    store = EdgeStore(db)
    ledger.create(store.db)
    store.db.executescript(receiving.SCHEMA)
    store.close()
    later_release_changes(db)
    store = EdgeStore(db)
    try:
        added = store.add([
            NewReading("fridge-1", 1, 1000, 1.0, True, [(0, "ok", 3.5)], 1),
            NewEvent("fridge-1", "door", 2, 1001, 1.0, True, {"open": True}, 1)])
        assert added.stored == 2
        store.set_device_status("fridge-1", 1.0, {"link": "up"})
        request = UpdateRequest("c1", "agent", "agent", "https://x/y", "0" * 64, 10, "1.5.0")
        update_jobs.save(store.db, request, "updating", 20)
        assert update_jobs.load(store.db) == [(request, "updating", 20)]
        ledger.set_meta(store.db, "k", "v")
        ledger.save_handover(store.db, 7, 1, "open", "{}", 1.0)
        receiving.save_draft(store.db, 3, {}, 1.0)
        assert ledger.meta(store.db, "k") == "v"
        counts = store.counts()["fridge-1"]
        assert (counts["readings_pending"], counts["events_pending"]) == (1, 1)
        assert store.db.execute("SELECT later_note FROM readings").fetchone() == ("later",)
    finally:
        store.close()


def test_an_agent_runs_on_a_file_a_later_release_changed_and_its_readings_reach_the_cloud(
        cloud: IngestWorker, tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings],
        fridge: FakeFridge, caplog: pytest.LogCaptureFixture) -> None:
    cfg = agent_config(tmp_path, mqtt_settings(STORE), tmp_path / "fridge-1")
    with RunningAgent(cfg) as agent:
        wait(lambda: reader_up(agent), 10, "serial port opened")
        fridge.hello()
        for i in range(5):
            fridge.temp(i * 10_000, 3.0)
        wait(lambda: settled(agent, 5), 10, "the first five confirmed by the cloud")
    later_release_changes(cfg.edge.db_path)  # ... and then rolled back to this release
    with caplog.at_level(logging.WARNING, logger="edge.store"), RunningAgent(cfg) as agent:
        wait(lambda: reader_up(agent), 10, "serial port reopened")
        fridge.hello()
        for i in range(5, 10):
            fridge.temp(i * 10_000, 4.0)
        wait(lambda: settled(agent, 10), 10, "five more confirmed by the cloud")
    assert any(f"schema {LATER}, newer" in r.message for r in caplog.records)
    assert user_version(cfg.edge.db_path) == LATER
    at_cloud = query(tmp_path / "cloud.sqlite3",
                     "SELECT dev_ms FROM readings WHERE device='fridge-1' ORDER BY dev_ms",
                     missing_ok=False)
    assert [r[0] for r in at_cloud] == list(range(0, 100_000, 10_000))  # each once
