"""A resident's notices on their own "my orders" page, and nobody else's."""

from __future__ import annotations

import pytest
from resident_world import Town, get, log_in, order, order_id

from cloud_gateway import resident_notices
from cloud_gateway.db import Database
from devstack.testkit.browser import PHONE, browser_page, have_chromium, overflow_px, screenshot


def test_my_orders_shows_my_notices_only(town: Town) -> None:
    alice, bob = log_in(town, "13800000005"), log_in(town, "13800000006")
    mine = order_id(order(town, alice))
    with Database.open(town.world.db_path) as db, db.transaction() as conn:
        resident_notices.add(conn, mine, resident_notices.REFUND, "1",
                             {"store": "幸福路店", "amount_fen": 1290}, 1.0)
    page = get(town, "/r/orders", alice).body.decode()
    assert 'data-kind="refund"' in page and "未到的商品已退款 ¥12.90" in page
    assert 'data-kind="refund"' not in get(town, "/r/orders", bob).body.decode()


def test_what_was_refunded_is_not_charged_at_pickup(town: Town) -> None:
    alice = log_in(town, "13800000007")
    mine = order_id(order(town, alice))
    before = get(town, "/r/orders", alice).body.decode()
    assert "合计 ¥8.90，取货时付款" in before  # one bread (resident_world.order)
    with Database.open(town.world.db_path) as db, db.transaction() as conn:
        # As supply.receiving writes it when a delivery came short (manifest 1).
        conn.execute("INSERT INTO refunds (order_id, store, manifest, amount_fen, reason,"
                     " provider, state, created_at) VALUES (?, 'store-001', 1, 300, 'short',"
                     " 'record', 'recorded', 1.0)", (mine,))
    after = get(town, "/r/orders", alice).body.decode()
    assert "合计 ¥5.90，取货时付款（未到商品少付 ¥3.00）" in after, after


@pytest.mark.skipif(not have_chromium(), reason="Debian's chromium missing")
def test_the_notices_read_well_on_a_phone(town: Town) -> None:
    cookie = log_in(town, "13800000007")
    mine = order_id(order(town, cookie))
    with Database.open(town.world.db_path) as db, db.transaction() as conn:
        for kind, about, params in (
                (resident_notices.SHORT, "1:m", {"store": "幸福路店", "name": "鲜牛奶", "qty": 1,
                                                 "issues": ["damaged"]}),
                (resident_notices.REFUND, "1", {"store": "幸福路店", "amount_fen": 1290})):
            resident_notices.add(conn, mine, kind, about, params, town.world.clock())
    name, value = cookie.split("=", 1)
    with browser_page(PHONE) as page:
        page.context.add_cookies([{"name": name, "value": value, "url": town.url + "/r"}])
        page.goto(town.url + "/r/orders")
        notes = page.locator(f"#order-{mine} .notices li")
        assert notes.count() == 2
        assert "破损" in (notes.first.text_content() or "")
        assert overflow_px(page) == 0
        screenshot(page, "resident-notices-phone-zh")
