"""A seeded random market: the same seed, the same market (for the benchmark's second
market and for anyone's quick experiment)."""

from __future__ import annotations

import random
from datetime import date

from cloud_gateway.supply.model import Cycle, Item, Store

from .market_file import ItemDemand, Market


def random_market(seed: int, stores: int = 12, items: int = 30) -> Market:
    rng = random.Random(seed)
    zones = max(1, stores // 4)
    store_list = tuple(
        Store(f"R{k + 1:03d}", float(rng.randrange(200, 420, 10)), rng.randrange(25, 60),
              f"zone-{k % zones + 1}") for k in range(stores))
    item_list, demand = [], {}
    for k in range(items):
        case = rng.choice((6, 8, 10, 12, 12, 15, 20, 24))
        cost = rng.randrange(150, 2500, 10)
        chilled = rng.random() < 0.8
        intermittent = rng.random() < 0.3
        iid = f"item-{k + 1:03d}"
        item_list.append(Item(
            iid, rng.randint(1, 5), 2 if rng.random() < 0.15 else 1, case,
            round(rng.uniform(0.2, 1.2), 2) if chilled else 0.0, cost,
            int(cost * rng.uniform(1.3, 1.9)), chilled, rng.random() < 0.08))
        walk = rng.lognormvariate(0.3, 0.9) * (0.4 if intermittent else 1.0)
        demand[iid] = ItemDemand(round(min(walk, 15.0), 2), round(rng.uniform(0.1, 1.2), 2),
                                 intermittent)
    alarms = {s.id: frozenset({rng.randrange(5, 55)}) if rng.random() < 0.2 else frozenset()
              for s in store_list}
    scale = {s.id: round(rng.uniform(0.6, 1.4), 2) for s in store_list}
    return Market(store_list, tuple(item_list), Cycle(), date(2026, 3, 2), 28, 0.5, alarms,
                  scale, demand)
