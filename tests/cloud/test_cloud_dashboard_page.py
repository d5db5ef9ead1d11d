"""The operator's dashboard in headless Chromium at 1366×800: open alerts per store, in
Chinese first, times in the store's zone, each store linking to its owner page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from haccp_day import STORE, WARM_CRITICAL, fill_day

from cloud_gateway import accounts, stores
from cloud_gateway.db import Database
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
from xiaodian.i18n import translator
from xiaodian.wire.alert_text import describe

pytestmark = pytest.mark.skipif(not have_chromium(), reason="Debian's chromium missing")

# The alert's words as the page must show them: its reason code rendered in Chinese.
MESSAGE = translator("zh_CN").render(describe("warm", WARM_CRITICAL))
DATA = ["ops", "English"]  # a person's name and the language switch


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cloud.sqlite"


@pytest.fixture
def server(db_path: Path) -> Iterator[HttpServer]:
    path = db_path
    with Database.open(path) as db:
        fill_day(db)
        with db.transaction() as conn:
            accounts.add_user(conn, "ops", "operator", [], "ops-password-1234", 0.0)
            stores.set_profile(conn, STORE, 0.0, name="幸福路店")
    with HttpServer(Api(path), "127.0.0.1", 0) as srv:
        yield srv


def test_dashboard_shows_open_alerts_per_store_and_links_to_the_owner_page(
        server: HttpServer, db_path: Path) -> None:
    from playwright.sync_api import expect

    from cloud_gateway.alerts import store as alert_store

    with browser_page(DESKTOP) as page:
        log_in(page, server.url, "ops", "ops-password-1234")
        card = page.locator(f'section.store[data-store="{STORE}"]')
        expect(card.locator("h2 > span").first).to_have_text("幸福路店")  # the profile's name
        box = card.locator(".open-alerts")
        expect(box.locator("h3")).to_have_text("1 条未处理警报")
        alert = box.locator("li.alert")
        expect(alert).to_have_count(1)
        expect(alert).to_have_attribute("data-alert-id", re.compile(r"^fridge-2/warm/"))
        expect(alert.locator(".badge")).to_have_text("严重")
        expect(alert.locator(".msg")).to_have_text(MESSAGE)
        expect(alert).to_contain_text("开始于 2025/6/1 18:00")  # 10:00 UTC in Shanghai
        expect(alert).to_contain_text("未确认")
        expect(card.locator(".fridge")).to_have_count(2)
        reader_checks(page, "dashboard-desktop-zh", DATA)
        # It refreshes itself: an acknowledgement made elsewhere shows up without a reload.
        with Database.open(db_path) as db, db.transaction() as conn:
            alert_store.acknowledge(conn, STORE, alert.get_attribute("data-alert-id") or "",
                                    "li", "moved stock", "test", 1.0)
        expect(page.locator(".open-alerts li.alert")).to_contain_text("已由 li 确认。",
                                                                      timeout=15_000)
        card.locator("a.owner-link").click()
        page.wait_for_url(server.url + f"owner/{STORE}")
        expect(page.locator("article.fridge")).to_have_count(2)


def test_dashboard_in_english(server: HttpServer) -> None:
    from playwright.sync_api import expect

    with browser_page(DESKTOP) as page:
        log_in(page, server.url, "ops", "ops-password-1234", lang="en")
        expect(page.locator("h1")).to_have_text("Stores")
        expect(page.locator(".open-alerts h3")).to_have_text("1 open alert")
        expect(page.locator(".open-alerts li.alert")).to_contain_text("Not acknowledged")
        assert overflow_px(page) == 0
        screenshot(page, "dashboard-desktop-en")
