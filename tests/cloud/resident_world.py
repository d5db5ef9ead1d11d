"""A small town for the resident tests: three stores in Shanghai on a real database, with
catalogues, prices, stock from their ledgers, fridges that report (one alarming), pickup
keys, and a clock the tests move. Positions are GCJ-02, as the cloud stores them.

`serve(world)` puts the cloud's HTTP server on it (one-time codes kept by a FakeSender);
`post`, `get`, `log_in`, `order` and `order_id` use the resident routes as a phone's
browser does."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from cloud_gateway import geo, retail, shop, stores
from cloud_gateway.db import Database
from cloud_gateway.ingest import ingest
from cloud_gateway.web import Api, HttpServer
from devstack.testkit.http_client import Response, request
from xiaodian.pki import make_pickup_key
from xiaodian.wire import retail as contract
from xiaodian.wire.payloads import batch_payload, event_record, reading_record

# 2026-12-07 10:00 in Shanghai (02:00 UTC): the stores are open.
NOW = 1_796_608_800.0
MILK = "06901234567892"
BREAD = "06901234567809"
EGGS = "06901234567816"
HOME = geo.Point(31.2304, 121.4737)  # where the resident is (GCJ-02)
# store -> (name, district, metres north of HOME, hours, capacity, fridge alarming)
TOWN = {
    "store-001": ("幸福路店", "黄浦区", 300, "07:00-22:00", 1, False),
    "store-002": ("人民路店", "黄浦区", 900, "00:00-24:00", 20, False),
    "store-003": ("滨江店", "浦东新区", 2500, "08:00-20:00", 20, True),
}
ITEMS = [
    {"item": MILK, "name": "鲜牛奶 1升", "unit": "piece", "shelf_life_days": 7,
     "storage": "chilled"},
    {"item": BREAD, "name": "全麦面包", "unit": "piece", "shelf_life_days": 3,
     "storage": "ambient"},
    {"item": EGGS, "name": "鸡蛋 6枚", "unit": "piece", "shelf_life_days": 21,
     "storage": "chilled"},
]
PRICES = {MILK: 1250, BREAD: 890, EGGS: 1580}


@dataclass
class Clock:
    t: float = NOW

    def __call__(self) -> float:
        return self.t


@dataclass
class World:
    db_path: Path | str  # a SQLite file or a PostgreSQL URL
    keys: Path
    clock: Clock = field(default_factory=Clock)


def north(metres: float) -> geo.Point:
    return geo.Point(HOME.lat + metres / 111_195.0, HOME.lon)


def build(tmp: Path, stock: dict[str, int] | None = None,
          db_target: Path | str | None = None) -> World:
    """The town; `stock` is each store's pieces of every item (default 5)."""
    world = World(db_target or tmp / "cloud.sqlite", tmp / "pki" / "pickup")
    with Database.open(world.db_path) as db:
        for n, (store, (name, district, m, hours, cap, alarming)) in enumerate(TOWN.items()):
            make_pickup_key(tmp / "pki", store)
            with db.transaction() as conn:
                stores.set_profile(conn, store, NOW, name=name, tz="Asia/Shanghai",
                                   address=f"{district}{name[:3]}{n + 1}号",
                                   district=district, position=north(m), hours=hours,
                                   pickup=True, delivery_radius_m=2000, slot_capacity=cap)
                retail.put_catalogue(conn, store, retail.parse_catalogue_items(store, ITEMS),
                                     NOW - 3600, "test")
                for item, fen in PRICES.items():
                    shop.set_price(conn, store, item, fen, NOW)
            qty = (stock or {}).get(store, 5)
            moves = [event_record(i + 1, "stock", None, None, NOW - 600 + i, True,
                                  contract.movement_data(contract.Movement(
                                      uuid.uuid4().hex, "delivery", it["item"], qty)))
                     for i, it in enumerate(ITEMS)]
            ingest(db, f"xd/v1/{store}/events",
                   batch_payload("events", store, "ledger", 1, moves), "w-1", NOW - 500)
            fridge_reports(db, store, NOW - 60)
            if alarming:
                raise_critical(db, store, NOW - 120)
    return world


