"""Residents in the demo: the demo store as residents find it (address, position, hours,
pickup, delivery radius), written straight into the cloud database. The prices they see
come with the demo's catalogue (`price_fen`, devstack/retail_seed.py).

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

if TYPE_CHECKING:
    from .stack import StoreStack

DEMO_PHONE = "13800138000"
# Near People's Square, Shanghai, in GCJ-02 (the datum the cloud stores: docs/residents.md).
DEMO_POSITION = geo.Point(31.2317, 121.4757)


def seed_residents(stack: StoreStack) -> dict[str, Any]:
    """Give the demo store what residents need; the app's address and the demo phone."""
    now = time.time()
    with Database.open(stack.cloud_db) as db, db.transaction() as conn:
        named = stores.get(conn, stack.store).name != stack.store
        stores.set_profile(conn, stack.store, now, name=None if named else "幸福路店",
                           address="黄浦区幸福路 1 号", district="黄浦区",
                           position=DEMO_POSITION, hours="00:00-24:00", pickup=True,
                           delivery_radius_m=2000, slot_capacity=20)
    return {"url": f"{stack.http_url}r", "phone": DEMO_PHONE,
            "code_log": str(stack.logs / "cloud.log")}
