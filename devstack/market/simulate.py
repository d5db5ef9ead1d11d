"""Day by day, hour by hour: deliveries in the morning, pre-orders placed and picked up,
walk-in sales, the cutoff, expired lots to waste at night (docs/supply.md, "Simulator").

Pure apart from the ledger's ids: the market, the demand and the policy's name in, the
figures out; the same inputs give the same figures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np

from cloud_gateway.supply.admission import Admission, offer_elsewhere
from cloud_gateway.supply.model import FridgeState
from cloud_gateway.supply.planning import PreOrder, StockLot

from .books import StoreBook
from .demand import PREORDER, WALK_IN, Demand
from .market_file import Market, MarketError
from .policies import make_policy

PICKUP_FIRST, PICKUP_LAST = 8, 21  # residents collect between these hours


@dataclass
class Figures:
    policy: str
    days: int
    first_day: str
    delivered_units: int = 0
    delivered_cost: int = 0  # fen
    wasted_units: int = 0
    wasted_cost: int = 0
    walk_in_demand: int = 0
    walk_in_sold: int = 0
    lost_sales_units: int = 0
    lost_sales_revenue: int = 0  # fen
    preorders_placed: int = 0
    preorders_accepted: int = 0
    preorders_refused_capacity: int = 0  # closed cycle: pickup or fridge share full
    preorders_moved: int = 0  # their store's fridge could not take chilled goods
    preorders_refunded: int = 0
    preorders_filled: int = 0
    preorder_units: int = 0
    preorder_units_filled: int = 0
    oversold_lines: int = 0  # handed over out of no lot, per the ledger
    chilled_lines_refused: int = 0  # plan lines refused: a fridge in alarm or offline
    accepted_beyond_capacity: int = 0  # audit: orders over a store's wave capacity
    revenue: int = 0

    def derived(self) -> dict[str, float]:
        demand = self.walk_in_demand + self.preorder_units
        return {
            "waste_units_pct": _pct(self.wasted_units, self.delivered_units),
            "waste_cost_pct": _pct(self.wasted_cost, self.delivered_cost),
            "fill_rate_pct": _pct(self.walk_in_sold + self.preorder_units_filled, demand),
            "walk_in_fill_pct": _pct(self.walk_in_sold, self.walk_in_demand),
            "preorders_filled_pct": _pct(self.preorders_filled, self.preorders_accepted),
            "gross_margin": float(self.revenue - self.delivered_cost),
        }

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(self.derived())
        return out


def _pct(a: int, b: int) -> float:
    return round(100.0 * a / b, 3) if b else 0.0


@dataclass
class _Wave:
    admission: Admission
    orders: list[tuple[PreOrder, int]] = field(default_factory=list)  # (order, pickup hour)


def simulate(market: Market, demand: Demand, policy: str, days: int) -> Figures:
    warm = market.warmup_days
    if len(demand.days) < warm + 1:
        raise MarketError(f"demand: {len(demand.days)} days, the warm-up alone needs {warm} "
                          "and at least one more to simulate")
    days = min(days, len(demand.days) - warm)
    stores, items, cycle = market.stores, market.items, market.cycle
    s_ix = {s.id: k for k, s in enumerate(stores)}
    i_ix = {i.id: k for k, i in enumerate(items)}
    item_of = {i.id: i for i in items}
    n_s, n_i = len(stores), len(items)

    # The warm-up: its walk-in demand is the sales history both policies start from.
    history = np.zeros((n_s * n_i, warm))
    for d in range(warm):
        for e in demand.on(d):
            if e.channel == WALK_IN:
                history[s_ix[e.store] * n_i + i_ix[e.item], d] += e.qty
    start = demand.start + timedelta(days=warm)
    pol = make_policy(policy, stores, items, cycle, history, start - timedelta(days=1))
    fig = Figures(policy, days, start.isoformat())
    books = {s.id: StoreBook() for s in stores}
    stores_by_id = {s.id: s for s in stores}
    waves: dict[int, _Wave] = {}
    deliveries: dict[int, np.ndarray] = {}
    reserved: dict[tuple[str, str], int] = {}  # pre-order pieces held: cut off, not collected

    def wave(t: int) -> _Wave:
        if t not in waves:
            waves[t] = _Wave(Admission(stores_by_id, item_of, market.preorder_fridge_share))
        return waves[t]

    def cutoff(t: int, today: date) -> None:
        w = wave(t)
        fridges = {s.id: FridgeState.ALARM if t in market.alarm_days.get(s.id, ()) else
                   FridgeState.OK for s in stores}
        stock = _unheld(books, reserved, [
            (stores[int(s)].id, items[int(i)].id, start + timedelta(
                days=arrives + items[int(i)].shelf_life_days - 1), int(q[s, i]))
            for arrives, q in deliveries.items() if arrives > t
            for s, i in zip(*np.nonzero(q), strict=True)])
        orders = [p for p, _ in w.orders]
        qty, refused = pol.cutoff(today, orders, stock, fridges)
        fig.chilled_lines_refused += sum(
            1 for s in stores if fridges[s.id] is not FridgeState.OK for i in items if i.chilled)
        if refused:
            moved, refunded = offer_elsewhere(refused, w.admission, fridges)
            fig.preorders_moved += len(moved)
            fig.preorders_refunded += len(refunded)
            # Refunded ones leave the wave; moved ones keep their pickup hour, new store.
            refused_ids = {r.preorder.id for r in refused}
            moved_to = {p.id: p for p, _ in moved}
            w.orders = [(moved_to.get(p.id, p), h) for p, h in w.orders
                        if p.id not in refused_ids or p.id in moved_to]
            qty, still = pol.cutoff(today, [p for p, _ in w.orders], stock, fridges)
            if still:  # offer_elsewhere only picks stores with a working fridge
                raise MarketError(f"day {t}: pre-orders moved to a store that refuses them")
        deliveries[t + cycle.lead_time_days] = qty
        # From the cutoff on, the wave's pieces already on the shelf are held for it.
        for p, _ in w.orders:
            reserved[(p.store, p.item)] = reserved.get((p.store, p.item), 0) + p.qty
        # Audit the wave against each store's capacity, independently of Admission.
        count: dict[str, int] = {}
        vol: dict[str, float] = {}
        for p, _ in w.orders:
            count[p.store] = count.get(p.store, 0) + 1
            it = item_of[p.item]
            vol[p.store] = vol.get(p.store, 0.0) + (it.unit_volume * p.qty if it.chilled
                                                    else 0.0)
        for sid, c in count.items():
            s = stores_by_id[sid]
            over_volume = vol[sid] > s.fridge_capacity * market.preorder_fridge_share + 1e-9
            fig.accepted_beyond_capacity += max(c - s.pickup_capacity, int(over_volume))

    sold_today = np.zeros((n_s, n_i), dtype=np.int64)
    for t in range(-1, days):
        today = start + timedelta(days=t)
        # Morning: the delivery, then the pre-orders due today are held for their owners.
        if t >= 0:
            qty = deliveries.pop(t, None)
            if qty is not None:
                for s, i in zip(*np.nonzero(qty), strict=True):
                    it = items[int(i)]
                    q = int(qty[s, i])
                    books[stores[int(s)].id].receive(
                        it.id, q, f"D{today.isoformat()}",
                        today + timedelta(days=it.shelf_life_days - 1))
                    fig.delivered_units += q
                    fig.delivered_cost += q * it.cost
            due = waves.pop(t - cycle.lead_time_days, None)
            pickups = sorted(due.orders, key=lambda x: (x[1], x[0].id)) if due else []
        else:
            pickups = []
        sold_today[:] = 0
        events = demand.on(warm + t) if t >= 0 else []
        k = 0
        for hour in range(24):
            if t >= 0 and hour == cycle.cutoff_hour:
                cutoff(t, today)
            while pickups and pickups[0][1] == hour:
                p, _ = pickups.pop(0)
                reserved[(p.store, p.item)] -= p.qty
                oversold = books[p.store].take("pickup", p.item, p.qty)
                price = item_of[p.item].price
                fig.oversold_lines += oversold > 0
                fig.preorders_filled += oversold == 0
                fig.preorder_units_filled += p.qty - oversold
                fig.revenue += (p.qty - oversold) * price
            while k < len(events) and events[k].hour == hour:
                e = events[k]
                k += 1
                if e.channel == WALK_IN:
                    book = books[e.store]
                    free = book.on_hand(e.item) - reserved.get((e.store, e.item), 0)
                    n = max(0, min(e.qty, free))
                    if n:
                        fig.oversold_lines += book.take("sale", e.item, n) > 0
                        sold_today[s_ix[e.store], i_ix[e.item]] += n
                        fig.revenue += n * item_of[e.item].price
                    fig.walk_in_demand += e.qty
                    fig.walk_in_sold += n
                    fig.lost_sales_units += e.qty - n
                    fig.lost_sales_revenue += (e.qty - n) * item_of[e.item].price
                elif e.channel == PREORDER:
                    rides = t if hour < cycle.cutoff_hour else t + 1
                    if rides + cycle.lead_time_days >= days:
                        continue  # its pickup falls after the simulated days
                    fig.preorders_placed += 1
                    w = wave(rides)
                    if w.admission.accept(e.store, [(e.item, e.qty)]) is not None:
                        fig.preorders_refused_capacity += 1
                        continue
                    fig.preorders_accepted += 1
                    fig.preorder_units += e.qty
                    p = PreOrder(f"{rides}-{len(w.orders)}", e.store, e.item, e.qty)
                    pickup = min(max(hour, PICKUP_FIRST), PICKUP_LAST)
                    w.orders.append((p, pickup))
        if t < 0:
            # The day before the first: only its cutoff matters (the first delivery).
            continue
        for b in books.values():
            for item, n in b.expire(today):
                fig.wasted_units += n
                fig.wasted_cost += n * item_of[item].cost
        pol.night(sold_today.reshape(-1), today)
    return fig


def _unheld(books: dict[str, StoreBook], held: dict[tuple[str, str], int],
            on_the_way: list[tuple[str, str, date, int]]) -> list[StockLot]:
    """What the cutoff may count: the lots on hand and those already on the way (planned
    at earlier cutoffs, a lead time over one day), less the pieces held for earlier waves'
    pre-orders not collected yet, taken from the first to expire as a pickup would."""
    lots: dict[str, list[tuple[str, date | None, int]]] = {s: list(b.stock())
                                                           for s, b in books.items()}
    for sid, item, arriving_expiry, q in on_the_way:
        lots[sid].append((item, arriving_expiry, q))
    out = []
    for sid, rows in lots.items():
        left: dict[str, int] = {}
        for item, expiry, q in sorted(rows, key=lambda x: (x[0], x[1] or date.max)):
            take = min(q, left.setdefault(item, held.get((sid, item), 0)))
            left[item] -= take
            if q > take:
                out.append(StockLot(sid, item, expiry, q - take))
    return out
