"""A newcomer in the demo's world, all real processes (StoreStack): a resident finds the
store from their phone's position, orders milk for pickup, logs in with the code the cloud
wrote to its log, sees the QR code; the order reaches the terminal, the clerk hands it over
at the counter with that code, and the resident's page says "picked up"."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from cloud_gateway import geo
from devstack.resident_seed import DEMO_PHONE, DEMO_POSITION, seed_residents
from devstack.stack import StoreStack
from devstack.testkit.browser import (
    PHONE,
    browser_page,
    have_chromium,
    overflow_px,
    screenshot,
)
from devstack.testkit.http_client import post
from devstack.testkit.wait import wait

pytestmark = pytest.mark.skipif(not have_chromium(), reason="Debian's chromium missing")
MILK = "06901234567892"  # in fridge-1's lane 0: offered while fridge-1 is fine


@pytest.fixture
def stack(tmp_path: Path) -> Any:
    s = StoreStack(tmp_path / "store", speed=60, retail=True)
    try:
        s.start()
        yield s
    finally:
        s.stop()


def logged_code(log: Path, phone: str) -> str | None:
    found = re.findall(rf"resident one-time code for {phone}: (\d{{6}})",
                       log.read_text(errors="replace") if log.exists() else "")
    return found[-1] if found else None


def counter(stack: StoreStack, action: str, body: dict[str, Any]) -> dict[str, Any]:
    base = stack.counter_url.rsplit("/counter", 1)[0]
    r = post(f"{base}/api/counter/{action}", body, headers={"Origin": base})
    assert r.status == 200, (r.status, r.body)
    got: dict[str, Any] = r.json()
    return got


def test_a_resident_orders_and_picks_up_at_the_counter(stack: StoreStack) -> None:
    stack.seed_retail()
    seeded = seed_residents(stack)
    gps = geo.gcj02_to_wgs84(DEMO_POSITION.lat + 0.003, DEMO_POSITION.lon)  # ~330 m away
    with browser_page(PHONE, geolocation={"latitude": gps.lat, "longitude": gps.lon}) as page:
        page.goto(seeded["url"])
        page.wait_for_selector("article.store[data-store=store-001]")
        page.click("article.store[data-store=store-001] a.btn")
        page.fill(f"input[name='qty:{MILK}']", "1")
        page.click("form#order button[type=submit]")
        page.wait_for_url(re.compile(r".*/r/login\?.*"))
        page.fill("input[name=phone]", DEMO_PHONE)
        page.click("form[action='/r/login/code'] button")
        page.wait_for_selector("input[name=code]")
        code = wait(lambda: logged_code(Path(seeded["code_log"]), DEMO_PHONE), 10,
                    "the one-time code in the cloud's log")
        page.fill("input[name=code]", code)
        page.click("form[action='/r/login/verify'] button")
        page.wait_for_url(re.compile(r".*/r/s/store-001\?.*"))
        page.click("form#order button[type=submit]")
        page.wait_for_url(re.compile(r".*/r/orders#order-\d+"))
        order_id = int(page.url.rsplit("-", 1)[1])
        card = f"article#order-{order_id}"
        pickup_code = page.inner_text(f"{card} .code").strip()
        screenshot(page, "resident-e2e-ordered")

        def state() -> str:
            page.reload()
            return str(page.get_attribute(card, "data-state"))

        wait(lambda: state() == "received", 30, "the terminal to confirm the order")
        verdict = counter(stack, "scan", {"code": "]Q1" + pickup_code})
        # The terminal verified the code offline; the clerk sees the masked number only.
        assert (verdict["ok"], verdict["order"]) == (True, order_id), verdict
        assert verdict["handover"]["customer"] == "****" + DEMO_PHONE[-4:]
        done = counter(stack, "confirm", {"order": order_id, "override": "taken_by_hand"})
        assert done.get("ok") is True, done
        wait(lambda: state() == "picked_up", 30, "picked up on the resident's page")
        assert "已取货" in page.inner_text(card)
        assert page.locator(f"{card} .code").count() == 0
        assert overflow_px(page) == 0
        screenshot(page, "resident-e2e-picked-up")
