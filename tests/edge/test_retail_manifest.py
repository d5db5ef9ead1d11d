"""The terminal keeps the delivery manifests the cloud sends (for the counter to receive
against), once each, across a restart."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from devstack.testkit.browser import TERMINAL, browser_page, have_chromium, reader_checks
from devstack.testkit.edge import RunningAgent, edge_config, free_port, seed_terminal
from edge.config import RetailSettings
from edge.retail import ledger
from edge.retail.service import Retail
from edge.store import EdgeStore
from edge.wallclock import WallClock
from xiaodian.mqtt import MqttSettings
from xiaodian.wire.retail import (
    Catalogue,
    CatalogueItem,
    Manifest,
    ManifestLine,
    ManifestLot,
    Serves,
)

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


def test_the_counter_lists_what_is_coming_in_chinese_on_the_terminal(
        tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings]) -> None:
    from playwright.sync_api import expect

    if not have_chromium():
        pytest.skip("/usr/bin/chromium missing")
    port = free_port()
    cfg = edge_config(tmp_path / "edge", mqtt_settings(STORE), kiosk_port=port,
                      publish_interval_s=0.1, readings_interval_s=0.1)
    today = datetime.now(ZoneInfo(cfg.edge.tz)).date()
    with seed_terminal(cfg) as seed:
        seed.downlink(Catalogue(STORE, 1, (CatalogueItem(MILK, "Milk 1L", "piece", 7,
                                                         "chilled"),)))
        seed.downlink(manifest(7, (today - timedelta(days=1)).isoformat()))  # came yesterday
        seed.downlink(manifest(8, today.isoformat()))
        seed.downlink(manifest(9, (today + timedelta(days=1)).isoformat()))
    with RunningAgent(cfg), browser_page(TERMINAL) as page:
        page.goto(f"http://127.0.0.1:{port}/counter")
        items = page.locator("#incoming li[data-manifest]")
        expect(items).to_have_count(2, timeout=20000)
        expect(items.first).to_have_attribute("data-manifest", "8")
        expect(items.first).to_contain_text("今天 鲜牛奶 ×5（其中预订 3）")
        page.locator("#incoming-box").scroll_into_view_if_needed()
        reader_checks(page, "counter-terminal-incoming", ["Milk", "1L"])
