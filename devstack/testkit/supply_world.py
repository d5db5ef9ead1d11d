"""A small supply world for tests: two stores of zone `north`, four items (one pre-sale,
one ambient), their catalogues, both terminals online. Real tables, written through the
real code (cloud_gateway.retail, cloud_gateway.supply.settings)."""

from __future__ import annotations

from typing import Any

from cloud_gateway import retail, sql
from cloud_gateway.supply import settings

MILK = "06901234567892"
EGGS = "06901234567809"
DURIAN = "06901234567816"  # pre-sale: only comes if enough residents want it
RICE = "06901234567823"  # ambient
S1, S2 = "store-001", "store-002"
ZONE = "north"


def catalogue() -> list[dict[str, Any]]:
    return [{"item": i, "name": n, "unit": "piece", "shelf_life_days": d, "storage": st}
            for i, n, d, st in ((MILK, "鲜牛奶", 5, "chilled"), (EGGS, "鸡蛋", 14, "chilled"),
                                (DURIAN, "榴莲", 3, "chilled"), (RICE, "大米", 300, "ambient"))]


def seed(conn: sql.Connection, now: float, *, stores: tuple[str, ...] = (S1, S2),
         online: bool = True) -> None:
    """S1: a 20 L fridge, 3 pickups a wave; S2: 100 L, 10 pickups."""
    for s in stores:
        retail.put_catalogue(conn, s, retail.parse_catalogue_items(s, catalogue()), now,
                             "test")
        if online:
            conn.execute("INSERT INTO store_state (store, online, boot, wall, agent_version,"
                         " devices, updated_at) VALUES (?, TRUE, 1, ?, 't', '[]', ?)"
                         " ON CONFLICT (store) DO NOTHING", (s, now, now))
    caps = {S1: (20.0, 3), S2: (100.0, 10)}
    for s in stores:
        fridge, pickup = caps.get(s, (100.0, 10))
        settings.set_store(conn, s, now, zone=ZONE, fridge_capacity=fridge,
                           pickup_capacity=pickup)
    common: dict[str, Any] = {"case_pack": 12, "case_only": False, "cost": 500, "price": 800}
    settings.set_item(conn, MILK, now, name="鲜牛奶", shelf_life_days=5, unit_lot=1,
                      unit_volume=1.0, chilled=True, **common)
    settings.set_item(conn, EGGS, now, name="鸡蛋", shelf_life_days=14, unit_lot=6,
                      unit_volume=0.5, chilled=True, **common)
    settings.set_item(conn, DURIAN, now, name="榴莲", shelf_life_days=3, unit_lot=1,
                      unit_volume=4.0, chilled=True, presale_min=3, **common)
    settings.set_item(conn, RICE, now, name="大米", shelf_life_days=300, unit_lot=1,
                      unit_volume=5.0, chilled=False, **common)
