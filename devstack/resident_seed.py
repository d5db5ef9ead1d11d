"""Residents in the demo: the demo store as residents find it (address, position, hours,
pickup, delivery radius), written straight into the cloud database. The prices they see
come with the demo's catalogue (`price_fen`, devstack/retail_seed.py). The store also gets
supply settings (zone `north`, the default timetable: cutoff 23:00 Shanghai, picked up the
next day), unless it has some, so its page shows what the next delivery can bring as
pre-sale, with the cutoff counted down (docs/residents.md, "Pre-sale").

The resident app itself needs only the cloud (it is part of `xiaodian cloud run`); this
module gives it a store to find. A resident logs in with any mainland mobile number
(`DEMO_PHONE` in the banner); the one-time code is written to the cloud's log
(`cloud_gateway.residents.LogSender`), where the newcomer reads it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from cloud_gateway import geo, stores
from cloud_gateway.db import Database
from cloud_gateway.supply import settings

if TYPE_CHECKING:
    from .stack import StoreStack

DEMO_PHONE = "13800138000"
# Near People's Square, Shanghai, in GCJ-02 (the datum the cloud stores: docs/residents.md).
DEMO_POSITION = geo.Point(31.2317, 121.4757)
# What the depot sends, all chilled (supply items): (GTIN-14, name, shelf life, litres a piece).
DEMO_SUPPLY = [("06901234567892", "鲜牛奶 1升", 7, 1.0),
               ("06901234567809", "酸奶 4×100克", 21, 0.4),
               ("06901234567816", "冷藏水饺 500克", 5, 0.6),
               ("06901234567823", "豆腐 400克", 3, 0.5)]


def seed_residents(stack: StoreStack) -> dict[str, Any]:
    """Give the demo store what residents need; the app's address and the demo phone."""
    now = time.time()
    with Database.open(stack.cloud_db) as db, db.transaction() as conn:
        named = stores.get(conn, stack.store).name != stack.store
        stores.set_profile(conn, stack.store, now, name=None if named else "幸福路店",
                           address="黄浦区幸福路 1 号", district="黄浦区",
                           position=DEMO_POSITION, hours="00:00-24:00", pickup=True,
                           delivery_radius_m=2000, slot_capacity=20)
        if settings.get_store(conn, stack.store) is None:
            settings.set_store(conn, stack.store, now, zone="north", fridge_capacity=100.0,
                               pickup_capacity=20)
        known = {i.item.id for i in settings.items(conn)}
        for item, name, days, litres in DEMO_SUPPLY:
            if item not in known:
                settings.set_item(conn, item, now, name=name, shelf_life_days=days,
                                  unit_lot=1, case_pack=12, case_only=False,
                                  unit_volume=litres, cost=800, price=1250, chilled=True)
    return {"url": f"{stack.http_url}r", "phone": DEMO_PHONE,
            "code_log": str(stack.logs / "cloud.log")}