def fridge_reports(db: Database, store: str, at: float, seq: int = 1) -> None:
    rec = reading_record(seq, seq, 60_000 * seq, at, True, [(0, "ok", 3.0), (1, "ok", 3.2)])
    ingest(db, f"xd/v1/{store}/telemetry", batch_payload("readings", store, "fridge-1", 1,
                                                          [rec]), "w-1", at)


def raise_critical(db: Database, store: str, at: float) -> None:
    data: dict[str, Any] = {"change": "raised", "id": f"fridge-1/warm/{round(at * 1000)}",
                            "fridge": "fridge-1", "rule": "warm", "severity": "critical",
                            "audience": "owner", "started_at": at - 900, "at": at,
                            "duration_s": 900, "peak_c": 9.0, "message": "warm",
                            "late": False, "data": {"reason": "warm", "value_c": 9.0,
                                                    "limit_c": 8.0, "for_s": 900}}
    ingest(db, f"xd/v1/{store}/alerts",
           batch_payload("events", store, "alerts", 1,
                         [event_record(1, "alert", None, None, at, True, data)]), "w-1", at)


# ---------------------------------------------------------------- the town served


@dataclass
class FakeSender:
    """Stands in for the SMS gateway: keeps the codes it was asked to send."""

    sent: list[tuple[str, str]] = field(default_factory=list)

    def send(self, phone: str, code: str) -> None:
        self.sent.append((phone, code))


@dataclass
class Town:
    world: World
    url: str  # the server's, without the trailing /
    sender: FakeSender


@contextmanager
def serve(world: World, **services: Any) -> Iterator[Town]:
    """The cloud's HTTP server on the town's database, pickup keys and clock; `services`:
    more of what the resident pages plug in (shop.Services: payment, waves)."""
    sender = FakeSender()
    api = Api(world.db_path, pickup_keys_dir=world.keys, now=world.clock,
              residents=shop.Services(sender=sender, **services))
    with HttpServer(api, "127.0.0.1", 0) as srv:
        yield Town(world, srv.url.rstrip("/"), sender)


def post(town: Town, path: str, fields: dict[str, str], *, cookie: str = "",
         origin: str | None = None) -> Response:
    """A form posted from the town's own pages (their Origin unless `origin` says)."""
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "Origin": origin if origin is not None else town.url}
    if cookie:
        headers["Cookie"] = cookie
    return request(town.url + path, "POST", data=urlencode(fields).encode(), headers=headers)


def get(town: Town, path: str, cookie: str = "") -> Response:
    return request(town.url + path, headers={"Cookie": cookie} if cookie else {})


def log_in(town: Town, phone: str) -> str:
    """A resident's session for `phone` through the one-time code: its cookie (name=value),
    checked to be HttpOnly, SameSite=Lax and for /r only."""
    assert post(town, "/r/login/code", {"phone": phone}).status == 200
    code = town.sender.sent[-1][1]
    r = post(town, "/r/login/verify", {"phone": phone, "code": code, "next": "/r/orders"})
    assert r.status == 303 and r.headers["Location"] == "/r/orders"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/r" in cookie
    return cookie.split(";")[0]


def first_hour() -> str:
    return str(int(NOW // 3600 * 3600 + 3600))  # 11:00 in Shanghai (UTC+8, whole hours)


def order(town: Town, cookie: str, store: str = "store-001", **fields: str) -> Response:
    """One bread for pickup in the first hour from home; `fields` change the form."""
    body = {f"qty:{BREAD}": "1", "mode": "pickup", "window": first_hour(),
            "lat": f"{HOME.lat:.6f}", "lon": f"{HOME.lon:.6f}", **fields}
    return post(town, f"/r/s/{store}/order", body, cookie=cookie)


def order_id(r: Response) -> int:
    """The id of the order a form placed (its redirect to my orders), failing otherwise."""
    assert r.status == 303, r.body.decode()[:500]
    m = re.fullmatch(r"/r/orders#order-(\d+)", r.headers["Location"])
    assert m is not None
    return int(m[1])
