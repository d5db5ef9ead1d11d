"""Receiving a delivery against its manifest on the terminal's 800×480 screen, in Chinese:
a real agent, headless Chromium. The clerk opens the manifest from the incoming list,
scans the milk in, taps "all" for the tofu, records a damaged tofu with a note, and signs
off with their own account; the sign-off bar stays on screen without scrolling, nothing is
wider than the screen, nothing is English but data; the receipt is written once."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from devstack.testkit.browser import (
    TERMINAL,
    browser_page,
    have_chromium,
    overflow_px,
    reader_checks,
    screenshot,
)
from devstack.testkit.edge import RunningAgent, edge_config, events, free_port, seed_terminal
from devstack.testkit.wait import wait
from edge.config import Clerk, RetailSettings
from edge.retail.clerks import hash_pin
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
TOFU = "06901234567823"
SHANGHAI = ZoneInfo("Asia/Shanghai")
DATA = ["wang", "PIN"]  # an account name is data; PIN is what the clerk calls it

pytestmark = pytest.mark.skipif(not have_chromium(), reason="/usr/bin/chromium missing")


def in_view(page: Any, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 480 \
        and box["x"] >= 0 and box["x"] + box["width"] <= 800


def test_receiving_a_manifest_on_the_terminal(
        tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings]) -> None:
    from playwright.sync_api import expect

    port = free_port()
    cfg = edge_config(tmp_path / "edge", mqtt_settings(STORE), kiosk_port=port,
                      publish_interval_s=0.1, readings_interval_s=0.1)
    cfg = dataclasses.replace(cfg, retail=RetailSettings(2, (
        Clerk("李娜", hash_pin("2468", iterations=1000)), Clerk("wang", hash_pin("1357")))))
    today = datetime.now(SHANGHAI).date()
    expiry = (today + timedelta(days=5)).isoformat()
    lines = [ManifestLine(MILK, "鲜牛奶 1L", 3, (ManifestLot("D1208", expiry, 3),),
                          (Serves(41, 2, 0),)),
             ManifestLine(TOFU, "豆腐 400g", 4, (ManifestLot("T1", expiry, 4),))]
    # More lines than the screen holds: the list scrolls, the sign-off bar does not.
    for n in range(6):
        gtin = f"0690123456{n:03d}"
        lines.append(ManifestLine(gtin + str(_check_digit(gtin)), f"酸奶 {n}", 2,
                                  (ManifestLot("Y1", expiry, 2),)))
    with seed_terminal(cfg) as seed:
        seed.downlink(Catalogue(STORE, 1, (
            CatalogueItem(MILK, "鲜牛奶 1L", "piece", 7, "chilled"),
            CatalogueItem(TOFU, "豆腐 400g", "piece", 3, "chilled"))))
        seed.downlink(Manifest(9, STORE, "north", today.isoformat(), today.isoformat(),
                               tuple(lines)))
    db = cfg.edge.db_path

    with RunningAgent(cfg), browser_page(TERMINAL) as page:
        page.goto(f"http://127.0.0.1:{port}/counter")
        open_btn = page.locator("#incoming button[data-receive='9']")
        expect(open_btn).to_be_visible(timeout=20000)
        open_btn.click()
        expect(page.locator("#recv-title")).to_have_text(
            f"验收送货单 9（{today.month}月{today.day}日）", timeout=10000)
        expect(page.locator(".modes button[data-mode='receive']")).to_have_class("on")
        for _ in range(2):  # the scanner types into the scan field
            page.keyboard.type(f"]E0{MILK[1:]}")
            page.keyboard.press("Enter")
        milk = page.locator(f".rl[data-item='{MILK}']")
        expect(milk.locator("output[data-field='good']")).to_have_text("2")
        expect(milk.locator(".gap")).to_have_text("少 1")
        tofu = page.locator(f".rl[data-item='{TOFU}']")
        tofu.locator("button[data-all]").click()
        expect(tofu.locator("output[data-field='good']")).to_have_text("4")
        tofu.locator("button[data-step='good-']").click()
        expect(tofu.locator("output[data-field='good']")).to_have_text("3")
        tofu.locator("button[data-problem]").click()
        tofu.locator("button[data-step='damaged+']").click()
        expect(tofu.locator("output[data-field='damaged']")).to_have_text("1")
        note = tofu.locator("input[data-note]")
        note.fill("盒子压坏")
        note.press("Enter")
        note.blur()
        for row in page.locator(".rl").all()[2:]:
            row.locator("button[data-all]").click()
        expect(page.locator(".rl.todo")).to_have_count(0)
        assert in_view(page, "#recv-ok") and in_view(page, "#recv-pin")
        reader_checks(page, "counter-receiving", DATA)
        page.evaluate("document.getElementById('recv-lines').scrollTop = 0")
        assert in_view(page, "#recv-ok")
        screenshot(page, "counter-receiving-problem")
        # In English the words are longer: still no overflow, the sign-off still in view.
        page.goto(f"http://127.0.0.1:{port}/counter?lang=en")
        expect(page.locator("#recv-title")).to_contain_text("Receiving manifest 9")
        expect(page.locator(f".rl[data-item='{TOFU}'] input[data-note]")).to_be_visible()
        assert overflow_px(page) == 0 and in_view(page, "#recv-ok")
        screenshot(page, "counter-receiving-en")
        page.goto(f"http://127.0.0.1:{port}/counter?lang=zh-CN")
        expect(page.locator("#recv-title")).to_contain_text("验收送货单 9")
        # A wrong PIN: refused, nothing recorded.
        page.select_option("#recv-clerk", "李娜")
        page.fill("#recv-pin", "1111")
        page.click("#recv-ok")
        expect(page.locator("#verdict.bad")).to_have_attribute("data-reason", "bad_pin")
        assert events(db, "receipt") == []
        page.fill("#recv-pin", "2468")
        page.click("#recv-ok")
        expect(page.locator("#verdict.ok #verdict-title")).to_have_text("送货单 9 已验收")
        expect(page.locator("#recv")).to_be_hidden()
        expect(page.locator("#incoming li[data-manifest='9']")).to_contain_text("已验收")
        assert overflow_px(page) == 0
        screenshot(page, "counter-receiving-signed")
        (receipt,) = wait(lambda: events(db, "receipt"), 10, "the receipt event")
        assert receipt["signed_by"] == "李娜" and receipt["manifest"] == 9
        assert {(d["item"], d["issue"], d["qty"], d["note"])
                for d in receipt["differences"]} == {(MILK, "short", 1, ""),
                                                     (TOFU, "damaged", 1, "盒子压坏")}
        stock = [e for e in events(db, "stock") if e["kind"] == "delivery"]
        assert sorted((e["item"], e["qty"], e["batch"]) for e in stock
                      if e["item"] in (MILK, TOFU)) == [(TOFU, 3, "T1"), (MILK, 2, "D1208")]


def _check_digit(digits13: str) -> int:
    total = sum(int(c) * (3 if i % 2 == 0 else 1) for i, c in enumerate(reversed(digits13)))
    return (10 - total % 10) % 10
