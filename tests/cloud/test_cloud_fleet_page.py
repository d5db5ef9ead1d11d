"""The technician's fleet view and device page in real headless Chromium against a real
server and database (#16 point 2): Chinese first, on a desktop (1366×800) and a phone,
sortable and filterable, trends drawn from the hourly vitals, the event log in words.
Set XIAODIAN_SCREENSHOTS=/dir to keep the pictures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fleet_world import DATA, NOW, PASSWORD, TECH, fill_fleet
from haccp_day import STORE

from cloud_gateway.db import Database
from cloud_gateway.web import Api, HttpServer
from devstack.testkit.browser import (
    DESKTOP,
    PHONE,
    browser_page,
    have_chromium,
    log_in,
    reader_checks,
    visible_text,
)
from devstack.testkit.http_client import get

pytestmark = pytest.mark.skipif(not have_chromium(), reason="Debian's chromium missing")

@pytest.fixture
def server(tmp_path: Path) -> Iterator[HttpServer]:
    path = tmp_path / "cloud.sqlite"
    with Database.open(path) as db:
        fill_fleet(db)
    with HttpServer(Api(path, now=lambda: NOW), "127.0.0.1", 0) as srv:
        yield srv


def _rows(page: Any) -> list[str]:
    return [r.get_attribute("data-device") for r in page.locator("#fleet tbody tr:visible").all()]


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_fleet_view_sorts_and_filters_in_chinese(server: HttpServer,
                                                      viewport: dict[str, int]) -> None:
    from playwright.sync_api import expect

    tag = "desktop" if viewport is DESKTOP else "phone"
    with browser_page(viewport) as page:
        log_in(page, server.url, TECH, PASSWORD, "/tech")
        expect(page.locator("h1")).to_have_text("冰箱")
        reader_checks(page, f"fleet-{tag}", DATA)
        # Trouble first: fridge-2 has the critical alert, fridge-9 is offline.
        assert _rows(page) == ["fridge-2", "fridge-9", "fridge-1"]
        row9 = page.locator("tr[data-device=fridge-9]")
        expect(row9.locator(".badge")).to_have_text("离线")
        expect(page.locator("tr[data-device=fridge-1] .badge")).to_have_text("在线")
        expect(page.locator("tr[data-device=fridge-2] td.n").first).to_have_text("350.0")
        page.select_option("#show", "offline")
        assert _rows(page) == ["fridge-9"]
        expect(page.locator("#count")).to_have_text("显示 1 / 3 台冰箱")
        page.select_option("#show", "all")
        page.fill("#q", "和平")
        assert sorted(_rows(page)) == ["fridge-1", "fridge-2"]
        page.fill("#q", "")
        page.select_option("#sort", "link")
        assert _rows(page) == ["fridge-2", "fridge-1", "fridge-9"]
        if viewport is DESKTOP:
            page.click("th button[data-key=device]")
            assert _rows(page) == ["fridge-1", "fridge-2", "fridge-9"]
            expect(page.locator("#sort")).to_have_value("device")
            page.click("th button[data-key=device]")
            assert _rows(page) == ["fridge-9", "fridge-2", "fridge-1"]
        reader_checks(page, f"fleet-{tag}-sorted", DATA)
        # The rollout, halted by itself after the canary rolled the image back.
        ro = page.locator("#updates .rollout")
        expect(page.locator("#updates h2")).to_have_text("更新")
        expect(ro.locator(".badge")).to_have_text("已自动停止")
        expect(ro.locator(".why")).to_have_text("第一家店失败，其他店都没有收到。")
        expect(ro.locator(".counts")).to_have_text(
            "0 家确认，1 家失败，共 2 家店；第 1 / 2 阶段")  # stages (1, 2)
        expect(ro.locator("tr[data-store=store-001] td").nth(3)).to_have_text("已回滚到旧版本")
        expect(ro.locator("tr[data-store=store-002]")).to_have_count(0)  # never sent
        ro.scroll_into_view_if_needed()
        reader_checks(page, f"fleet-{tag}-updates", DATA)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_device_page_draws_7_and_28_day_trends(server: HttpServer,
                                                   viewport: dict[str, int]) -> None:
    from playwright.sync_api import expect

    tag = "desktop" if viewport is DESKTOP else "phone"
    with browser_page(viewport) as page:
        log_in(page, server.url, TECH, PASSWORD, f"/tech/{STORE}/fridge-1")
        trends = page.locator("#trends")
        expect(trends).to_have_attribute("data-points", str(7 * 24))
        expect(page.locator("#trends canvas")).to_have_count(3)
        blue = page.locator("#trends .chart").first.evaluate(
            """b => { const c = b.querySelector('canvas');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4)
              if (d[i] < 60 && d[i + 1] > 70 && d[i + 1] < 120 && d[i + 2] > 180) n++;
            return n; }""")
        assert blue > 200  # the duty-cycle line is drawn, not only the axes
        reader_checks(page, f"device-{tag}-7d", DATA)
        page.click(".period button[data-days='28']")
        expect(trends).to_have_attribute("data-points", str(28 * 24))
        expect(page.locator("#trend-summary")).to_contain_text("已上报 672 小时")
        # The event log in words, newest first, in the store's zone.
        log = page.locator(".log tbody tr")
        assert log.count() > 10
        text = visible_text(page)
        assert "控制器已连接：固件 0.1.0" in text and "看门狗" in text
        assert "压缩机启动（温控）" in text and "开门" in text
        reader_checks(page, f"device-{tag}-28d", DATA)


def test_maintenance_alerts_show_on_the_fleet_and_the_device_page(server: HttpServer) -> None:
    """fridge-1's duty cycle climbs through its 29 days of vitals (0.35 to 0.58 at the same
    door traffic): the cloud's maintenance rule raised `duty_rising` as they arrived."""
    from playwright.sync_api import expect

    with browser_page(DESKTOP) as page:
        log_in(page, server.url, TECH, PASSWORD, "/tech")
        expect(page.locator("tr[data-device=fridge-1] td.maint")).to_have_text("压缩机负荷上升")
        expect(page.locator("tr[data-device=fridge-2] td").last).to_have_text("–")
        page.select_option("#show", "maint")
        assert _rows(page) == ["fridge-1"]
        reader_checks(page, "fleet-desktop-maintenance", DATA)
        page.goto(server.url + f"tech/{STORE}/fridge-1")
        box = page.locator("#maintenance")
        expect(box.locator("li b")).to_have_text("压缩机负荷上升")
        expect(box).to_contain_text("在开门次数相近的情况下比 28 天基线")
        expect(box).to_contain_text("清洁冷凝器")
        reader_checks(page, "device-desktop-maintenance", DATA)
        page.goto(server.url + f"tech/{STORE}/fridge-2")
        expect(page.locator("#maintenance")).to_contain_text("无需维护。")


def test_the_trends_api_and_the_pages_need_a_login(server: HttpServer) -> None:
    r = get(server.url + f"api/stores/{STORE}/fridges/fridge-1/vitals?days=7")
    assert r.status == 401
    r = get(server.url + "tech")
    assert r.status == 303 and r.headers["Location"] == "/login?next=/tech"
