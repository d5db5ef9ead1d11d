"""`xiaodian fleet run` end to end: 50 stores, each with its own certificate, over TLS to the
real broker (the project's config and ACL), two real cloud workers and PostgreSQL."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from devstack.cli import main
from devstack.testkit.pg_server import find_bindir

pytestmark = pytest.mark.e2e


def test_fifty_stores_lose_nothing_and_none_publishes_as_another(tmp_path: Path) -> None:
    if find_bindir() is None:
        pytest.skip("PostgreSQL server binaries (initdb, postgres) not installed")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        # 20 s, a bundle every 10 s (speed 24): two bundles per store, phases spread.
        main(["fleet", "run", "--stores", "50", "--minutes", str(20 / 60), "--speed", "24",
              "--drain-s", "30", "--workdir", str(tmp_path), "--json"])
    r = json.loads(out.getvalue())
    assert r["connected"] == 50, r["errors"]
    # The broker's log names each store's own client id (its certificate's CN).
    assert r["accepted_ids"] == 50
    assert r["foreign_publish"] == "Not authorized"
    assert r["bundles"] == 100
    assert r["readings_published"] == 100 * 4 * 24 and r["events_published"] == 100 * 4
    assert r["readings_stored"] == r["readings_published"]
    assert r["events_stored"] == r["events_published"]
    assert r["lost"] == 0 and r["duplicates"] == 0 and r["unconfirmed"] == 0
    assert r["refused"] == 0 and r["disconnects"] == 0
    # Every bundle's receipt came back: a latency per bundle, none absurd.
    assert 0 < r["p50_s"] <= r["p99_s"] <= r["max_s"] < 30
    assert r["tls_bytes_per_s"] > r["payload_bytes_per_s"] > 0
    assert set(r["cpu"]) == {"broker", "postgresql", "ingest-1", "ingest-2", "generators"}
