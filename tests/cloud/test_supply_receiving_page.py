"""The order-cycle page of a received wave in headless Chromium at the desktop size: per
store who signed the delivery off, the lines that differed and the refunds they caused;
Chinese first."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from receiving_world import SHOP_MILK_FEN, WAVE, dispatched, receipt, send

from cloud_gateway import accounts, shop
from cloud_gateway.db import Database
from cloud_gateway.web import Api, HttpServer
from devstack.testkit.browser import DESKTOP, browser_page, have_chromium, log_in, reader_checks
from devstack.testkit.supply_world import EGGS, MILK, S1, S2, ZONE, seed
from xiaodian.wire import retail as contract

pytestmark = pytest.mark.skipif(not have_chromium(), reason="Debian's chromium missing")
DATA = ["ops", "English", ZONE, "south", S1, S2, "clerk-li"]


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "cloud.sqlite"
    with Database.open(path) as db:
        with db.transaction() as conn:
            seed(conn, 1796600000.0)
            shop.set_price(conn, S1, MILK, SHOP_MILK_FEN, 1796600000.0)
            accounts.add_user(conn, "ops", "operator", [], "ops-password-1234", 0.0)
        w = dispatched(db)
        m1 = w["m"][S1]
        milk = next(ln for ln in m1.lines if ln.item == MILK)
        shelf = milk.qty - sum(s.qty for s in milk.serves)
        r = receipt(m1, {MILK: [("short", 1), ("damaged", shelf + 1)]})
        r["differences"][1]["note"] = "外箱压破"
        contract.parse_receipt(r)
        send(db, S1, 1, r)
        send(db, S2, 1, receipt(w["m"][S2], {EGGS: [("over", 1)]}))
    return {"path": path, **w}


@pytest.fixture
def server(world: dict[str, Any]) -> Iterator[HttpServer]:
    with HttpServer(Api(world["path"]), "127.0.0.1", 0) as srv:
        yield srv


def test_a_received_wave_shows_its_differences_and_refunds(
        server: HttpServer, world: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    with browser_page(DESKTOP) as page:
        log_in(page, server.url, "ops", "ops-password-1234", "/supply")
        page.goto(server.url + f"supply?zone={ZONE}&wave={WAVE.isoformat()}")
        expect(page.locator(".steps li.now")).to_have_text("已送达")
        s1 = page.locator(f'section.store[data-store="{S1}"] .receipt')
        expect(s1.locator("h4").first).to_contain_text("clerk-li")
        row = s1.locator(f'tr[data-item="{MILK}"]')
        expect(row).to_contain_text("短缺 1")
        expect(row).to_contain_text("破损")
        expect(row).to_contain_text("外箱压破")
        for o in ("b", "c"):
            expect(s1.locator(f'.refunds li[data-order="{world[o]}"]')).to_contain_text(
                "¥12.90")
        expect(s1.locator(f'.refunds li[data-order="{world["a"]}"]')).to_have_count(0)
        s2 = page.locator(f'section.store[data-store="{S2}"] .receipt')
        expect(s2.locator(f'tr[data-item="{EGGS}"]')).to_contain_text("多到 1")
        expect(s2.locator(".refunds")).to_have_count(0)
        # A delivered wave's stores are not "full": that matters only while it is open.
        expect(page.locator("section.store .badge.closed")).to_have_count(0)
        reader_checks(page, "supply-received-desktop-zh", DATA)
        page.goto(server.url + f"supply?zone={ZONE}&wave={WAVE.isoformat()}&lang=en")
        expect(page.locator(f'section.store[data-store="{S1}"] .receipt')).to_contain_text(
            "Refunds for what did not arrive")
