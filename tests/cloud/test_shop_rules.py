"""The resident rules on SQLite and PostgreSQL: store profiles and their upgrade, opening
hours on the store's clock, nearest stores, the cold chain per fridge, what a store
promises (and the next wave's place), pickup hours and their capacity, placing and paying."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest
import resident_world as rw

from cloud_gateway import geo, retail, shop, stores
from cloud_gateway.db import Database


@pytest.fixture
def world(tmp_path: Path, db_target: Path | str) -> rw.World:
    return rw.build(tmp_path, db_target=db_target)


def test_profiles_keep_what_residents_need(world: rw.World) -> None:
    with Database.open(world.db_path) as db:
        p = stores.get(db.conn, "store-001")
        assert (p.name, p.district, p.hours, p.pickup, p.delivery_radius_m,
                p.slot_capacity) == ("幸福路店", "黄浦区", "07:00-22:00", True, 2000, 1)
        assert p.point == rw.north(300)
        with db.transaction() as conn:  # change one field: the others stay
            stores.set_profile(conn, "store-001", rw.NOW, pickup=False)
        assert stores.get(db.conn, "store-001").pickup is False
        assert stores.get(db.conn, "store-001").hours == "07:00-22:00"
        for bad in ({"hours": "7-22"}, {"hours": "22:00-22:00"}, {"hours": "08:00-24:30"},
                    {"delivery_radius_m": -1}, {"slot_capacity": 0},
                    {"position": geo.Point(95, 0)}, {"address": "x" * 121}):
            with pytest.raises(stores.ProfileError), db.transaction() as conn:
                stores.set_profile(conn, "store-001", rw.NOW, **bad)  # type: ignore[arg-type]
        assert stores.get(db.conn, "store-404").point is None  # no profile: not shown


def test_an_older_profile_table_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE store_profiles (store TEXT PRIMARY KEY, name TEXT NOT NULL,"
                     " tz TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL)")
        conn.execute("INSERT INTO store_profiles VALUES ('store-009', '老店', 'Asia/Shanghai', 0)")
    with Database.open(path) as db:
        old = stores.get(db.conn, "store-009")
        assert (old.name, old.point, old.pickup, old.delivery_radius_m) == ("老店", None, True, 0)
        with db.transaction() as conn:
            stores.set_profile(conn, "store-009", 1.0, position=geo.Point(31.2, 121.4),
                               hours="18:00-02:00")
        assert [p.store for p in stores.located(db.conn)] == ["store-009"]


def test_opening_hours_on_the_stores_clock_across_midnight() -> None:
    p = stores.Profile("s", "s", "Asia/Shanghai", hours="18:00-02:00")
    at = rw.NOW  # 10:00 in Shanghai, 02:00 UTC
    assert stores.open_at(p, at) is False
    assert stores.open_at(p, at + 9 * 3600) is True  # 19:00
    assert stores.open_at(p, at + 15 * 3600 + 59 * 60) is True  # 01:59
    assert stores.open_at(p, at + 16 * 3600) is False  # 02:00
    assert stores.open_at(stores.Profile("s", "s", "Europe/London", hours="08:00-20:00"),
                          at) is False  # 02:00 in London
    assert stores.open_at(stores.Profile("s", "s", "Asia/Shanghai"), at) is None


def test_nearest_stores_equal_brute_force(tmp_path: Path) -> None:
    """A dense town and a scattered country; points near, between and far from the stores."""
    rng = random.Random(15)
    with Database.open(tmp_path / "many.sqlite") as db:
        with db.transaction() as conn:
            for n in range(400):
                where = (geo.Point(31.0 + rng.random() * 0.5, 121.2 + rng.random() * 0.5)
                         if n < 300 else geo.Point(20 + rng.random() * 25,
                                                   100 + rng.random() * 25))
                stores.set_profile(conn, f"s-{n}", 0.0, position=where)
        located = stores.located(db.conn)
        for k in range(300):
            here = (geo.Point(31.0 + rng.random() * 0.5, 121.2 + rng.random() * 0.5)
                    if k % 2 else geo.Point(-60 + rng.random() * 140, -180 + rng.random() * 360))
            limit = rng.randint(1, 30)
            got = [n.profile.store for n in shop.nearby(db.conn, here, 0.0, limit=limit)]
            brute = sorted(located, key=lambda p: (geo.distance_m(here, p.point), p.store))  # type: ignore[arg-type]
            assert got == [p.store for p in brute[:limit]], (here, limit)


def test_the_cold_chain_is_judged_per_fridge(world: rw.World) -> None:
    with Database.open(world.db_path) as db:
        assert shop.cold_chain(db.conn, "store-001", rw.NOW).state == "all"
        assert shop.cold_chain(db.conn, "store-003", rw.NOW).state == "none"  # alarming
        # Silent for longer than FRIDGE_SILENT_S: offline, no chilled item.
        later = rw.NOW + shop.FRIDGE_SILENT_S
        assert shop.cold_chain(db.conn, "store-001", later).state == "none"
        offered = {o.item for o in shop.promise(db.conn, "store-001", later, shop.NoWaves())}
        assert offered == {rw.BREAD}
        # A second fridge in alarm: items placed in fridge-1 stay, unplaced ones go.
        rw.fridge_reports(db, "store-001", rw.NOW, seq=2)
        ingest_fridge2(db)
        cold = shop.cold_chain(db.conn, "store-001", rw.NOW)
        assert cold.state == "some" and cold.fridges == {"fridge-1": True, "fridge-2": False}
        with db.transaction() as conn:
            items = [{**i, "location": {"fridge": "fridge-1", "lane": 0, "unit_grams": 1030}}
                     if i["item"] == rw.MILK else i for i in rw.ITEMS]
            retail.put_catalogue(conn, "store-001",
                                 retail.parse_catalogue_items("store-001", items), rw.NOW, "t",
                                 rw.PRICES)
        offered = {o.item for o in shop.promise(db.conn, "store-001", rw.NOW, shop.NoWaves())}
        assert offered == {rw.MILK, rw.BREAD}  # eggs: fridge unknown, not promised


def ingest_fridge2(db: Database) -> None:
    from cloud_gateway.ingest import ingest
    from xiaodian.wire.payloads import batch_payload, reading_record

    rec = reading_record(1, 1, 60_000, rw.NOW - 30, True, [(0, "ok", 9.0)])
    ingest(db, "xd/v1/store-001/telemetry",
           batch_payload("readings", "store-001", "fridge-2", 1, [rec]), "w-1", rw.NOW - 30)
    rw.raise_critical(db, "store-001", rw.NOW - 20)
    db.conn.execute("UPDATE alerts SET fridge = 'fridge-2' WHERE store = 'store-001'")


class OneWave:
    """A next wave that can bring 4 eggs until its cutoff (the order cycles' place)."""

    def next_wave(self, conn: object, store: str, now: float) -> shop.Wave | None:
        return shop.Wave(cutoff=rw.NOW + 300, arrives=rw.NOW + 86_400, presale={rw.EGGS: 4})


def test_the_promise_nets_reservations_and_leaves_room_for_the_next_wave(
        world: rw.World) -> None:
    with Database.open(world.db_path) as db:
        with db.transaction() as conn:
            shop.place(conn, request("store-002", ((rw.MILK, 3),)), rw.NOW, shop.NoWaves(),
                       shop.PayAtPickup())
        offers = {o.item: o for o in shop.promise(db.conn, "store-002", rw.NOW, shop.NoWaves())}
        assert offers[rw.MILK].available == 2 and offers[rw.MILK].price_fen == 1250
        waved = {o.item: o for o in shop.promise(db.conn, "store-002", rw.NOW, OneWave())}
        assert (waved[rw.EGGS].presale, waved[rw.EGGS].cutoff) == (4, rw.NOW + 300)
        after = {o.item: o for o in shop.promise(db.conn, "store-002", rw.NOW + 300, OneWave())}
        assert after[rw.EGGS].presale == 0  # past the cutoff the wave promises nothing
        with db.transaction() as conn:  # no price: not offered
            shop.set_price(conn, "store-002", rw.BREAD, None, rw.NOW)
        assert rw.BREAD not in {o.item for o in shop.promise(db.conn, "store-002", rw.NOW,
                                                               shop.NoWaves())}


def request(store: str, lines: tuple[tuple[str, int], ...], hour: int = 0,
            resident: int = 1) -> shop.Request:
    start = rw.NOW // 3600 * 3600 + 3600 * (1 + hour)
    return shop.Request(store, resident, "****0001", shop.Cart(lines), "pickup", start)


def test_pickup_hours_fill_up_and_free_again(world: rw.World) -> None:
    with Database.open(world.db_path) as db:
        p = stores.get(db.conn, "store-001")
        hours = shop.windows(p, rw.NOW)
        assert len(hours) == shop.MAX_SLOTS and hours[0].start == rw.NOW + 3600
        # 07:00-22:00: the last hour of the day is 21:00-22:00, then tomorrow from 07:00.
        evening = shop.windows(p, rw.NOW + 10 * 3600)  # at 20:00
        assert [w.start - rw.NOW for w in evening[:2]] == [11 * 3600, 21 * 3600]
        with db.transaction() as conn:
            placed = shop.place(conn, request("store-001", ((rw.BREAD, 1),)), rw.NOW,
                                shop.NoWaves(), shop.PayAtPickup())
        assert placed.amount_fen == 890 and placed.payment.method == "pay_at_pickup"
        with pytest.raises(shop.ShopError) as full, db.transaction() as conn:
            shop.place(conn, request("store-001", ((rw.BREAD, 1),), resident=2), rw.NOW,
                       shop.NoWaves(), shop.PayAtPickup())
        assert full.value.kind == "full" and not full.value.short
        with db.transaction() as conn:
            retail.cancel_order(conn, "store-001", placed.order.id, "test", rw.NOW, "t")
            shop.place(conn, request("store-001", ((rw.BREAD, 1),), resident=2), rw.NOW,
                       shop.NoWaves(), shop.PayAtPickup())
        nxt = shop.next_store(db.conn, request("store-001", ((rw.BREAD, 1),)), rw.HOME,
                              rw.NOW, shop.NoWaves())
        assert nxt is not None and nxt[0].store == "store-002"


def test_store_set_and_price_from_the_command_line(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    db = tmp_path / "cli.sqlite"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "xiaodian", "cloud", *args, "--db", str(db)],
                              capture_output=True, text=True, timeout=30)

    wgs = geo.gcj02_to_wgs84(rw.HOME.lat, rw.HOME.lon)  # read off a GPS
    got = cli("store", "set", "store-007", "--name", "幸福路店", "--address", "幸福路 1 号",
              "--district", "黄浦区", "--lat", repr(wgs.lat), "--lon", repr(wgs.lon),
              "--datum", "wgs84", "--hours", "07:00-22:00", "--pickup", "yes",
              "--delivery-radius", "1500", "--capacity", "12")
    assert got.returncode == 0, got.stderr
    shown = json.loads(got.stdout)
    # Stored in GCJ-02: the GPS reading converted once, as it entered.
    assert shown["lat"] == pytest.approx(rw.HOME.lat, abs=1e-7)
    assert shown["lon"] == pytest.approx(rw.HOME.lon, abs=1e-7)
    assert (shown["hours"], shown["delivery_radius_m"], shown["slot_capacity"]) == (
        "07:00-22:00", 1500, 12)
    bad = cli("store", "set", "store-007", "--lat", "31.2")
    assert bad.returncode == 1 and "both --lat and --lon" in bad.stderr
    bad = cli("store", "set", "store-007", "--hours", "7am-10pm")
    assert bad.returncode == 1 and "HH:MM-HH:MM" in bad.stderr
    no_catalogue = cli("store", "price", "store-007", rw.MILK, "1250")
    assert no_catalogue.returncode == 1 and "catalogue" in no_catalogue.stderr
    with Database.open(db) as d, d.transaction() as conn:
        retail.put_catalogue(conn, "store-007", retail.parse_catalogue_items(
            "store-007", rw.ITEMS), rw.NOW, "test")
    assert cli("store", "price", "store-007", rw.MILK, "1250").returncode == 0
    assert cli("store", "price", "store-007", rw.MILK, "0").returncode == 1
    assert cli("store", "price", "store-007", "milk", "100").returncode == 1
    with Database.open(db) as d:
        assert shop.prices(d.conn, "store-007") == {rw.MILK: 1250}
