"""The cutoff: per store x item, how many pieces come at the next delivery, and why.

    qty = round_up(pre-orders + forecast + safety - sellable stock, order lot), capped

`plan_cutoff` is pure: the cutoff's date, the stores, items, pre-orders riding this wave,
the stock lots on hand, the stored forecasts and each store's fridge state come in as
values; nothing is read from a clock or a database. It works on arrays (netting.py,
capacity.py) and builds one `ProposedLine` per line with something to say.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import NamedTuple

import numpy as np

from .capacity import cap_to_volume
from .forecast import WeekdayRates
from .model import Cycle, FridgeState, Item, Store, SupplyError
from .netting import (
    FloatArray,
    IntArray,
    covered_days,
    last_covered,
    poisson_quantile,
    round_up_to_lot,
)

NO_EXPIRY = date.max.toordinal()


@dataclass(frozen=True)
class PreOrder:
    id: str
    store: str
    item: str
    qty: int


@dataclass(frozen=True)
class StockLot:
    """A lot at the cutoff, expiry = last day it may be sold (None: no date): on hand (what
    the store's ledger says) or on the way (delivered after the cutoff from an earlier
    plan, when the lead time is over one day), less any pieces held for an earlier wave's
    pre-orders not collected yet."""

    store: str
    item: str
    expiry: date | None
    qty: int


class Why(NamedTuple):
    """The reason for a line, as data: every term of the sum, then what changed it. (Named
    tuples: a cutoff builds hundreds of thousands, several times faster than dataclasses.)"""

    preorders: int  # pieces of confirmed pre-orders riding this wave
    forecast: float  # expected walk-in pieces over the days covered
    safety: float  # pieces above the forecast for the service level
    netted_stock: int  # pieces on hand still sellable on the last day covered
    expiring_excluded: int  # pieces on hand that expire before then: not counted
    lot: int  # the order lot the need was rounded up to
    rounded_up: float  # pieces added by rounding up to the lot
    capped: int  # pieces cut because the fridge is full
    refused: str | None  # "fridge_alarm" / "fridge_offline": no chilled goods at all


class ProposedLine(NamedTuple):
    store: str
    item: str
    qty: int
    why: Why


@dataclass(frozen=True)
class RefusedPreOrder:
    """A pre-order its store cannot take (its fridge cannot hold chilled goods): to be
    offered another store of the zone or refunded (admission.offer_elsewhere)."""

    preorder: PreOrder
    reason: str


@dataclass
class Plan:
    cutoff: date
    delivery: date
    stores: Sequence[Store]
    items: Sequence[Item]
    qty: IntArray  # stores x items
    preorders: IntArray
    forecast: FloatArray
    safety: FloatArray
    netted: IntArray
    excluded: IntArray
    lot: IntArray  # items
    need: FloatArray
    cut: IntArray
    refused: np.ndarray  # stores x items: "" or the reason
    over_capacity: list[str]  # stores whose pre-orders alone exceed the fridge
    refused_preorders: list[RefusedPreOrder]

    def line(self, s: int, i: int) -> ProposedLine:
        return self._lines(np.array([s]), np.array([i]))[0]

    def lines(self) -> list[ProposedLine]:
        """Every line that orders something, serves pre-orders (the store's stock may cover
        them in full: a line of 0 that the manifest still carries, so the store holds the
        pieces), or was cut or refused, store by store."""
        has = (self.qty > 0) | (self.preorders > 0) | (self.cut > 0) | (self.refused != "")
        s, i = np.nonzero(has)
        return self._lines(s, i)

    def _lines(self, s: IntArray, i: IntArray) -> list[ProposedLine]:
        # Column by column into Python lists first: per-element numpy indexing would cost
        # several times more at 300,000 lines.
        qty, cut = self.qty[s, i], self.cut[s, i]
        refused = [str(r) or None for r in self.refused[s, i].tolist()]
        rounded = np.maximum(qty + cut - np.maximum(self.need[s, i], 0.0), 0.0)
        store_ids = [self.stores[k].id for k in s.tolist()]
        item_ids = [self.items[k].id for k in i.tolist()]
        cols = zip(store_ids, item_ids, qty.tolist(), self.preorders[s, i].tolist(),
                   self.forecast[s, i].tolist(), self.safety[s, i].tolist(),
                   self.netted[s, i].tolist(), self.excluded[s, i].tolist(),
                   self.lot[i].tolist(), rounded.tolist(), cut.tolist(), refused, strict=True)
        return [ProposedLine(st, it, q, Why(p, f, sf, n, x, lt, 0.0 if r else ru, c, r))
                for st, it, q, p, f, sf, n, x, lt, ru, c, r in cols]

    def quantities(self) -> dict[tuple[str, str], int]:
        return {(self.stores[s].id, self.items[i].id): int(self.qty[s, i])
                for s, i in zip(*np.nonzero(self.qty), strict=True)}


def plan_cutoff(cutoff: date, cycle: Cycle, stores: Sequence[Store], items: Sequence[Item],
                preorders: Iterable[PreOrder], stock: Iterable[StockLot],
                rates: WeekdayRates, fridges: Mapping[str, FridgeState]) -> Plan:
    """Propose the delivery of the cutoff on `cutoff` (its local date). `rates` has one
    row per store x item, store-major (row = s * len(items) + i), as `forecast.fit_rates`
    returned it for the same order. A store missing from `fridges` counts as offline."""
    n_s, n_i = len(stores), len(items)
    if rates.rates.shape != (n_s * n_i, 7):
        raise SupplyError(f"forecasts: {rates.rates.shape[0]} series for {n_s} stores x "
                          f"{n_i} items")
    s_ix = {s.id: k for k, s in enumerate(stores)}
    i_ix = {i.id: k for k, i in enumerate(items)}
    shelf = np.array([i.shelf_life_days for i in items], dtype=np.int64)
    lot = np.array([i.order_lot for i in items], dtype=np.int64)
    chilled = np.array([i.chilled for i in items], dtype=bool)
    volume = np.array([i.unit_volume for i in items]) * chilled
    delivery = cutoff + timedelta(days=cycle.lead_time_days)

    # Pre-orders of this wave, per line.
    pre = np.zeros((n_s, n_i), dtype=np.int64)
    pre_list = list(preorders)
    if pre_list:
        ps, pi, pq = _columns(((p.store, p.item, p.qty) for p in pre_list), s_ix, i_ix,
                              "pre-order")
        np.add.at(pre, (ps, pi), pq)

    # Stock: sellable through the last covered day, or left out; and what will still be
    # in the fridge when the delivery comes (for the volume cap).
    last = last_covered(cutoff, cycle.lead_time_days, cycle.review_days, shelf)
    netted = np.zeros((n_s, n_i), dtype=np.int64)
    excluded = np.zeros((n_s, n_i), dtype=np.int64)
    in_fridge = np.zeros((n_s, n_i), dtype=np.int64)
    lots = list(stock)
    if lots:
        ls, li, lq = _columns(((x.store, x.item, x.qty) for x in lots), s_ix, i_ix, "stock")
        le = np.fromiter((NO_EXPIRY if x.expiry is None else x.expiry.toordinal()
                          for x in lots), dtype=np.int64, count=len(lots))
        lq = np.maximum(lq, 0)
        keep = le >= last[li]
        np.add.at(netted, (ls[keep], li[keep]), lq[keep])
        np.add.at(excluded, (ls[~keep], li[~keep]), lq[~keep])
        still = le >= delivery.toordinal()
        np.add.at(in_fridge, (ls[still], li[still]), lq[still])

    # Walk-in forecast over the covered days, and the stock the service level asks for.
    days, mask = covered_days(cutoff, cycle.lead_time_days, cycle.review_days, shelf)
    daily = rates.over(days).reshape(n_s, n_i, len(days))
    forecast = (daily * mask[None, :, :]).sum(axis=2)
    target = poisson_quantile(forecast, cycle.service_level)
    safety = target - forecast
    need = pre + target - netted
    qty = round_up_to_lot(need, lot[None, :])

    # Fridges that cannot take chilled goods: nothing chilled goes, pre-orders go elsewhere.
    refused = np.full((n_s, n_i), "", dtype=object)
    refused_pre: list[RefusedPreOrder] = []
    by_store: dict[str, list[PreOrder]] | None = None
    for s, store in enumerate(stores):
        state = fridges.get(store.id, FridgeState.OFFLINE)
        if state is FridgeState.OK:
            continue
        reason = f"fridge_{state.value}"
        refused[s, chilled] = reason
        qty[s, chilled] = 0
        if by_store is None:
            by_store = {}
            for p in pre_list:
                by_store.setdefault(p.store, []).append(p)
        refused_pre += [RefusedPreOrder(p, reason) for p in by_store.get(store.id, ())
                        if items[i_ix[p.item]].chilled]

    # The fridge's volume: the pre-orders' part first, the forecast's cut to fit.
    floor = np.minimum(round_up_to_lot((pre - netted).astype(np.float64), lot[None, :]), qty)
    free = np.array([s.fridge_capacity for s in stores]) - (in_fridge * volume).sum(axis=1)
    capped, breach = cap_to_volume(qty, floor, lot, volume, free)
    cut = qty - capped
    return Plan(cutoff, delivery, stores, items, capped, pre, forecast, safety, netted,
                excluded, lot, need, cut, refused,
                [stores[int(s)].id for s in np.flatnonzero(breach)], refused_pre)


def _columns(rows: Iterable[tuple[str, str, int]], s_ix: Mapping[str, int],
             i_ix: Mapping[str, int], what: str) -> tuple[IntArray, IntArray, IntArray]:
    ss: list[int] = []
    ii: list[int] = []
    qq: list[int] = []
    for store, item, q in rows:
        try:
            ss.append(s_ix[store])
            ii.append(i_ix[item])
        except KeyError as exc:
            raise SupplyError(f"{what}: unknown store or item {exc.args[0]!r}") from None
        qq.append(q)
    return (np.array(ss, dtype=np.int64), np.array(ii, dtype=np.int64),
            np.array(qq, dtype=np.int64))
