"""The supply side of an end-to-end store, set up with the `xiaodian supply` commands as an
operator does (not through the cloud's code): its zone and the items the wave may bring."""

from __future__ import annotations

from collections.abc import Mapping

from devstack.stack import StoreStack
from devstack.testkit.cli import json_cli as cli


def north_zone(stack: StoreStack, items: Mapping[str, str]) -> tuple[str, str]:
    """store-001 in zone north (a 100 L fridge share, 20 pickups a wave) and `items` (GTIN
    -> name), each keeping 5 days, 12 to a case, 1 L, bought at ¥5 and sold at ¥8. The
    `--db` arguments naming the stack's cloud database, for the commands that follow."""
    db = ("--db", str(stack.cloud_db))
    cli("supply", "store", "set", stack.store, "--zone", "north", "--fridge", "100",
        "--pickup", "20", *db)
    for item, name in items.items():
        cli("supply", "item", "set", item, "--name", name, "--shelf-life", "5",
            "--case-pack", "12", "--volume", "1", "--cost", "500", "--price", "800", *db)
    return db
