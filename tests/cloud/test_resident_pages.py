"""The resident app in real headless Chromium against a real server and database, as a
resident on a phone reads it (390×844 and 360 wide), in Chinese first: stores near me with
a granted and a refused position, a store's promise, ordering, my orders with the pickup
code read back from the QR picture, the refusal that offers the next store; then English.
Set XIAODIAN_SCREENSHOTS=/dir to keep the pictures."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import resident_world as rw
import segno
from playwright.sync_api import Geolocation
from resident_world import Town

from cloud_gateway import geo, shop, stores
from cloud_gateway.db import Database
from devstack.testkit.browser import (
    PHONE,
    SMALL_PHONE,
    browser_page,
    have_chromium,
    overflow_px,
    reader_checks,
    screenshot,
    visible_text,
)
from devstack.testkit.wait import wait
from xiaodian.i18n import translator
from xiaodian.pki import load_pickup_key, pickup_key_path
from xiaodian.wire.pickup import PickupCodec

pytestmark = pytest.mark.skipif(not have_chromium(), reason="Debian's chromium missing")

PHONE_NO = "13800138000"
DATA = ["English"]  # the language switch; every other Latin word is the interface's


@dataclass
class FakePayment:
    """Test-only payment provider: records what it was asked to collect."""

    started: list[tuple[int, int]] = field(default_factory=list)

    def start(self, order_id: int, amount_fen: int) -> shop.Payment:
        self.started.append((order_id, amount_fen))
        return shop.Payment("pay_at_pickup", "due")


@pytest.fixture
def payment() -> FakePayment:
    return FakePayment()


@pytest.fixture
def town(tmp_path: Path, payment: FakePayment) -> Iterator[Town]:
    with rw.serve(rw.build(tmp_path), payment=payment) as town:
        yield town


def gps_of(point: geo.Point) -> Geolocation:
    """What a phone's GPS says (WGS-84) at a GCJ-02 point."""
    w = geo.gcj02_to_wgs84(point.lat, point.lon)
    return {"latitude": w.lat, "longitude": w.lon}


def login(page: Any, town: Town, back_to: str) -> None:
    """Log in on the login page the browser is at; it returns to `back_to` (a path)."""
    page.fill("input[name=phone]", PHONE_NO)
    page.click("form[action='/r/login/code'] button")
    page.wait_for_selector("input[name=code]")
    reader_checks(page, "resident-login-code", DATA)
    assert town.sender.sent[-1][0] == PHONE_NO
    page.fill("input[name=code]", town.sender.sent[-1][1])
    page.click("form[action='/r/login/verify'] button")
    page.wait_for_url(re.compile(re.escape(town.url + back_to) + r"(\?.*)?$"))


def store_ids(page: Any) -> list[str]:
    return [str(s) for s in page.eval_on_selector_all(
        "article.store", "els => els.map(e => e.dataset.store)")]


@pytest.mark.parametrize("viewport", [PHONE, SMALL_PHONE], ids=["390", "360"])
def test_stores_near_me_from_the_phones_position(town: Town, viewport: Any) -> None:
    with browser_page(viewport, geolocation=gps_of(rw.HOME)) as page:
        page.goto(f"{town.url}/r")
        page.wait_for_url(re.compile(r".*/r\?lat=.*datum=wgs84"))
        page.wait_for_selector("article.store")
        # Nearest first, the distances measured from the converted (GCJ-02) position.
        assert store_ids(page) == ["store-001", "store-002", "store-003"]
        first = page.inner_text("article.store[data-store=store-001] .dist")
        assert first == "300 米"
        alarming = page.inner_text("article.store[data-store=store-003]")
        assert "暂不供应冷藏食品" in alarming
        assert "可订冷藏食品" in page.inner_text("article.store[data-store=store-001]")
        assert "营业中" in page.inner_text("article.store[data-store=store-001]")
        reader_checks(page, f"resident-near-{viewport['width']}", DATA)


