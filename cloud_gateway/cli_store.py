"""`xiaodian cloud store set|show|price`: a store's profile (display name, time zone, and
what residents need to find it: address, position, hours, pickup, delivery radius, capacity)
and the prices residents see.

The zone is the one every page and export shows the store's times in (cloud_gateway/stores.py).
A position is stored in GCJ-02; `--datum wgs84` converts one read off a GPS (geo.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from . import sql
from .cli_read import _db_path, _db_source

if TYPE_CHECKING:  # imported lazily at run time: `xiaodian --help` stays quick
    from .stores import Profile


def add(cmds: Any) -> None:
    store = cmds.add_parser("store", help="a store's profile: display name and time zone")
    sub = store.add_subparsers(dest="store_command", required=True, metavar="COMMAND")
    put = sub.add_parser(
        "set", help="set a store's display name and/or time zone",
        description="Times on the owner page, the HACCP record and its CSV are shown in the"
                    " store's time zone (Asia/Shanghai unless set). Prints the profile as JSON.")
    put.add_argument("store", metavar="STORE")
    put.add_argument("--name", default=None, help="the name people see (e.g. 幸福路店)")
    put.add_argument("--tz", default=None, help="IANA time zone, e.g. Asia/Shanghai")
    put.add_argument("--address", default=None, help="street address residents read")
    put.add_argument("--district", default=None,
                     help="district residents choose from when they do not share their position")
    put.add_argument("--lat", type=float, default=None, help="latitude (with --lon)")
    put.add_argument("--lon", type=float, default=None, help="longitude (with --lat)")
    put.add_argument("--datum", choices=("gcj02", "wgs84"), default="gcj02",
                     help="the datum of --lat/--lon: gcj02 (Amap, Tencent, WeChat; stored as"
                          " is) or wgs84 (a GPS; converted)")
    put.add_argument("--hours", default=None,
                     help="opening hours in the store's zone, HH:MM-HH:MM (e.g. 07:00-22:00)")
    put.add_argument("--pickup", choices=("yes", "no"), default=None,
                     help="whether residents may pick orders up at the counter")
    put.add_argument("--delivery-radius", type=int, default=None, metavar="METRES",
                     help="how far the store delivers (0: no delivery)")
    put.add_argument("--capacity", type=int, default=None, metavar="ORDERS",
                     help="orders the store can hand over in one pickup hour")
    _db_source(put)
    put.set_defaults(func=_set)
    show = sub.add_parser("show", help="a store's profile as JSON (defaults if never set)")
    show.add_argument("store", metavar="STORE")
    _db_source(show)
    show.set_defaults(func=_show)
    price = sub.add_parser("price", help="the price residents see for an item (in fen)",
                           description="An item without a price is not offered to residents.")
    price.add_argument("store", metavar="STORE")
    price.add_argument("item", metavar="ITEM")
    price.add_argument("fen", type=int, metavar="FEN", help="price in fen (1250 = ¥12.50)")
    _db_source(price)
    price.set_defaults(func=_price)


def _print(p: Profile) -> None:
    print(json.dumps(p.as_dict(), ensure_ascii=False))


def _fail(message: str) -> int:
    print(f"xiaodian cloud store: {message}", file=sys.stderr)
    return 1


def _set(args: argparse.Namespace) -> int:
    from . import geo, stores
    from .db import Database

    given = {k: getattr(args, k) for k in ("name", "tz", "address", "district", "lat", "lon",
                                            "hours", "pickup", "delivery_radius", "capacity")}
    if all(v is None for v in given.values()):
        return _fail("nothing to set: give --name, --tz, --address, --lat/--lon, --hours ...")
    if (args.lat is None) != (args.lon is None):
        return _fail("a position needs both --lat and --lon")
    path = _db_path(args)
    try:
        position = (None if args.lat is None
                    else geo.to_stored(args.lat, args.lon, args.datum))
        with Database.open(path) as db, db.transaction() as conn:
            profile = stores.set_profile(
                conn, args.store, time.time(), name=args.name, tz=args.tz,
                address=args.address, district=args.district, position=position,
                hours=args.hours, pickup=None if args.pickup is None else args.pickup == "yes",
                delivery_radius_m=args.delivery_radius, slot_capacity=args.capacity)
    except (stores.ProfileError, geo.GeoError) as exc:
        return _fail(str(exc))
    except sql.ERRORS as exc:
        return _fail(f"cannot write {sql.describe(path)}: {exc}")
    _print(profile)
    return 0


def _show(args: argparse.Namespace) -> int:
    from . import stores
    from .db import Database

    path = _db_path(args)
    try:
        with Database.open_readonly(path) as db:
            profile = stores.get(db.conn, args.store)
    except sql.ERRORS as exc:
        return _fail(f"cannot read {sql.describe(path)}: {exc}")
    _print(profile)
    return 0


def _price(args: argparse.Namespace) -> int:
    from . import shop
    from .db import Database

    path = _db_path(args)
    try:
        with Database.open(path) as db, db.transaction() as conn:
            shop.set_price(conn, args.store, args.item, args.fen, time.time())
    except shop.ShopError as exc:
        return _fail(str(exc))
    except sql.ERRORS as exc:
        return _fail(f"cannot write {sql.describe(path)}: {exc}")
    print(json.dumps({"store": args.store, "item": args.item, "price_fen": args.fen}))
    return 0
