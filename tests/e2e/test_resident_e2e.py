"""A newcomer in the demo's world, all real processes (StoreStack), in Chromium: a resident
at a phone's viewport (390x844) finds the store from their position, sees that its chilled
dumplings are not offered while fridge-2 is alarming (the demo's hot fridge, raised by the
real agent) and the next delivery's pre-sale with its cutoff counting down, orders milk for
pickup, logs in with the code the cloud wrote to its log and sees the QR code; a second
order for the same hour, from a page loaded before the first, is refused (the store's one
pickup of that hour is taken) and the next store is offered; the clerk hands the first
order over at the terminal's counter page (800x480) by scanning the code; the resident's
page says "picked up". Then a pre-order on the next delivery, cancelled before its
cutoff."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from cloud_gateway import geo, retail, stores
from cloud_gateway.db import Database
from cloud_gateway.ingest import ingest
from devstack.resident_seed import DEMO_PHONE, DEMO_POSITION, seed_residents
from devstack.retail_seed import DEMO_CATALOGUE
from devstack.stack import DEFAULT_SCENARIO, StoreStack
from devstack.testkit.browser import (
    PHONE,
    TERMINAL,
    browser_page,
    have_chromium,
    overflow_px,
    screenshot,
)
from devstack.testkit.wait import wait
from xiaodian.wire import retail as contract
from xiaodian.wire.payloads import batch_payload, event_record, reading_record

pytestmark = pytest.mark.skipif(not have_chromium(), reason="Debian's chromium missing")
MILK = "06901234567892"  # in fridge-1's lane 0: offered while fridge-1 is fine
DUMPLINGS = "06901234567816"  # chilled, its fridge not known: only while every fridge is
NEIGHBOUR = "store-002"  # 600 m on: a store without a terminal here, its data ingested


@pytest.fixture
def stack(tmp_path: Path, store_stack: Callable[..., StoreStack]) -> StoreStack:
    # The demo's store without its scripted counter scans: at speed 60 the first one (a milk
    # sale, 30 s in) would land on the counter page in the middle of the handover.
    demo = DEFAULT_SCENARIO.read_text(encoding="utf-8")
    quiet = tmp_path / "quiet.toml"
    quiet.write_text(demo[:demo.index("[[scanners.scans]]")], encoding="utf-8")
    return store_stack(speed=60, retail=True, scenario=quiet)


def logged_code(log: Path, phone: str) -> str | None:
    found = re.findall(rf"resident one-time code for {phone}: (\d{{6}})",
                       log.read_text(errors="replace") if log.exists() else "")
    return found[-1] if found else None


def neighbour(stack: StoreStack) -> None:
    """A second store 600 m north, as the cloud knows it: profile, catalogue with prices,
    stock and a fridge reading, through the cloud's own code (its ingest for the store's
    messages)."""
    now = time.time()
    items = [{k: v for k, v in it.items() if k != "location"} for it in DEMO_CATALOGUE
             if it["unit"] == "piece"]
    with Database.open(stack.cloud_db) as db:
        with db.transaction() as conn:
            stores.set_profile(conn, NEIGHBOUR, now, name="人民路店", tz="Asia/Shanghai",
                               address="黄浦区人民路 9 号", district="黄浦区",
                               position=geo.Point(DEMO_POSITION.lat + 600 / 111_195,
                                                  DEMO_POSITION.lon),
                               hours="00:00-24:00", pickup=True, delivery_radius_m=0,
                               slot_capacity=20)
            parsed, prices = retail.parse_catalogue(NEIGHBOUR, items)
            retail.put_catalogue(conn, NEIGHBOUR, parsed, now, "test", prices)
        moves = [event_record(k + 1, "stock", None, None, now - 60 + k, True,
                              contract.movement_data(contract.Movement(
                                  uuid.uuid4().hex, "delivery", it["item"], 5)))
                 for k, it in enumerate(items)]
        ingest(db, f"xd/v1/{NEIGHBOUR}/events",
               batch_payload("events", NEIGHBOUR, "ledger", 1, moves), "test", now)
        rec = reading_record(1, 1, 60_000, now, True, [(0, "ok", 3.0), (1, "ok", 3.1)])
        ingest(db, f"xd/v1/{NEIGHBOUR}/telemetry",
               batch_payload("readings", NEIGHBOUR, "fridge-1", 1, [rec]), "test", now)


def test_a_resident_orders_is_refused_when_full_and_picks_up_at_the_counter(
        stack: StoreStack) -> None:
    stack.seed_retail()
    seeded = seed_residents(stack)
    with Database.open(stack.cloud_db) as db, db.transaction() as conn:
        stores.set_profile(conn, stack.store, time.time(), slot_capacity=1)  # one per hour
    neighbour(stack)
    store_card = f"article.store[data-store={stack.store}]"
    gps = geo.gcj02_to_wgs84(DEMO_POSITION.lat - 0.003, DEMO_POSITION.lon)  # ~330 m south
    with browser_page(PHONE, geolocation={"latitude": gps.lat, "longitude": gps.lon}) as page:
        page.goto(seeded["url"])
        page.wait_for_selector(store_card)
        assert page.locator("article.store").count() == 2  # the demo store and its neighbour
        screenshot(page, "resident-e2e-near")
        page.click(f"{store_card} a.btn")
        store_url = page.url

        def paused() -> bool:  # fridge-2's hot alert reached the cloud: chilled paused
            page.goto(store_url)
            return page.locator(".chill-some").count() == 1

        wait(paused, 60, "fridge-2's critical alert on the store's page")
        offered = page.eval_on_selector_all(".offer", "els => els.map(e => e.dataset.item)")
        assert MILK in offered and DUMPLINGS not in offered, offered
        # The next delivery (the demo store's supply zone): pre-sale, the cutoff counting down.
        first = page.inner_text("#countdown")
        assert re.fullmatch(r"还剩 \d+:\d\d:\d\d", first), first
        wait(lambda: page.inner_text("#countdown") != first, 5, "the countdown to tick")
        assert page.locator("option#wave-option").count() == 1
        assert "下一批到货最多" in page.inner_text(f".offer[data-item='{MILK}']")
        assert overflow_px(page) == 0
        screenshot(page, "resident-e2e-store-fridge-alarm")
        # A second tab on the same page, loaded now: it will ask for the same hour later.
        later = page.context.new_page()
        later.goto(store_url)
        hour = page.eval_on_selector("select#window", "s => s.value")

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
        page.wait_for_url(re.compile(rf".*/r/s/{stack.store}\?.*"))
        assert page.input_value(f"input[name='qty:{MILK}']") == "1"  # the cart kept
        page.click("form#order button[type=submit]")
        page.wait_for_url(re.compile(r".*/r/orders#order-\d+"))
        order_id = int(page.url.rsplit("-", 1)[1])
        card = f"article#order-{order_id}"
        pickup_code = page.inner_text(f"{card} .code").strip()
        assert page.locator(f"{card} .qr svg").count() == 1
        assert overflow_px(page) == 0
        screenshot(page, "resident-e2e-ordered")

        # The tab loaded before: same hour, now taken. Refused, with the next store.
        assert later.eval_on_selector("select#window", "s => s.value") == hour
        later.fill(f"input[name='qty:{MILK}']", "1")
        later.click("form#order button[type=submit]")
        later.wait_for_selector("#refusal")
        refusal = later.inner_text("#refusal")
        assert "本店该时段的订单已满" in refusal and "人民路店" in refusal, refusal
        assert overflow_px(later) == 0
        screenshot(later, "resident-e2e-full")
        later.click("#next-store")
        later.wait_for_url(re.compile(rf".*/r/s/{NEIGHBOUR}\?.*cart=.*"))
        assert later.input_value(f"input[name='qty:{MILK}']") == "1"  # carried over
        later.close()

        def state() -> str:
            page.reload()
            return str(page.get_attribute(card, "data-state"))

        wait(lambda: state() == "received", 30, "the terminal to confirm the order")

        # The counter page of the terminal, as the clerk sees it; the scanner types.
        ctx = page.context.browser.new_context(viewport=TERMINAL, locale="zh-CN",
                                               timezone_id="UTC")
        try:
            counter = ctx.new_page()
            counter.goto(stack.counter_url)
            counter.wait_for_selector(f"#orders li[data-order='{order_id}']")
            counter.keyboard.type("]Q1" + pickup_code)
            counter.keyboard.press("Enter")
            counter.wait_for_selector(f"#verdict.ok #verdict-title:has-text('{order_id}')")
            title = counter.inner_text("#verdict-title")
            assert str(order_id) in title and "****" + DEMO_PHONE[-4:] in title, title
            screenshot(counter, "resident-e2e-counter-handover")
            # As a clerk does, confirm once the fridge says it is unlocked. (A tap landing in
            # the redraw the unlock answer causes used to be lost: seen once in CI. The page
            # now keeps its buttons across redraws: tests/edge/test_counter_redraw.py.)
            counter.wait_for_selector("#waiting:has-text('已开锁')")
            counter.click("#confirm")
            # Nobody takes the milk out of the simulated fridge's lane: the clerk says it
            # was taken by hand, which the terminal records.
            try:
                counter.wait_for_selector("#override button[data-reason='taken_by_hand'],"
                                          " #verdict.ok:has-text('已取货')")
            except Exception as exc:  # what the clerk saw instead, for whoever reads the failure
                screenshot(counter, "resident-e2e-counter-after-confirm")
                raise AssertionError("after Confirm the counter shows: "
                                     + counter.inner_html("#verdict")) from exc
            if counter.locator("#override button[data-reason='taken_by_hand']").is_visible():
                counter.click("#override button[data-reason='taken_by_hand']")
            counter.wait_for_selector(f"#verdict.ok:has-text('订单 {order_id} 已取货')")
            screenshot(counter, "resident-e2e-counter-done")
        finally:
            ctx.close()

        wait(lambda: state() == "picked_up", 30, "picked up on the resident's page")
        assert "已取货" in page.inner_text(card)
        assert page.locator(f"{card} .code").count() == 0
        assert overflow_px(page) == 0
        screenshot(page, "resident-e2e-picked-up")

        # A pre-order on the next delivery: in the wave, no code yet, cancelled before the
        # cutoff.
        page.goto(store_url)
        page.fill(f"input[name='qty:{MILK}']", "2")
        page.select_option("select#window", "wave")
        page.click("form#order button[type=submit]")
        page.wait_for_url(re.compile(r".*/r/orders#order-\d+"))
        pre = f"article#order-{int(page.url.rsplit('-', 1)[1])}"
        assert page.get_attribute(pre, "data-state") == "preorder"
        text = page.inner_text(pre)
        assert re.search(r"随 \d+月\d+日周. 的到货", text) and "截单前" in text, text
        assert page.locator(f"{pre} .code").count() == 0
        assert overflow_px(page) == 0
        screenshot(page, "resident-e2e-preorder")
        page.click(f"{pre} form[action$='/cancel'] button")
        page.wait_for_url(re.compile(r".*/r/orders#order-\d+"))
        assert page.get_attribute(pre, "data-state") == "cancelled"