def test_a_refused_position_offers_the_districts(town: Town) -> None:
    with browser_page(PHONE) as page:
        page.goto(f"{town.url}/r")
        wait(lambda: "未获得您的位置" in page.inner_text("#locate-status"), 10,
             "the page to say the position was refused")
        assert store_ids(page) == []
        reader_checks(page, "resident-near-refused", DATA)
        page.click("#places a:has-text('浦东新区')")
        page.wait_for_selector("article.store")
        # From the middle of 浦东新区's stores, its own store is nearest; no distance is
        # claimed and no position goes on (the resident is not at the district's middle).
        assert store_ids(page)[0] == "store-003"
        assert page.locator("article.store .dist").count() == 0
        assert "lat=" not in (page.get_attribute("article.store a.btn", "href") or "x")
        reader_checks(page, "resident-near-district", DATA)


def test_an_alarming_fridge_offers_no_chilled_item(town: Town) -> None:
    with browser_page(PHONE) as page:
        page.goto(f"{town.url}/r/s/store-003")
        items = page.eval_on_selector_all(".offer", "els => els.map(e => e.dataset.item)")
        assert items == [rw.BREAD]
        assert "暂不供应冷藏食品" in visible_text(page)
        reader_checks(page, "resident-store-alarming", DATA)


def qr_modules(page: Any, selector: str) -> list[list[bool]]:
    """The QR picture as the phone shows it, read back module by module from its pixels."""
    return [[bool(v) for v in row] for row in page.evaluate("""async (sel) => {
      const svg = document.querySelector(sel);
      const size = svg.viewBox.baseVal.width;            // modules + 2 * border
      const scale = 8, img = new Image();
      img.src = "data:image/svg+xml;base64," + btoa(new XMLSerializer().serializeToString(svg));
      await img.decode();
      const c = document.createElement("canvas");
      c.width = c.height = size * scale;
      const g = c.getContext("2d");
      g.fillStyle = "#fff"; g.fillRect(0, 0, c.width, c.height);
      g.drawImage(img, 0, 0, c.width, c.height);
      const px = g.getImageData(0, 0, c.width, c.height).data;
      const rows = [];
      for (let y = 0; y < size; y++) {
        const row = [];
        for (let x = 0; x < size; x++) {
          const i = ((y * scale + scale / 2) * c.width + (x * scale + scale / 2)) * 4;
          row.push(px[i] < 128 ? 1 : 0);
        }
        rows.push(row);
      }
      return rows;
    }""", selector)]


def test_order_for_pickup_and_see_the_code(town: Town, payment: FakePayment,
                                            tmp_path: Path) -> None:
    with browser_page(PHONE, geolocation=gps_of(rw.HOME)) as page:
        page.goto(f"{town.url}/r")
        page.wait_for_selector("article.store")
        page.click("article.store[data-store=store-001] a.btn")
        page.wait_for_selector("form#order")
        page.fill(f"input[name='qty:{rw.MILK}']", "2")
        page.fill(f"input[name='qty:{rw.BREAD}']", "1")
        assert page.inner_text("#total") == "¥33.90"  # as the server writes money
        reader_checks(page, "resident-store-cart", DATA)
        assert page.inner_text("form#order button[type=submit]") == "登录并下单"
        page.click("form#order button[type=submit]")
        # Not logged in: the login keeps the cart and comes back to it.
        page.wait_for_url(re.compile(r".*/r/login\?next=.*"))
        login(page, town, "/r/s/store-001")
        assert page.input_value(f"input[name='qty:{rw.MILK}']") == "2"
        page.click("form#order button[type=submit]")
        page.wait_for_url(re.compile(r".*/r/orders#order-\d+"))
        order_id = int(page.url.rsplit("-", 1)[1])
        card = f"article#order-{order_id}"
        text = page.inner_text(card)
        assert "幸福路店" in text and "黄浦区幸福路1号" in text
        assert "合计 ¥33.90，取货时付款" in text
        assert "今天 11:00–12:00" in text  # the first pickup hour, on the store's clock
        assert payment.started == [(order_id, 3390)]
        href = page.get_attribute(f"{card} a.map", "href") or ""
        assert "uri.amap.com" in href and f"{rw.north(300).lon:.6f}" in href
        code = page.inner_text(f"{card} .code").strip()
        # The picture encodes exactly that text ...
        assert qr_modules(page, f"{card} .qr svg") == [
            [bool(v) for v in row] for row in segno.make(code, error="m").matrix_iter(
                scale=1, border=4)]
        # ... and the store's terminal accepts it for this order, offline, with its key.
        key = load_pickup_key(pickup_key_path(tmp_path / "pki", "store-001"))
        ticket = PickupCodec("store-001", key).verify(code, rw.NOW)
        assert ticket.order_id == order_id
        page.reload()
        assert page.inner_text(f"{card} .code").strip() == code  # the same code every visit
        reader_checks(page, "resident-my-orders", DATA)
    with browser_page(SMALL_PHONE) as small:
        small.goto(f"{town.url}/r/orders")
        small.wait_for_url(re.compile(r".*/r/login.*"))  # another browser: not logged in
        reader_checks(small, "resident-login-360", DATA)


