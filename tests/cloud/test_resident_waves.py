"""Pre-sale on the resident routes, against the real supply cycle (supply/waves.py) on a
real server and database (SQLite and PostgreSQL): what the next delivery can bring, with
the cutoff counted down on the store's clock; a pre-order rides the wave; cancelling before
the cutoff only; a store whose wave is full refuses with the next store that has room; the
timeline follows the wave to the counter."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import resident_world as rw
from resident_world import Town, get, log_in, order_id, post

from cloud_gateway import retail
from cloud_gateway.db import Database
from cloud_gateway.retail_tables import set_state
from cloud_gateway.shop_waves import PRESALE_MAX, SupplyWaves
from cloud_gateway.supply import cutoff, dispatch, settings, waves
from devstack.testkit.http_client import Response

WAVE = date(2026, 12, 7)  # rw.NOW is 10:00 in Shanghai: today's wave, cut off at 23:00
CUTOFF = rw.NOW + 13 * 3600
OPENS = rw.NOW + 22 * 3600  # 08:00 on the delivery day
CLOSES = rw.NOW + 35 * 3600  # 21:00


def supply(db_path: Path | str, pickups: dict[str, int]) -> None:
    """store-001 and store-002 in zone north (store-003 without supply settings): milk
    chilled at 1 L a piece, bread ambient; fridge shares of 5 L (store-001) and 50 L."""
    with Database.open(db_path) as db, db.transaction() as conn:
        for store, fridge in (("store-001", 10.0), ("store-002", 100.0)):
            settings.set_store(conn, store, rw.NOW, zone="north", fridge_capacity=fridge,
                               pickup_capacity=pickups.get(store, 10))
            # Their terminals online: the cutoff sends chilled goods only to those.
            conn.execute("INSERT INTO store_state (store, online, boot, wall, agent_version,"
                         " devices, updated_at) VALUES (?, TRUE, 1, ?, 't', '[]', ?)",
                         (store, rw.NOW, rw.NOW))
        common = {"case_pack": 12, "case_only": False, "cost": 500, "price": 900,
                  "unit_lot": 1, "shelf_life_days": 5}
        settings.set_item(conn, rw.MILK, rw.NOW, name="鲜牛奶", unit_volume=1.0, chilled=True,
                          **common)  # type: ignore[arg-type]
        settings.set_item(conn, rw.BREAD, rw.NOW, name="面包", unit_volume=2.0, chilled=False,
                          **common)  # type: ignore[arg-type]


def make_town(tmp_path: Path, pickups: dict[str, int],
              db_target: Path | str | None = None) -> Iterator[Town]:
    world = rw.build(tmp_path, stock={"store-001": 1, "store-002": 1}, db_target=db_target)
    supply(world.db_path, pickups)
    with rw.serve(world) as town:
        yield town


@pytest.fixture
def town(tmp_path: Path, db_target: Path | str) -> Iterator[Town]:
    """On SQLite and on PostgreSQL (conftest.db_target)."""
    yield from make_town(tmp_path, {"store-001": 1}, db_target)


def preorder(town: Town, cookie: str, store: str = "store-001", **qty: str) -> Response:
    body = {f"qty:{rw.MILK}": qty.get("milk", "2"), f"qty:{rw.BREAD}": qty.get("bread", "0"),
            "mode": "pickup", "window": "wave", "lat": f"{rw.HOME.lat:.6f}",
            "lon": f"{rw.HOME.lon:.6f}"}
    return post(town, f"/r/s/{store}/order", body, cookie=cookie)


def card(town: Town, cookie: str, oid: int) -> str:
    page = get(town, "/r/orders", cookie).body.decode()
    m = re.search(rf'<article class="card order" id="order-{oid}".*?</article>', page, re.S)
    assert m is not None
    return m[0]


def test_the_store_page_promises_the_next_wave_with_a_countdown(town: Town) -> None:
    page = get(town, "/r/s/store-001").body.decode()
    # On hand: 1 of each; the wave: milk up to the fridge share (5 L), bread up to the cap.
    offer = re.search(rf'data-item="{rw.MILK}".*?inputmode', page, re.S)
    assert offer is not None and "可订 1 件" in offer[0] and "下一批到货最多 5 件" in offer[0]
    assert 'max="5"' in offer[0]
    bread = re.search(rf'data-item="{rw.BREAD}".*?inputmode', page, re.S)
    assert bread is not None and f"下一批到货最多 {PRESALE_MAX} 件" in bread[0]
    # The cutoff on the store's clock, 13 hours away, and the delivery day's pickup window.
    assert f'data-cutoff="{int(CUTOFF)}"' in page
    assert "截单时间：今天 23:00（小店当地时间）" in page and "还剩 13:00:00" in page
    assert re.search(r'<option value="wave"[^>]*>预订，随下一批到货：明天 08:00–21:00', page)
    # store-003 has no supply settings: on hand only, no wave, no countdown.
    other = get(town, "/r/s/store-003").body.decode()
    assert 'id="wave"' not in other and 'value="wave"' not in other
    # The wave is judged on the zone's cycle: once cut off, nothing is pre-sold.
    town.world.clock.t = CUTOFF + 60
    later = get(town, "/r/s/store-001").body.decode()
    assert f'data-cutoff="{int(CUTOFF + 86400)}"' in later  # tomorrow's wave now


def test_a_pre_order_rides_the_wave_and_cancels_only_before_the_cutoff(town: Town) -> None:
    me = log_in(town, "13800000021")
    oid = order_id(preorder(town, me, milk="3"))  # more than the 1 on hand: the wave's
    with Database.open(town.world.db_path) as db:
        got = retail.get_order(db.conn, "store-001", oid)
        assert got is not None and got["state"] == "preorder"
        assert got["wave"]["wave"] == WAVE.isoformat()
        assert retail.availability(db.conn, "store-001", rw.NOW, [rw.MILK])[rw.MILK][
            "reserved"] == 0  # a pre-order holds nothing on hand
        window = db.conn.execute("SELECT window_start, window_end, amount_fen FROM"
                                 " resident_orders WHERE order_id = ?", (oid,)).fetchone()
    assert (window[0], window[1], window[2]) == (OPENS, CLOSES, 3 * rw.PRICES[rw.MILK])
    c = card(town, me, oid)
    assert 'data-state="preorder"' in c and 'class="code"' not in c  # no code before it comes
    assert "随 12月8日周二 的到货" in c and "取消这个订单" in c and "截单前" in c
    # A pre-order cannot be delivered.
    me2 = log_in(town, "13800000022")
    r = post(town, "/r/s/store-002/order", {f"qty:{rw.MILK}": "1", "mode": "delivery",
                                            "window": "wave", "address": "幸福路 2 号",
                                            "lat": f"{rw.HOME.lat:.6f}",
                                            "lon": f"{rw.HOME.lon:.6f}"}, cookie=me2)
    assert r.status == 400 and "预订的商品须到店自取" in r.body.decode()
    # Cancel before the cutoff: it leaves the wave and frees its place.
    assert post(town, f"/r/orders/{oid}/cancel", {}, cookie=me).status == 303
    with Database.open(town.world.db_path) as db:
        assert waves.wave_of_order(db.conn, oid)["outcome"] == "cancelled"
    second = order_id(preorder(town, me))  # store-001's one pickup is free again
    town.world.clock.t = CUTOFF + 1
    late = post(town, f"/r/orders/{second}/cancel", {}, cookie=me)
    assert late.status == 409 and "截单" in late.body.decode()
    with Database.open(town.world.db_path) as db:
        assert retail.get_order(db.conn, "store-001", second)["state"] == "preorder"
    # Another resident's pre-order looks like no order at all.
    assert post(town, f"/r/orders/{second}/cancel", {}, cookie=me2).status == 404


def test_a_full_wave_refuses_and_offers_the_next_store_with_room(town: Town) -> None:
    first = log_in(town, "13800000023")
    order_id(preorder(town, first, milk="1"))  # store-001 takes one pre-order a wave
    page = get(town, "/r/s/store-001").body.decode()
    assert "本店下一批到货已满" in page and 'value="wave"' not in page  # never offered
    late = log_in(town, "13800000024")
    r = preorder(town, late, milk="2")  # from a page loaded before it filled up
    body = r.body.decode()
    assert r.status == 409 and "本店下一批到货已满" in body
    assert "人民路店" in body and "/r/s/store-002?" in body  # 900 m, room in its wave
    assert 'value="wave" id="wave-option" selected' not in body  # store-001's page: none
    order_id(preorder(town, late, store="store-002", milk="2"))
    # More of an item than the wave can promise is refused too.
    assert preorder(town, late, store="store-002", milk=str(PRESALE_MAX + 1)).status == 409


def test_the_timeline_follows_the_wave_to_the_counter(town: Town) -> None:
    me = log_in(town, "13800000025")
    oid = order_id(preorder(town, me, milk="1"))
    with Database.open(town.world.db_path) as db, db.transaction() as conn:
        cutoff.cutoff(conn, "north", WAVE, CUTOFF + 300, "test")
        assert waves.wave_of_order(conn, oid)["outcome"] == "held"  # type: ignore[index]
    town.world.clock.t = CUTOFF + 600
    c = card(town, me, oid)
    assert re.search(r'<li class="done">随 12月8日周二 的到货 · 23:05</li>', c)
    assert "取消这个订单" not in c  # past the cutoff
    with Database.open(town.world.db_path) as db, db.transaction() as conn:
        waves.advance(conn, "north", WAVE, "picked", OPENS - 7200)
        dispatch.dispatch(conn, "north", WAVE, OPENS - 3600)
        waves.advance(conn, "north", WAVE, "delivered", OPENS - 600)
        assert retail.get_order(conn, "store-001", oid)["state"] == "open"  # type: ignore[index]
        set_state(conn, oid, "open", "received", OPENS - 500, "store", None)
    town.world.clock.t = OPENS
    c = card(town, me, oid)
    assert '<li class="done">已到店 · 07:50</li>' in c
    assert '<li class="done">可以取货</li>' in c and 'class="code"' in c  # the QR code now
    with Database.open(town.world.db_path) as db, db.transaction() as conn:
        set_state(conn, oid, "received", "picked_up", OPENS + 60, "store", None)
    c = card(town, me, oid)
    assert "已取货 · 08:01" in c and 'class="code"' not in c


def test_the_wave_source_reads_only(town: Town) -> None:
    """Showing the store page creates no cycle row: only placing an order opens one."""
    with Database.open(town.world.db_path) as db:
        wave = SupplyWaves().next_wave(db.conn, "store-001", rw.NOW)
        assert wave is not None and wave.name == WAVE.isoformat()
        assert (wave.cutoff, wave.arrives, wave.until) == (CUTOFF, OPENS, CLOSES)
        assert db.conn.execute("SELECT COUNT(*) FROM supply_cycles").fetchone()[0] == 0


def test_a_pre_order_moved_at_the_cutoff_shows_its_new_store(town: Town) -> None:
    """store-001's fridge is alarming at the cutoff: the chilled pre-order goes whole to
    store-002 of the same zone, and the resident's page names that store, big."""
    me = log_in(town, "13800000026")
    oid = order_id(preorder(town, me, milk="1"))
    with Database.open(town.world.db_path) as db:
        rw.raise_critical(db, "store-001", CUTOFF - 60)
        with db.transaction() as conn:
            cutoff.cutoff(conn, "north", WAVE, CUTOFF + 300, "test")
            got = waves.wave_of_order(conn, oid)
    assert got is not None and (got["outcome"], got["store"]) == ("moved", "store-002")
    town.world.clock.t = CUTOFF + 600
    c = card(town, me, oid)
    assert "<h2>人民路店</h2>" in c and "已改到本区另一家小店" in c
    assert "取消这个订单" not in c
    late = post(town, f"/r/orders/{oid}/cancel", {}, cookie=me)
    assert late.status == 409 and "已截单" in late.body.decode()
