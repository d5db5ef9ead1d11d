"""Hostile input on the resident routes, beyond test_resident_routes.py: script in the
free text owners write and residents read (store name, address, district, item names), odd
order forms, guessed order ids, a session replayed after logout, and a code flood that
rotates a forwarded-for header. Each is refused or shown as text, and leaves nothing behind."""

from __future__ import annotations

import re
from urllib.parse import quote

import resident_world as rw
from resident_world import Town, get, log_in, order, order_id, post

from cloud_gateway import residents, retail, stores
from cloud_gateway.db import Database
from devstack.testkit.http_client import request

EVIL = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def orders_count(town: Town) -> int:
    with Database.open(town.world.db_path) as db:
        return int(db.conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0])


def test_script_in_what_owners_write_stays_text_on_every_resident_page(town: Town) -> None:
    with Database.open(town.world.db_path) as db, db.transaction() as conn:
        stores.set_profile(conn, "store-001", rw.NOW, name="幸福<b>店</b>",
                           address="幸福路" + EVIL, district="黄浦<i>区")
        items = [dict(it, name=("牛奶" + EVIL)[:100]) if it["item"] == rw.MILK else it
                 for it in rw.ITEMS]
        parsed, _ = retail.parse_catalogue("store-001", items)
        retail.put_catalogue(conn, "store-001", parsed, rw.NOW, "test", rw.PRICES)
    me = log_in(town, "13800000041")
    oid = order_id(order(town, me, **{f"qty:{rw.MILK}": "1"}))
    q = f"?lat={rw.HOME.lat}&lon={rw.HOME.lon}"
    pages = {"near": get(town, "/r" + q), "store": get(town, "/r/s/store-001" + q),
             "orders": get(town, "/r/orders", me),
             "district": get(town, "/r?district=" + quote("黄浦<i>区"))}
    for name, r in pages.items():
        body = r.body.decode()
        assert r.status == 200, name
        for raw in ("<script>alert(1)", "<img src=x", "<b>店</b>", "<i>区"):
            assert raw not in body, (name, raw)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages["store"].body.decode()
    assert f'id="order-{oid}"' in pages["orders"].body.decode()
    # The map link carries the name as a URL parameter, escaped, never as markup.
    link = re.search(r'href="(https://uri\.amap\.com/marker\?[^"]*)"',
                     pages["store"].body.decode())
    assert link is not None and "<" not in link[1] and "%3Cb%3E" in link[1]


def test_odd_order_forms_are_refused_and_place_nothing(town: Town) -> None:
    me = log_in(town, "13800000042")
    before = orders_count(town)
    forms = [
        {f"qty:{rw.BREAD}": "-1"}, {f"qty:{rw.BREAD}": "1e3"}, {f"qty:{rw.BREAD}": "１"},
        {f"qty:{rw.BREAD}": "99999"}, {f"qty:{rw.BREAD}": "0x10"},
        {f"qty:{rw.BREAD}": "0"},  # an empty cart
        {f"qty:{rw.BREAD}": "1", "qty:<script>": "1"},  # an item that is no item
        {f"qty:{rw.BREAD}": "1", "window": "' OR 1=1 --"},
        {f"qty:{rw.BREAD}": "1", "window": "-3600"},
        {f"qty:{rw.BREAD}": "1", "window": "wave"},  # store-001 takes no pre-orders here
        {f"qty:{rw.BREAD}": "1", "mode": "<script>"},
        {f"qty:{rw.BREAD}": "1", "mode": "delivery", "address": "x" * 121},
        {f"qty:{rw.BREAD}": "1", "lat": "nan", "lon": "inf", "mode": "delivery",
         "address": "幸福路 1 号"},
        {f"qty:{i:014d}": "1" for i in range(60)},  # more lines than an order holds
    ]
    for fields in forms:
        r = order(town, me, **fields)
        body = r.body.decode()
        assert r.status in (400, 409), (fields, r.status)
        assert "<script>alert" not in body and "qty:<script>" not in body, fields
        assert "OR 1=1" not in body, fields  # never echoed
    assert orders_count(town) == before
    assert post(town, "/r/s/<script>/order", {f"qty:{rw.BREAD}": "1"}, cookie=me).status == 404


def test_guessed_order_ids_and_a_replayed_session_open_nothing(town: Town) -> None:
    me = log_in(town, "13800000043")
    mine = order_id(order(town, me))
    for guess in (str(mine + 1), "0", "99999999999999999999", "-1", "1;DROP", "%2e%2e"):
        r = post(town, f"/r/orders/{guess}/cancel", {}, cookie=me)
        assert r.status == 404, (guess, r.status)
    # Logged out: the same cookie sent again is nobody, and cancels nothing.
    assert post(town, "/r/logout", {}, cookie=me).status == 303
    assert get(town, "/r/orders", me).status == 303
    assert post(town, f"/r/orders/{mine}/cancel", {}, cookie=me).status == 303  # to login
    with Database.open(town.world.db_path) as db:
        assert retail.get_order(db.conn, "store-001", mine)["state"] == "open"  # type: ignore[index]


def test_a_code_flood_rotating_forwarded_headers_is_still_one_address(town: Town) -> None:
    """The limit per address counts the connection's peer: headers a client writes itself
    (X-Forwarded-For, X-Real-IP) change nothing."""
    sent = 0
    for n in range(residents.CODES_PER_CLIENT + 3):
        r = request(town.url + "/r/login/code", "POST",
                    data=f"phone=1350000{n:04d}".encode(),
                    headers={"Content-Type": "application/x-www-form-urlencoded",
                             "Origin": town.url, "X-Forwarded-For": f"10.9.{n}.1",
                             "X-Real-IP": f"10.8.{n}.1"})
        sent += r.status == 200
        assert r.status in (200, 429)
    assert sent == residents.CODES_PER_CLIENT == len(town.sender.sent)
