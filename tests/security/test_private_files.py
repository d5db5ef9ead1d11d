"""The databases hold customer data: created 0600 (their WAL and -shm too), and an older
one open to group or others is closed on the next start."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_gateway.db import Database
from edge.store import EdgeStore, NewEvent


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most systems start services with: files 0644 unless the code says so."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _modes(db: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in db.parent.iterdir()
            if p.name.startswith(db.name) and not p.name.endswith(".boot")}


def test_the_edge_database_and_its_wal_are_created_0600(tmp_path: Path) -> None:
    db = tmp_path / "edge.sqlite3"
    store = EdgeStore(db)
    store.add([NewEvent("ledger", "order", None, None, 1.7e9, True, {"customer": "Wang L."})])
    modes = _modes(db)
    assert set(modes) == {"edge.sqlite3", "edge.sqlite3-wal", "edge.sqlite3-shm"}
    assert set(modes.values()) == {0o600}, modes
    store.close()


def test_the_cloud_database_and_its_wal_are_created_0600(tmp_path: Path) -> None:
    db = tmp_path / "cloud.sqlite3"
    with Database.open(db) as cloud:
        cloud.conn.execute("SELECT count(*) FROM orders").fetchone()
        modes = _modes(db)
        assert set(modes) == {"cloud.sqlite3", "cloud.sqlite3-wal", "cloud.sqlite3-shm"}
        assert set(modes.values()) == {0o600}, modes


def test_an_older_database_open_to_others_is_closed_at_start(tmp_path: Path) -> None:
    db = tmp_path / "edge.sqlite3"
    EdgeStore(db).close()
    db.chmod(0o644)  # as an earlier version left it
    store = EdgeStore(db)
    assert set(_modes(db).values()) == {0o600}
    store.close()
    cloud = tmp_path / "cloud.sqlite3"
    Database.open(cloud).close()
    cloud.chmod(0o664)
    Database.open(cloud).close()
    assert stat.S_IMODE(cloud.stat().st_mode) == 0o600
