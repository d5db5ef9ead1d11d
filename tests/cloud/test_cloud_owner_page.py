"""The owner's pages in real headless Chromium (Playwright) against a real server and
database, as an owner reads them: on a phone (390×844 and 360 wide), in Chinese first.

Each page is checked for what a reader trips on: English words left on a zh-CN page
(`english_words`, apart from data: a person's name, the language switch's "English", and the
alert's own text until alert texts are translatable), horizontal scrolling (`overflow_px`),
times in the store's zone (the browser runs in UTC on purpose), and a chart really drawn.
Set XIAODIAN_SCREENSHOTS=/dir to keep the pictures.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from haccp_day import STORE, T0, WARM_CRITICAL, fill_day

from cloud_gateway.alerts.notifier import ack_link
from cloud_gateway.db import Database
from cloud_gateway.web import Api, HttpServer
from devstack.testkit.browser import (
    PHONE,
    SMALL_PHONE,
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

LINK_SECRET = b"s" * 40
ALERT_ID = f"fridge-2/warm/{round((T0 + 36_000) * 1000)}"
# The alert's words as the page must show them: its reason code rendered in Chinese.
MESSAGE = translator("zh_CN").render(describe("warm", WARM_CRITICAL))
DATA = ["li", "English"]  # a person's name and the language switch
OWNER, PASSWORD = "li", "li-password-1234"  # the store's owner
NBSP = "\u00a0"
ACTION = "货物移到 fridge-1，已联系维修师傅"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[HttpServer]:
    path = tmp_path / "cloud.sqlite"
    with Database.open(path) as db:
        fill_day(db)
        _owner(db)
    with HttpServer(Api(path, alert_link_secret=LINK_SECRET), "127.0.0.1", 0) as srv:
        yield srv


def _owner(db: Database) -> None:
    """The page's reads need a login: Li owns the store."""
    from cloud_gateway import accounts

    with db.transaction() as conn:
        accounts.add_user(conn, OWNER, "owner", [STORE], PASSWORD, 0.0)


def _charts_drawn(page: Any, tz: str) -> None:
    """Every chart drawn by uPlot: lines on the canvas, time labels in the store's zone."""
    from playwright.sync_api import expect

    boxes = page.locator(".chart")
    for i in range(boxes.count()):
        box = boxes.nth(i)
        expect(box).to_have_attribute("data-drawn", re.compile(r"^[1-9][0-9]*$"))
        expect(box.locator("canvas")).to_have_count(1)
        # Product line pixels (#12805c) on the canvas: the data is drawn, not just axes.
        green = box.evaluate("""b => { const c = b.querySelector('canvas');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4)
              if (d[i] < 60 && d[i + 1] > 100 && d[i + 1] < 160 && d[i + 2] > 60
                  && d[i + 2] < 120) n++;
            return n; }""")
        assert green > 200
        splits = [float(s) for s in (box.get_attribute("data-x-splits") or "").split(",")]
        labels = (box.get_attribute("data-x-ticks") or "").split(",")
        assert len(splits) >= 3 and len(labels) == len(splits)
        zone = ZoneInfo(tz)
        assert labels == [datetime.fromtimestamp(s, zone).strftime("%H:%M") for s in splits]
        assert all(datetime.fromtimestamp(s, zone).minute == 0 for s in splits)  # local hours


def test_owner_page_on_a_phone_in_chinese(server: HttpServer) -> None:
    from playwright.sync_api import expect

    with browser_page(PHONE) as page:
        page.goto(server.url + "login?next=/owner")
        reader_checks(page, "owner-login-zh", DATA)
        expect(page.locator("h2")).to_have_text("登录")
        page.fill("input[name=user]", "li")
        page.fill("input[name=password]", "wrong password")
        page.click("button[type=submit]")
        expect(page.locator(".error")).to_have_text("用户名或密码错误。")
        log_in(page, server.url, OWNER, PASSWORD, "/owner")

        cards = page.locator("article.fridge")
        expect(cards).to_have_count(2)
        f1, f2 = page.locator('[data-fridge="fridge-1"]'), page.locator('[data-fridge="fridge-2"]')
        expect(f1.locator(".badge")).to_have_text("正常")
        expect(f2.locator(".badge")).to_have_text("严重")
        expect(f2).to_have_class("card fridge critical")
        # Newest readings: fridge-2 back at 3.0 °C; fridge-1 3 + 0.5·sin(1439/60) = 2.54,
        # with a no-break space, each on one line.
        assert f2.locator(".temp.product b").text_content() == f"3.0{NBSP}°C"
        assert f1.locator(".temp.product b").text_content() == f"2.5{NBSP}°C"
        rects = page.locator(".temp b").evaluate_all(
            "els => els.map(e => e.getClientRects().length)")
        assert rects == [1, 1, 1, 1]
        # In the store's zone: the last reading 23:59 UTC is 07:59 the next day in Shanghai.
        expect(f2.locator(".age")).to_have_text("测量于 2025/6/2 07:59")
        expect(f1.locator(".alerts")).to_have_count(0)  # its door alert was cleared
        alert = f2.locator("li.alert")
        expect(alert).to_have_count(1)
        expect(alert.locator(".msg")).to_have_text(MESSAGE)
        expect(alert.locator(".since")).to_have_text("开始于 2025/6/1 18:00")
        expect(page.locator("input")).to_have_count(0)  # no name or token fields: a login
        _charts_drawn(page, "Asia/Shanghai")
        expect(f2.locator(".chart .caption")).to_have_text(
            "最近 24 小时 · 时间为 Asia/Shanghai")
        reader_checks(page, "owner-phone-zh", DATA)

        # The HACCP record opens in the store's zone: its newest day there is 2 June.
        f2.locator("a.haccp").click()
        expect(page.locator("h1")).to_have_text("HACCP 记录 · store-001 · 2025-06-02")
        expect(page.locator("svg.chart text.zone")).to_have_text("Asia/Shanghai")
        reader_checks(page, "haccp-phone-zh", DATA)
        page.goto(server.url + f"haccp/{STORE}/fridge-2?day=2025-06-01")
        rows = page.locator("table.excursions tr")
        expect(rows).to_have_count(3)  # header + 5 °C + 8 °C
        expect(rows.nth(1).locator("td").nth(1)).to_have_text("18:00")  # 10:00 UTC
        expect(rows.nth(2).locator("td").nth(1)).to_have_text("18:30")
        reader_checks(page, "haccp-day-phone-zh", DATA)


