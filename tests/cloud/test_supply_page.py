"""The operator's order-cycle page in headless Chromium at 1366×800: zones with their cycle
and cutoff countdown, the plan per store with the why of each line, the pick list; Chinese
first; operators only."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud_gateway import accounts, retail
from cloud_gateway.db import Database
from cloud_gateway.supply import cutoff, settings, waves
from cloud_gateway.web import Api, HttpServer
from devstack.testkit.browser import (
    DESKTOP,
    browser_page,
    have_chromium,
    log_in,
    overflow_px,
    reader_checks,
    screenshot,
)
from devstack.testkit.http_client import get
from devstack.testkit.supply_world import DURIAN, EGGS, MILK, RICE, S1, S2, ZONE, seed
from xiaodian.wire import retail as contract

pytestmark = pytest.mark.skipif(not have_chromium(), reason="Debian's chromium missing")

S3 = "store-003"
DATA = ["ops", "English", ZONE, "south", S1, S2, S3]  # people, zones, stores: data


def place(conn: Any, store: str, customer: str, now: float, *lines: tuple[str, int]) -> int:
    req = retail.OrderRequest(tuple(contract.OrderLine(i, q) for i, q in lines), "pickup",
                              customer, 3600)
    order, _ = waves.place_preorder(conn, store, req, now, "resident")
    return order.id


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "cloud.sqlite"
    now = time.time()
    with Database.open(path) as db, db.transaction() as conn:
        seed(conn, now)
        seed(conn, now, stores=(S3,))
        settings.set_store(conn, S3, now, zone="south")
        accounts.add_user(conn, "ops", "operator", [], "ops-password-1234", 0.0)
        accounts.add_user(conn, "owner", "owner", [S1], "owner-password-1234", 0.0)
        a = place(conn, S1, "王芳", now, (MILK, 2), (RICE, 1))
        b = place(conn, S1, "李雷", now, (MILK, 1))
        place(conn, S2, "赵敏", now, (EGGS, 6))
        place(conn, S3, "孙丽", now, (MILK, 3), (DURIAN, 1))  # durian: under its minimum
        wave = settings.get_zone(conn, ZONE).wave_of(now)
        cutoff.cutoff(conn, ZONE, wave, now, "operator")  # north closed early; south open
    return {"path": path, "wave": wave, "orders": (a, b)}


@pytest.fixture
def server(world: dict[str, Any]) -> Iterator[HttpServer]:
    with HttpServer(Api(world["path"]), "127.0.0.1", 0) as srv:
        yield srv


def test_the_cycle_page_shows_zones_plans_with_their_why_and_bags(
        server: HttpServer, world: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    a, b = world["orders"]
    with browser_page(DESKTOP) as page:
        log_in(page, server.url, "ops", "ops-password-1234", "/supply")
        expect(page.locator("h1")).to_have_text("订货周期")
        north = page.locator(f'a.zone[data-zone="{ZONE}"]')
        expect(north).to_have_attribute("aria-current", "true")
        expect(north.locator(".badge")).to_have_text("已计划")
        # Closed early: no countdown for it; the zone still open counts down.
        expect(north.locator(".countdown")).to_have_count(0)
        expect(north.locator(".closed-early")).to_contain_text("截单时间前已截单")
        south = page.locator('a.zone[data-zone="south"] .countdown')
        expect(south).to_have_text(re.compile(r"^\d\d:[0-5]\d:[0-5]\d$"))
        shown = south.text_content()
        expect(south).not_to_have_text(shown or "", timeout=3000)  # it ticks
        expect(page.locator(".steps li.now")).to_have_text("已计划")
        s1 = page.locator(f'section.store[data-store="{S1}"]')
        milk = s1.locator(f'tr[data-item="{MILK}"]')
        expect(milk.locator(".why")).to_contain_text("预订 3")  # 2 + 1 pre-ordered
        expect(s1.locator(f'.bag[data-bag="{a}"]')).to_contain_text("王芳")
        expect(s1.locator(f'.bag[data-bag="{b}"]')).to_contain_text("鲜牛奶 × 1")
        expect(s1).to_contain_text("3 个取货名额中已有预订 2 单")
        expect(s1.locator(".badge.closed")).to_have_count(0)
        reader_checks(page, "supply-desktop-zh", DATA)

        # The pick list, printable.
        page.click("text=可打印的配送单和拣货单")
        expect(page.locator(f'section[data-store="{S1}"] .bag[data-bag="{a}"]')).to_contain_text(
            "王芳")
        reader_checks(page, "supply-manifest-desktop-zh", DATA)

        # A zone still taking orders: what the engine would propose now.
        page.goto(server.url + "supply?zone=south")
        expect(page.locator(".steps li.now")).to_have_text("接受预订中")
        expect(page.locator(f'section.store[data-store="{S3}"] tr[data-item="{MILK}"] .why'
                            )).to_contain_text("预订 3")
        expect(page.locator("text=还没有截单")).to_have_count(1)
        expect(page.locator("ul.coming")).to_contain_text("榴莲：预订总量未达到预售最低量 3")
        reader_checks(page, "supply-open-zone-zh", DATA)

        page.goto(server.url + f"supply?zone={ZONE}&lang=en")
        expect(page.locator("h1")).to_have_text("Order cycles")
        expect(page.locator(f'section.store[data-store="{S1}"] tr[data-item="{MILK}"] .why'
                            )).to_contain_text("pre-orders 3")
        assert overflow_px(page) == 0
        screenshot(page, "supply-desktop-en")


def test_only_operators_see_it_and_the_csv_is_the_pick_list(
        server: HttpServer, world: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    with browser_page(DESKTOP) as page:
        log_in(page, server.url, "owner", "owner-password-1234")
        page.goto(server.url + "supply")
        expect(page.locator("body")).to_contain_text("您的账号无权查看此页面")
    anonymous = get(server.url + f"supply/{ZONE}/{world['wave']}/manifest?format=pick-csv")
    assert anonymous.status in (303, 401)
    with browser_page(DESKTOP) as page:
        log_in(page, server.url, "ops", "ops-password-1234", "/supply")
        got = page.request.get(server.url +
                               f"supply/{ZONE}/{world['wave']}/manifest?format=pick-csv")
        assert got.status == 200
        assert got.text().splitlines()[0] == "route,store,bag,customer,item,name,qty,batch," \
                                             "expiry"
        assert f"{ZONE},{S1},{world['orders'][0]},王芳,{MILK},鲜牛奶,2," in got.text()
        bad = page.request.get(server.url + f"supply/{ZONE}/not-a-day/manifest")
        assert bad.status == 400