def someone_else_orders(town: Town, store: str) -> None:
    """Another resident takes the store's first pickup hour (directly, in the database)."""
    with Database.open(town.world.db_path) as db, db.transaction() as conn:
        first = shop.windows(stores.get(conn, store), town.world.clock()).pop(0)
        shop.place(conn, shop.Request(store, 999, "****0000", shop.Cart(((rw.BREAD, 1),)),
                                      "pickup", first.start), town.world.clock(),
                   shop.NoWaves(), shop.PayAtPickup())


def test_a_full_store_offers_the_next_nearest(town: Town) -> None:
    with browser_page(PHONE, geolocation=gps_of(rw.HOME)) as page:
        page.goto(f"{town.url}/r/login?next=/r")
        login(page, town, "/r")
        page.wait_for_selector("article.store")
        page.click("article.store[data-store=store-001] a.btn")
        page.fill(f"input[name='qty:{rw.BREAD}']", "2")
        # store-001 hands over one order an hour; while the resident chooses, someone else
        # takes the first hour: the order is refused ...
        someone_else_orders(town, "store-001")
        page.click("form#order button[type=submit]")
        page.wait_for_selector("#refusal")
        text = page.inner_text("#refusal")
        assert "本店该时段的订单已满" in text
        assert "人民路店" in text  # ... and the next nearest store that can take it offered
        reader_checks(page, "resident-refused-full", DATA)
        page.click("#next-store")
        page.wait_for_url(re.compile(r".*/r/s/store-002\?.*"))
        assert page.input_value(f"input[name='qty:{rw.BREAD}']") == "2"  # the cart came along
        reader_checks(page, "resident-next-store", DATA)
        page.click("form#order button[type=submit]")
        page.wait_for_url(re.compile(r".*/r/orders#order-\d+"))
        assert "人民路店" in page.inner_text("article.order")


def test_the_resident_app_in_english(town: Town) -> None:
    with browser_page(PHONE, locale="en-GB", geolocation=gps_of(rw.HOME)) as page:
        page.goto(f"{town.url}/r?lang=en")
        page.wait_for_selector("article.store")
        text = visible_text(page)
        assert "Stores near me" in text and "No chilled food now" in text
        assert "300 m" in text
        screenshot(page, "resident-near-en")
        page.click("article.store[data-store=store-001] a.btn")
        page.wait_for_selector("form#order")
        assert "What this store can promise" in visible_text(page)
        assert "Today 11:00" in page.inner_text("select[name=window]")
        page.fill(f"input[name='qty:{rw.MILK}']", "1")
        assert page.inner_text("#total") == translator("en").money(1250)  # as the server
        assert overflow_px(page) == 0
        screenshot(page, "resident-store-en")
