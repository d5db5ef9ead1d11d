"""The resident routes on a real server and database, as a hostile world would use them:
one-time codes flooded, guessed and replayed; another resident's order; script in every
free-text field; cross-site posts; delivery outside the radius; stock refusals that offer
the next store; cancelling before and after the pickup hour; staff pages stay shut."""

from __future__ import annotations

import re

import resident_world as rw
from resident_world import Town, first_hour, get, log_in, order, order_id, post

from cloud_gateway import residents, retail
from cloud_gateway.db import Database
from devstack.testkit.http_client import request


def test_codes_are_rate_limited_per_number_and_per_address(town: Town) -> None:
    for _ in range(residents.CODES_PER_PHONE):
        assert post(town, "/r/login/code", {"phone": "13900000001"}).status == 200
    flooded = post(town, "/r/login/code", {"phone": "13900000001"})
    assert flooded.status == 429 and "验证码请求太频繁" in flooded.body.decode()
    assert len(town.sender.sent) == residents.CODES_PER_PHONE  # nothing more was sent
    # One address asking for many numbers is stopped too.
    for n in range(residents.CODES_PER_CLIENT - residents.CODES_PER_PHONE):
        assert post(town, "/r/login/code", {"phone": f"1370000{n:04d}"}).status == 200
    assert post(town, "/r/login/code", {"phone": "13600000000"}).status == 429
    # Later the number may ask again.
    town.world.clock.t += residents.CLIENT_WINDOW_S + 1
    assert post(town, "/r/login/code", {"phone": "13900000001"}).status == 200


def test_guessed_replayed_and_stale_codes_open_nothing(town: Town) -> None:
    phone = "13800000002"
    post(town, "/r/login/code", {"phone": phone})
    code = town.sender.sent[-1][1]
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(residents.MAX_ATTEMPTS):
        r = post(town, "/r/login/verify", {"phone": phone, "code": wrong})
        assert r.status == 401 and "Set-Cookie" not in r.headers
    # Worn out by guesses: the right code no longer works either.
    assert post(town, "/r/login/verify", {"phone": phone, "code": code}).status == 401
    town.world.clock.t += residents.PHONE_WINDOW_S
    post(town, "/r/login/code", {"phone": phone})
    code = town.sender.sent[-1][1]
    assert post(town, "/r/login/verify", {"phone": phone, "code": code}).status == 303
    replay = post(town, "/r/login/verify", {"phone": phone, "code": code})
    assert replay.status == 401  # used once
    post(town, "/r/login/code", {"phone": phone})
    town.world.clock.t += residents.CODE_TTL_S + 1
    stale = post(town, "/r/login/verify", {"phone": phone, "code": town.sender.sent[-1][1]})
    assert stale.status == 401
    for bad in ("12345", "１２３４５６", "' OR 1=1 --"):
        assert post(town, "/r/login/verify", {"phone": phone, "code": bad}).status == 401
    assert post(town, "/r/login/code", {"phone": "12345"}).status == 400


def test_a_resident_sees_and_cancels_only_their_own_orders(town: Town) -> None:
    alice, bob = log_in(town, "13800000003"), log_in(town, "13800000004")
    mine = order_id(order(town, alice))
    assert f'id="order-{mine}"' in get(town, "/r/orders", alice).body.decode()
    theirs = get(town, "/r/orders", bob).body.decode()
    assert f'id="order-{mine}"' not in theirs and "还没有订单" in theirs
    assert post(town, f"/r/orders/{mine}/cancel", {}, cookie=bob).status == 404
    assert post(town, f"/r/orders/{mine}/cancel", {}).status == 303  # to the login
    with Database.open(town.world.db_path) as db:
        assert retail.get_order(db.conn, "store-001", mine)["state"] == "open"  # type: ignore[index]
    assert get(town, "/r/orders").headers["Location"].startswith("/r/login")
    # A forged or stale cookie is nobody.
    assert get(town, "/r/orders", "xd_resident=forged").status == 303


def test_cancel_before_the_hour_releases_the_goods_and_not_after(town: Town) -> None:
    me = log_in(town, "13800000005")
    first, second = order_id(order(town, me)), order_id(order(
        town, me, window=str(int(first_hour()) + 3600)))
    with Database.open(town.world.db_path) as db:
        before = retail.availability(db.conn, "store-001", town.world.clock())[rw.BREAD]
    assert before["reserved"] == 2
    assert post(town, f"/r/orders/{first}/cancel", {}, cookie=me).status == 303
    with Database.open(town.world.db_path) as db:
        after = retail.availability(db.conn, "store-001", town.world.clock())[rw.BREAD]
        assert retail.get_order(db.conn, "store-001", first)["state"] == "cancelled"  # type: ignore[index]
    assert after["reserved"] == 1
    town.world.clock.t = float(first_hour()) + 3600 + 60  # the second's hour has begun
    late = post(town, f"/r/orders/{second}/cancel", {}, cookie=me)
    assert late.status == 409 and "已无法取消" in late.body.decode()


