"""The counter as a clerk meets it on the terminal's 800×480 screen, in Chinese, with the
browser in UTC (the store is in Asia/Shanghai): a real agent with a fridge on a pty (a hot
alert), headless Chromium. Each point of issue #13's counter: what needs action is above
the fold, an unweighed smart-fridge pickup is refused and then confirmed with a recorded
reason, a weighed scan shows weight and price, a sale below zero asks once and records why,
nothing is English but data, nothing is wider than the screen."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fake_fridge import FakeFridge, reader_up
from retail_env import BREAD, MILK, STORE, seed_milk_received

from devstack.testkit.browser import (
    TERMINAL,
    browser_page,
    english_words,
    have_chromium,
    overflow_px,
    reader_checks,
    screenshot,
    visible_text,
)
from devstack.testkit.edge import (
    RunningAgent,
    edge_config,
    events,
    free_port,
    query,
    seed_terminal,
)
from devstack.testkit.wait import wait
from edge.config import PickupSettings
from xiaodian.mqtt import MqttSettings
from xiaodian.wire.pickup import PickupCodec
from xiaodian.wire.retail import Order, OrderLine

KEY = bytes(range(100, 132))
SHANGHAI = ZoneInfo("Asia/Shanghai")
# Data, not interface: product and customer names.
DATA = ["Milk", "1L", "Bread", "Wang"]

pytestmark = pytest.mark.skipif(not have_chromium(), reason="/usr/bin/chromium missing")


def in_view(page: Any, selector: str) -> bool:
    """Whether the element's top part (its heading and first line) is on the 480-px screen
    without scrolling anything."""
    box = page.locator(selector).bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + min(box["height"], 60) <= 480


def small_targets(page: Any) -> list[str]:
    """Buttons and links on screen a finger would struggle with (under 44 px high)."""
    return list(page.evaluate("""[...document.querySelectorAll('button, a, select')]
        .filter((e) => e.offsetParent !== null)
        .filter((e) => e.getBoundingClientRect().height < 44)
        .map((e) => e.outerHTML.slice(0, 80))"""))


def test_counter_on_the_terminal_in_chinese(
    tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings], fridge: FakeFridge
) -> None:
    from playwright.sync_api import expect

    key_file = tmp_path / "pickup.key"
    key_file.write_text(KEY.hex())
    key_file.chmod(0o600)
    port = free_port()
    cfg = edge_config(tmp_path / "edge", mqtt_settings(STORE), fridges=[("fridge-1",
                      tmp_path / "fridge-1")], pickup=PickupSettings(key_file), kiosk_port=port,
                      publish_interval_s=0.1, readings_interval_s=0.1)
    assert cfg.edge.tz == "Asia/Shanghai"
    now = time.time()
    today = datetime.now(SHANGHAI).date()
    # The shop as it was: a catalogue, three milk received expiring tomorrow (lot B1), one
    # pickup order. Bread was never scanned in.
    expiry = (today + timedelta(days=1)).strftime("%y%m%d")
    due = now + 5400
    with seed_terminal(cfg) as seed:
        seed_milk_received(seed, expiry)
        seed.handle("mode", {"mode": "sale"})
        seed.downlink(Order(101, STORE, "pickup", "Wang L.", now, due,
                            (OrderLine(MILK, 2), OrderLine(BREAD, 1))))
    db = cfg.edge.db_path

    with RunningAgent(cfg) as agent, browser_page(TERMINAL) as page:
        wait(lambda: reader_up(agent), 10, "serial port opened")
        fridge.hello()
        for minute in range(41):  # 8.5 °C for 40 min: hot
            fridge.temp(minute * 60_000, 8.5)
        wait(lambda: any(a.rule == "hot" for a in agent.alerting.active()), 15, "hot alert")

        page.goto(f"http://127.0.0.1:{port}/counter")
        expect(page.locator("#alerts li.alert.critical").first).to_be_visible(timeout=20000)
        expect(page.locator("#orders li[data-order='101']")).to_be_visible()
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        # Needs action first: the alert and the expiring milk are on the screen as it is.
        assert in_view(page, "#alerts-box") and in_view(page, "#expiring-box")
        expect(page.locator("#alerts")).to_contain_text("严重")
        expect(page.locator("#expiring")).to_contain_text("Milk 1L ×3")
        # The pickup deadline in the store's time, not the browser's (UTC).
        local = datetime.fromtimestamp(due, SHANGHAI).strftime("%H:%M")
        utc = datetime.fromtimestamp(due, UTC).strftime("%H:%M")
        until = page.inner_text("#orders li[data-order='101'] .until")
        assert until == f"{local} 前取货" and utc not in until
        hot = next(a for a in agent.alerting.active() if a.rule == "hot")
        since = datetime.fromtimestamp(hot.started_at, SHANGHAI).strftime("%H:%M")
        expect(page.locator("#alerts li.alert.critical .since")).to_have_text(f" · 自 {since} 起")
        clock = page.inner_text("#clock")
        assert datetime.now(SHANGHAI).strftime("%H:") in clock or \
            (datetime.now(SHANGHAI) - timedelta(minutes=1)).strftime("%H:") in clock
        reader_checks(page, "counter-terminal-idle", DATA)
        assert small_targets(page) == []
        # The stock form is there too: "Stock count" brings it on screen.
        expect(page.locator("#st-send")).not_to_be_in_viewport()
        page.click(".modes button[data-mode='stock']")
        expect(page.locator("#st-send")).to_be_in_viewport()
        expect(page.locator(".modes button[data-mode='stock']")).to_have_class("on")
        assert small_targets(page) == []
        page.click(".modes button[data-mode='sale']")
        assert overflow_px(page) == 0
        screenshot(page, "counter-terminal-stock-form")
        page.locator("#alerts-box").scroll_into_view_if_needed()

        # 1. A smart-fridge pickup nobody weighed: Confirm is refused, then confirmed with
        #    a reason, which is recorded.
        page.keyboard.type("]Q1" + PickupCodec(STORE, KEY).issue(101, now + 3600))
        page.keyboard.press("Enter")
        expect(page.locator("#verdict.ok #verdict-title")).to_have_text("订单 101：Wang L.")
        expect(page.locator("#lines")).to_contain_text("fridge-1 第0道")
        assert in_view(page, "#confirm")
        screenshot(page, "counter-terminal-handover")
        page.click("#report")  # the quantities to type fit the screen too
        expect(page.locator("#send-diff")).to_be_visible()
        assert overflow_px(page) == 0
        screenshot(page, "counter-terminal-report")
        page.click("#abort")
        expect(page.locator("#verdict-title")).to_have_text("订单 101 的交货已取消")
        page.keyboard.type("]Q1" + PickupCodec(STORE, KEY).issue(101, now + 3600))
        page.keyboard.press("Enter")
        expect(page.locator("#confirm")).to_be_visible()
        page.click("#confirm")
        expect(page.locator("#verdict.bad")).to_have_attribute("data-reason", "unweighed")
        expect(page.locator("#verdict-title")).to_have_text("还没有称重")
        expect(page.locator("#override")).to_be_visible()
        assert in_view(page, "#override button[data-reason='taken_by_hand']")
        assert small_targets(page) == []
        assert [p["state"] for p in events(db, "order")] == ["received"]
        reader_checks(page, "counter-terminal-unweighed", DATA)
        page.click("#override button[data-reason='taken_by_hand']")
        expect(page.locator("#verdict.ok #verdict-title")).to_have_text("订单 101 已取货")
        expect(page.locator("#verdict-message")).to_contain_text("未称重确认：手动取出")
        picked = wait(lambda: [p for p in events(db, "order") if p["state"] == "picked_up"],
                      10, "the pickup recorded")
        assert picked[0]["unweighed"] == "taken_by_hand"
        assert query(db, "SELECT note FROM orders WHERE id=101") == [
            ("handed over unweighed (taken_by_hand)",)]

        # 2. A weighed item's label: weight and price, large.
        page.keyboard.type(f"]C101{MILK}310300125039221990")
        page.keyboard.press("Enter")
        expect(page.locator("#verdict-title")).to_have_text("已售：Milk 1L")
        expect(page.locator("#v-weight")).to_have_text("1.250\u00a0kg")
        expect(page.locator("#v-price")).to_have_text("¥19.90")
        assert english_words(visible_text(page), DATA) == []
        screenshot(page, "counter-terminal-weighed")

        # 3. Bread was never received (the pickup took it to -1): a sale asks once.
        page.keyboard.type("]E0" + BREAD[1:])
        page.keyboard.press("Enter")
        expect(page.locator("#verdict.bad")).to_have_attribute("data-reason", "below_zero")
        expect(page.locator("#verdict-message")).to_contain_text("这次销售后为 -2")
        assert [m for m in events(db, "stock") if m["item"] == BREAD and m["kind"] == "sale"
                ] == []
        reader_checks(page, "counter-terminal-below-zero", DATA)
        page.click("#below-zero button[data-reason='delivery not scanned in']")
        expect(page.locator("#verdict.ok #verdict-title")).to_have_text("已售：Bread")
        expect(page.locator("#verdict-message")).to_contain_text("已按负库存记录")
        page.keyboard.type("]E0" + BREAD[1:])  # asked once: the next one just sells
        page.keyboard.press("Enter")
        expect(page.locator("#verdict.ok #verdict-title")).to_have_text("已售：Bread")
        sales = wait(lambda: [m for m in events(db, "stock") if m["item"] == BREAD
                              and m["kind"] == "sale"][1:] and
                     [m for m in events(db, "stock") if m["item"] == BREAD
                      and m["kind"] == "sale"], 10, "two bread sales")
        assert [m["note"] for m in sales] == ["sold below zero: delivery not scanned in"] * 2

        # The terminal's own page (fridges, alert, buzzer) in Chinese too.
        page.goto(f"http://127.0.0.1:{port}/")
        expect(page.locator(".card.critical")).to_contain_text("严重")
        expect(page.locator(".card.critical .temp")).to_contain_text("°C")
        reader_checks(page, "kiosk-terminal", DATA)
        # English on request, remembered, and it fits the screen as well.
        page.goto(f"http://127.0.0.1:{port}/counter?lang=en")
        expect(page.locator("h1")).to_have_text("Counter")
        page.goto(f"http://127.0.0.1:{port}/counter")
        expect(page.locator("h1")).to_have_text("Counter")
        expect(page.locator("#alerts li.alert.critical .since")).to_contain_text("since")
        assert overflow_px(page) == 0
        assert in_view(page, "#alerts-box") and in_view(page, "#expiring-box")
        screenshot(page, "counter-terminal-english")
