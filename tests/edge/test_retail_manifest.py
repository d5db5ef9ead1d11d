"""The terminal keeps the delivery manifests the cloud sends (for the counter to receive
against), once each, across a restart."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from edge.config import RetailSettings
from edge.retail import ledger
from edge.retail.service import Retail
from edge.store import EdgeStore
from edge.wallclock import WallClock
from xiaodian.wire.retail import Manifest, ManifestLine, ManifestLot, Serves

STORE = "store-001"
MILK = "06901234567892"
T0 = 1_800_000_000.0


def service(path: Path) -> tuple[EdgeStore, Retail]:
    store = EdgeStore(path)
    return store, Retail(store, STORE, WallClock(now=lambda: T0, synced=lambda: True), None,
                         RetailSettings(2), {}, today=lambda wall: date(2026, 12, 8))


def manifest(mid: int, delivery: str) -> Manifest:
    return Manifest(mid, STORE, "north", "2026-12-07", delivery, (ManifestLine(
        MILK, "鲜牛奶", 5, (ManifestLot("D20261208", "2026-12-12", 5),),
        (Serves(41, 2), Serves(42, 1, 1))),))


def test_a_manifest_is_kept_once_and_survives_a_restart(tmp_path: Path) -> None:
    store, retail = service(tmp_path / "edge.sqlite3")
    assert "stored" in retail.downlink(manifest(7, "2026-12-08"))
    assert "redelivery" in retail.downlink(manifest(7, "2026-12-08"))
    assert "stored" in retail.downlink(manifest(8, "2026-12-09"))
    store.close()
    store, _ = service(tmp_path / "edge.sqlite3")
    kept = ledger.manifests(store.db)
    assert kept == [manifest(7, "2026-12-08"), manifest(8, "2026-12-09")]
    assert ledger.manifests(store.db, since="2026-12-09") == [manifest(8, "2026-12-09")]
    # No stock moves and no event goes up for a manifest: receiving is the counter's.
    assert store.db.execute("SELECT COUNT(*) FROM stock_movements").fetchone()[0] == 0
    store.close()