def test_script_in_every_free_text_field_stays_text(town: Town) -> None:
    me = log_in(town, "13800000006")
    evil = "<script>alert(1)</script>"
    got = order(town, me, mode="delivery", address=f"幸福路1号{evil}")
    oid = order_id(got)
    page = get(town, "/r/orders", me).body.decode()
    assert evil not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert f'id="order-{oid}"' in page
    # In the login's fields and the query too.
    r = post(town, "/r/login/code", {"phone": evil, "next": "javascript:alert(1)"})
    assert r.status == 400 and evil not in r.body.decode()
    assert 'value="/r"' in r.body.decode()  # `next` is a path on this site or nothing
    r = get(town, "/r?district=" + evil)
    assert r.status == 200 and evil not in r.body.decode()


def test_cross_site_posts_are_refused(town: Town) -> None:
    me = log_in(town, "13800000007")
    assert order(town, me).status == 303
    assert post(town, "/r/s/store-001/order", {f"qty:{rw.BREAD}": "1"}, cookie=me,
                origin="https://evil.example").status == 403
    assert post(town, "/r/login/code", {"phone": "13800000008"},
                origin="https://evil.example").status == 403


def test_delivery_only_inside_the_radius(town: Town) -> None:
    me = log_in(town, "13800000009")
    far = rw.north(5000)  # 4.7 km from store-001, which delivers within 2 km
    r = order(town, me, mode="delivery", address="远方路 9 号", lat=f"{far.lat:.6f}",
              lon=f"{far.lon:.6f}")
    assert r.status == 409 and "不在本店的配送范围内" in r.body.decode()
    r = order(town, me, mode="delivery", address="")
    assert r.status == 400 and "请填写送货地址" in r.body.decode()
    oid = order_id(order(town, me, mode="delivery", address="幸福路 8 号 302"))
    page = get(town, "/r/orders", me).body.decode()
    assert "送至：幸福路 8 号 302" in page
    assert re.search(rf'id="order-{oid}".*?class="code"', page, re.S) is None  # no code


def test_short_stock_is_refused_and_the_next_store_offered(town: Town) -> None:
    me = log_in(town, "13800000010")
    r = order(town, me, **{f"qty:{rw.MILK}": "6"})  # 5 on hand
    body = r.body.decode()
    assert r.status == 409 and "本店无法保证供应购物车里的全部商品" in body
    assert "库存不足：鲜牛奶 1升" in body
    # store-002 (900 m) has 5 too: nobody near can take 6 chilled; store-003 has no chill.
    assert "附近暂时没有其他小店能接这个订单" in body
    r = order(town, me, **{f"qty:{rw.MILK}": "5", f"qty:{rw.BREAD}": "0"})
    order_id(r)
    again = order(town, me, **{f"qty:{rw.MILK}": "1", f"qty:{rw.BREAD}": "0"},
                  window=str(int(first_hour()) + 3600))
    assert again.status == 409 and "人民路店" in again.body.decode()
    assert "/r/s/store-002?" in again.body.decode()


def test_resident_sessions_open_no_staff_page(town: Town) -> None:
    me = log_in(town, "13800000011")
    assert request(town.url + "/api/stores", headers={"Cookie": me}).status == 401
    owner = request(town.url + "/owner", headers={"Cookie": me, "Accept": "text/html"})
    assert owner.status == 303 and owner.headers["Location"].startswith("/login")


def test_the_timeline_follows_the_store_to_picked_up(town: Town) -> None:
    from cloud_gateway.retail_tables import set_state

    me = log_in(town, "13800000012")
    oid = order_id(order(town, me))

    def card() -> str:
        page = get(town, "/r/orders", me).body.decode()
        m = re.search(rf'<article class="card order" id="order-{oid}".*?</article>', page, re.S)
        assert m is not None
        return m[0]

    placed = card()
    assert 'data-state="open"' in placed and 'class="code"' in placed and "取消这个订单" in placed
    with Database.open(town.world.db_path) as db, db.transaction() as conn:
        set_state(conn, oid, "open", "received", rw.NOW + 5, "store", None)
    received = card()
    assert re.search(r'<li class="done">小店已收到订单 · 10:00</li>', received)
    town.world.clock.t = float(first_hour()) + 600
    with Database.open(town.world.db_path) as db, db.transaction() as conn:
        set_state(conn, oid, "received", "picked_up", town.world.clock.t, "store", None)
    done = card()
    assert "已取货 · 11:10" in done
    assert 'class="code"' not in done and "取消这个订单" not in done  # nothing left to show


def test_odd_queries_get_a_page_not_an_error(town: Town) -> None:
    for query in ("lat=abc&lon=1", "lat=95&lon=121", "lat=31&lon=121&datum=bd09",
                  "lat=nan&lon=inf"):
        r = get(town, "/r?" + query)
        assert r.status == 200 and "正在获取您的位置" in r.body.decode(), query
    got = get(town, "/r?lat=31.2304&lon=121.4737&datum=gcj02").body.decode()
    assert got.index("store-001") < got.index("store-002") < got.index("store-003")
    assert get(town, "/r/s/store-404").status == 404
    assert get(town, "/r/s/..%2Fowner").status == 404
    assert get(town, "/r/s/store-001?cart=" + "x*1," * 300).status == 200
