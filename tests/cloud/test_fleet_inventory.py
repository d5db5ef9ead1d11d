"""The inventory (#19 point 4): the agent's version and configuration hash travel in its
state message, the cloud keeps the latest per store, and the technician's fleet page shows
them beside each fridge's firmware, Chinese first, on a desktop and a phone (real Chromium,
a real server and database)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet_world import DATA, NOW, PASSWORD, STORE2, TECH, fill_fleet
from haccp_day import STORE

from cloud_gateway.db import Database
from cloud_gateway.ingest_core import ingest
from cloud_gateway.web import Api, HttpServer
from devstack.testkit.browser import (
    DESKTOP,
    PHONE,
    browser_page,
    have_chromium,
    log_in,
    reader_checks,
)
from xiaodian.wire.payloads import state_payload

pytestmark = pytest.mark.skipif(not have_chromium(), reason="Debian's chromium missing")

HASH = "3f0c" + "a1" * 30


@pytest.fixture
def server(tmp_path: Path) -> Iterator[HttpServer]:
    path = tmp_path / "cloud.sqlite"
    with Database.open(path) as db:
        fill_fleet(db)  # store-002's terminal: an older agent, no configuration hash
        out = ingest(db, f"xd/v1/{STORE}/state", state_payload(
            STORE, True, 2, NOW - 60, "1.1.0", ["fridge-1", "fridge-2"], HASH), "w", NOW - 60)
        assert out.action == "state", out.reason
        stores = {s["store"]: s for s in db.stores()}
        assert stores[STORE]["config_hash"] == HASH
        assert stores[STORE2]["config_hash"] is None
    with HttpServer(Api(path, now=lambda: NOW), "127.0.0.1", 0) as srv:
        yield srv


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_fleet_shows_each_terminals_version_and_configuration(
        server: HttpServer, viewport: dict[str, int]) -> None:
    from playwright.sync_api import expect

    tag = "desktop" if viewport is DESKTOP else "phone"
    with browser_page(viewport) as page:
        log_in(page, server.url, TECH, PASSWORD, "/tech")
        reader_checks(page, f"fleet-inventory-{tag}", DATA)
        if viewport is DESKTOP:
            expect(page.locator("th").nth(5)).to_have_text("终端软件")
            expect(page.locator("th").nth(6)).to_have_text("配置")
        row1 = page.locator("tr[data-device=fridge-1]")
        expect(row1.locator("td[data-label=终端软件]")).to_have_text("1.1.0")
        expect(row1.locator("td[data-label=配置] code")).to_have_text(HASH[:8])
        assert row1.locator("td[data-label=配置] code").get_attribute("title") == HASH
        row9 = page.locator("tr[data-device=fridge-9]")
        expect(row9.locator("td[data-label=终端软件]")).to_have_text("0.1")
        expect(row9.locator("td[data-label=配置]")).to_have_text("–")
        page.select_option("#sort", "agent")
        order = [r.get_attribute("data-agent")
                 for r in page.locator("#fleet tbody tr:visible").all()]
        assert order == sorted(order, key=lambda v: [int(x) for x in v.split(".")])