def test_owner_page_fits_a_small_phone(server: HttpServer) -> None:
    with browser_page(SMALL_PHONE) as page:
        log_in(page, server.url, OWNER, PASSWORD, f"/owner/{STORE}")
        page.locator(".chart[data-drawn]").first.wait_for()
        reader_checks(page, "owner-small-phone-zh", DATA)
        page.goto(server.url + f"haccp/{STORE}?day=2025-06-01")
        reader_checks(page, "haccp-small-phone-zh", DATA)


def test_a_critical_alert_needs_a_corrective_action_then_is_acknowledged(
        server: HttpServer) -> None:
    from playwright.sync_api import expect

    with browser_page(PHONE) as page:
        log_in(page, server.url, OWNER, PASSWORD, f"/owner/{STORE}")
        posts: list[tuple[str, str | None, str | None]] = []
        page.on("request", lambda r: posts.append(
            (r.url, r.headers.get("content-type"), r.post_data)) if r.method == "POST" else None)
        alert = page.locator('[data-fridge="fridge-2"] li.alert')
        expect(alert.locator("label")).to_have_text("纠正措施（必填）")
        alert.locator("button.ack").click()
        expect(alert.locator(".ackres")).to_have_text(
            "严重警报必须填写纠正措施：请写明您做了什么。")
        assert posts == []  # nothing sent without one
        # The domain's own refusal is shown (a corrective action longer than it keeps).
        alert.locator("textarea").evaluate("t => { t.value = 'x'.repeat(2001); }")
        alert.locator("button.ack").click()
        expect(alert.locator(".ackres")).to_contain_text("corrective_action")
        expect(alert.locator("button.ack")).to_be_enabled()
        alert.locator("textarea").fill(ACTION)
        alert.locator("button.ack").click()
        expect(alert.locator(".ackres")).to_have_text("已由 li 确认。")
        # The wire: the page's own route, JSON, only the action (the session says who).
        url, ctype, body = posts[-1]
        assert url == server.url + f"owner/{STORE}/ack/{ALERT_ID}"
        assert ctype == "application/json"
        assert json.loads(body or "null") == {"corrective_action": ACTION}
        page.reload()
        expect(page.locator('[data-fridge="fridge-2"] li.alert .ackres')).to_have_text(
            f"已由 li 确认：{ACTION}")
        expect(page.locator('[data-fridge="fridge-2"] button.ack')).to_have_count(0)
        reader_checks(page, "owner-acked-zh", DATA)


def test_english_on_request_remembered_in_a_cookie(server: HttpServer) -> None:
    from playwright.sync_api import expect

    with browser_page(PHONE) as page:
        page.goto(server.url + "login?next=/owner&lang=en")
        expect(page.locator("button[type=submit]")).to_have_text("Log in")
        # No ?lang now: the login page's cookie says.
        log_in(page, server.url, OWNER, PASSWORD, "/owner")
        expect(page.locator("h1")).to_have_text("My fridges")
        assert page.locator("html").get_attribute("lang") == "en"
        expect(page.locator('[data-fridge="fridge-2"] .badge')).to_have_text("Critical")
        expect(page.locator('[data-fridge="fridge-2"] .age')).to_have_text(
            "Measured 6/2/25, 7:59\u202fAM")
        _charts_drawn(page, "Asia/Shanghai")
        assert overflow_px(page) == 0
        screenshot(page, "owner-phone-en")
        cookies = {c["name"]: c["value"] for c in page.context.cookies()}
        assert cookies["lang"] == "en"
        page.goto(server.url + f"haccp/{STORE}/fridge-2")  # no ?lang: the cookie says
        expect(page.locator("h1")).to_have_text("HACCP record · store-001 · 2025-06-02")
        page.locator(".langs a[lang=zh-CN]").click()
        expect(page.locator("h1")).to_have_text("HACCP 记录 · store-001 · 2025-06-02")


def test_the_notification_links_form_on_a_phone(server: HttpServer) -> None:
    from playwright.sync_api import expect

    link = urlsplit(ack_link(server.url, LINK_SECRET, f"{STORE}/{ALERT_ID}", "wang"))
    with browser_page(PHONE) as page:
        page.goto(server.url.rstrip("/") + f"{link.path}?{link.query}")
        expect(page.locator("h1")).to_have_text("冰箱报警")
        expect(page.locator(".since")).to_have_text("开始于 2025/6/1 18:00 (Asia/Shanghai)")
        expect(page.locator("label[for=action]")).to_have_text("纠正措施（必填）")
        reader_checks(page, "ack-form-phone-zh", [*DATA, "wang"])
        page.fill("#by", "王")
        page.fill("#action", "门已关好，食品已检查")
        page.click("button[type=submit]")
        expect(page.locator("main .message")).to_have_text("已确认，谢谢。")
        reader_checks(page, "ack-done-phone-zh", DATA)
        page.goto(server.url.rstrip("/") + f"{link.path}?{link.query}&lang=en")
        expect(page.locator("main .message")).to_have_text(
            "This link has been used already: each link acknowledges once.")
