"""Prices are part of the cloud's catalogue item (SQLite and PostgreSQL): pushed with the
items through the API, kept in fen, shown in ¥ per locale to residents, never sent to the
store; a bad price is refused with a clear error and changes nothing; a database of
before (the `shop_prices` table) is migrated when it is opened."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import resident_world as rw

from cloud_gateway import retail, shop
from cloud_gateway.db import Database, schema
from cloud_gateway.web import Api, HttpServer
from devstack.testkit.http_client import request

TOKEN = "catalogue-price-test-token-0123456789"
STORE = "store-001"


@pytest.fixture
def town(tmp_path: Path, db_target: Path | str) -> Iterator[tuple[rw.World, str]]:
    world = rw.build(tmp_path, db_target=db_target)
    api = Api(world.db_path, api_token=TOKEN.encode(), pickup_keys_dir=world.keys,
              now=world.clock)
    with HttpServer(api, "127.0.0.1", 0) as srv:
        yield world, srv.url.rstrip("/")


def put(url: str, items: Any) -> tuple[int, dict[str, Any]]:
    r = request(f"{url}/api/stores/{STORE}/catalogue", "PUT",
                data=json.dumps({"items": items}).encode(),
                headers={"Authorization": f"Bearer {TOKEN}",
                         "Content-Type": "application/json"})
    return r.status, json.loads(r.body)


def priced(prices: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(it, **({"price_fen": prices[it["item"]]} if it["item"] in prices else {}))
            for it in rw.ITEMS]


def test_the_price_rides_with_the_catalogue_item_and_not_to_the_store(
        town: tuple[rw.World, str]) -> None:
    world, url = town
    status, body = put(url, priced({rw.MILK: 1390, rw.BREAD: 5}))
    assert status == 200 and (body["items"], body["priced"]) == (3, 2), body
    r = request(f"{url}/api/stores/{STORE}/catalogue",
                headers={"Authorization": f"Bearer {TOKEN}"})
    got = {i["item"]: i.get("price_fen") for i in json.loads(r.body)["items"]}
    assert got == {rw.MILK: 1390, rw.BREAD: 5, rw.EGGS: None}
    with Database.open(world.db_path) as db:
        payload = db.conn.execute(
            "SELECT payload FROM downlink WHERE store = ? AND kind = 'catalogue'"
            " ORDER BY id DESC LIMIT 1", (STORE,)).fetchone()[0]
        assert b"price" not in bytes(payload)  # the wire's catalogue has no price
        offers = {o.item: o.price_fen for o in shop.promise(db.conn, STORE, rw.NOW,
                                                            shop.NoWaves())}
    assert offers == {rw.MILK: 1390, rw.BREAD: 5}  # eggs: no price, not offered
    zh = request(f"{url}/r/s/{STORE}").body.decode()
    en = request(f"{url}/r/s/{STORE}?lang=en").body.decode()
    assert "¥13.90" in zh and "¥0.05" in zh and "CN¥13.90" not in zh
    assert "CN¥13.90" in en
    # One price changed in place: no new version for the store, the rest kept.
    with Database.open(world.db_path) as db:
        before = retail.catalogue(db.conn, STORE)
        with db.transaction() as conn:
            shop.set_price(conn, STORE, rw.EGGS, 1580, rw.NOW)
        after = retail.catalogue(db.conn, STORE)
        assert before is not None and after is not None
        assert after["version"] == before["version"]
        assert shop.prices(db.conn, STORE) == {rw.MILK: 1390, rw.BREAD: 5, rw.EGGS: 1580}
        with pytest.raises(shop.ShopError), db.transaction() as conn:
            shop.set_price(conn, STORE, "06900000000000", 100, rw.NOW)  # not in it


@pytest.mark.parametrize("bad", [12.5, 0, -100, True, "1250", 10_000_001, None])
def test_a_bad_price_is_refused_clearly_and_changes_nothing(
        town: tuple[rw.World, str], bad: Any) -> None:
    world, url = town
    with Database.open(world.db_path) as db:
        before = retail.catalogue(db.conn, STORE)
    status, body = put(url, priced({rw.MILK: 1250, rw.BREAD: bad}))
    assert status == 400
    if isinstance(bad, float):  # the API's JSON takes whole numbers only, and says so
        assert "12.5 is not a whole number" in body["error"]
    else:
        assert body["error"].startswith(
            "items[1].price_fen: a price in whole fen, 1 to 10000000 (1250 = ¥12.50); got")
    with Database.open(world.db_path) as db:
        assert retail.catalogue(db.conn, STORE) == before


def test_a_price_from_a_catalogue_file_says_how_to_write_it() -> None:
    """A TOML file (`xiaodian cloud catalogue push`) may hold a float: the error says what
    to write instead; the CLI prints it with the file's name."""
    with pytest.raises(retail.RetailError) as exc:
        retail.parse_catalogue(STORE, priced({rw.MILK: 12.5}))
    assert exc.value.message == ("items[0].price_fen: a price in whole fen, 1 to 10000000"
                                 " (1250 = ¥12.50); got '12.5' (write 1250 for ¥12.50)")
    items, prices = retail.parse_catalogue(STORE, priced({rw.MILK: 1250}))
    assert prices == {rw.MILK: 1250} and len(items) == 3


def test_a_database_of_before_gets_its_prices_folded_in(db_target: Path | str) -> None:
    items = retail.parse_catalogue_items(STORE, rw.ITEMS)
    with Database.open(db_target) as db, db.transaction() as conn:
        retail.put_catalogue(conn, STORE, items, rw.NOW, "test")
        retail.put_catalogue(conn, "store-002", items, rw.NOW, "test")
        # The table prices were kept in before: milk at store-001 already has one in the
        # catalogue (kept), eggs get theirs, a price for an item not listed is dropped.
        conn.execute("CREATE TABLE shop_prices (store TEXT NOT NULL, item TEXT NOT NULL,"
                     " price_fen BIGINT NOT NULL, updated_at DOUBLE PRECISION NOT NULL,"
                     " PRIMARY KEY (store, item))")
        for store, item, fen in ((STORE, rw.EGGS, 1580), (STORE, "06900000000000", 100),
                                 ("store-002", rw.BREAD, 890), ("store-009", rw.MILK, 1)):
            conn.execute("INSERT INTO shop_prices VALUES (?, ?, ?, 0)", (store, item, fen))
        retail.set_price(conn, STORE, rw.MILK, 1300, rw.NOW)
    schema._pg_ready.discard(str(db_target))  # this process opens it as a new one would
    with Database.open(db_target) as db:
        assert shop.prices(db.conn, STORE) == {rw.MILK: 1300, rw.EGGS: 1580}
        assert shop.prices(db.conn, "store-002") == {rw.BREAD: 890}
        assert retail.catalogue(db.conn, STORE)["version"] == 1  # type: ignore[index]
        from cloud_gateway import sql
        assert sql.columns(db.conn, "shop_prices") == set()  # gone: folded once
