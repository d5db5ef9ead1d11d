"""The two ordering policies the simulator compares at each cutoff.

- `ours`: cloud_gateway.supply as it is: forecasts refitted nightly from the day's walk-in
  sales (statsforecast), the cutoff nets pre-orders, forecast and sellable stock in unit
  lots under the fridge cap.
- `whole-case`: what shops do today: a static min/max per line set from the warm-up's
  average sales; when the stock on hand (expiring or not) less the pre-orders is at or
  under min, whole cases up to max. The fridge still caps it (it is physical), and it
  cannot put chilled goods in a fridge in alarm either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

import numpy as np

from cloud_gateway.supply.capacity import cap_to_volume
from cloud_gateway.supply.forecast import FloatArray, WeekdayRates, fit_rates
from cloud_gateway.supply.model import Cycle, FridgeState, Item, Store
from cloud_gateway.supply.netting import IntArray, round_up_to_lot
from cloud_gateway.supply.planning import PreOrder, RefusedPreOrder, StockLot, plan_cutoff

POLICIES = ("ours", "whole-case")


class Ours:
    name = "ours"

    def __init__(self, stores: Sequence[Store], items: Sequence[Item], cycle: Cycle,
                 history: FloatArray, last_day: date) -> None:
        self.stores, self.items, self.cycle = stores, items, cycle
        self.history = history  # (stores x items, days): walk-in pieces sold per day
        self.rates: WeekdayRates = fit_rates(history, last_day)

    def night(self, sold: IntArray, day: date) -> None:
        """The day's walk-in sales arrive; refit (what a nightly job does)."""
        self.history = np.concatenate([self.history, sold.reshape(-1, 1)], axis=1)
        self.rates = fit_rates(self.history, day)

    def cutoff(self, day: date, preorders: Sequence[PreOrder], stock: Sequence[StockLot],
               fridges: Mapping[str, FridgeState]) -> tuple[IntArray, list[RefusedPreOrder]]:
        plan = plan_cutoff(day, self.cycle, self.stores, self.items, preorders, stock,
                           self.rates, fridges)
        return plan.qty, plan.refused_preorders


class WholeCase:
    name = "whole-case"

    def __init__(self, stores: Sequence[Store], items: Sequence[Item], cycle: Cycle,
                 history: FloatArray, last_day: date) -> None:
        self.stores, self.items, self.cycle = stores, items, cycle
        mean = history.mean(axis=1).reshape(len(stores), len(items))
        cover = cycle.lead_time_days + cycle.review_days
        self.min = np.ceil(mean * cover)
        self.max = self.min + np.ceil(mean * cycle.review_days) + 1
        self.case = np.array([i.case_pack for i in items], dtype=np.int64)
        chilled = np.array([i.chilled for i in items], dtype=bool)
        self.chilled = chilled
        self.volume = np.array([i.unit_volume for i in items]) * chilled

    def night(self, sold: IntArray, day: date) -> None:
        pass  # static levels: that is the point of the baseline

    def cutoff(self, day: date, preorders: Sequence[PreOrder], stock: Sequence[StockLot],
               fridges: Mapping[str, FridgeState]) -> tuple[IntArray, list[RefusedPreOrder]]:
        s_ix = {s.id: k for k, s in enumerate(self.stores)}
        i_ix = {i.id: k for k, i in enumerate(self.items)}
        shape = (len(self.stores), len(self.items))
        on_hand = np.zeros(shape)
        for lot in stock:  # every lot, expiring tomorrow or not: no expiry netting
            on_hand[s_ix[lot.store], i_ix[lot.item]] += lot.qty
        pre = np.zeros(shape)
        for p in preorders:
            pre[s_ix[p.store], i_ix[p.item]] += p.qty
        position = on_hand - pre
        need = np.where(position <= self.min, self.max - position, 0.0)
        qty = round_up_to_lot(need, self.case[None, :])
        refused: list[RefusedPreOrder] = []
        for s, store in enumerate(self.stores):
            state = fridges.get(store.id, FridgeState.OFFLINE)
            if state is not FridgeState.OK:
                qty[s, self.chilled] = 0
                refused += [RefusedPreOrder(p, f"fridge_{state.value}") for p in preorders
                            if p.store == store.id and self.chilled[i_ix[p.item]]]
        floor = np.minimum(round_up_to_lot(np.maximum(pre - on_hand, 0.0), self.case[None, :]),
                           qty)
        in_fridge = (on_hand * self.volume[None, :]).sum(axis=1)
        free = np.array([s.fridge_capacity for s in self.stores]) - in_fridge
        capped, _ = cap_to_volume(qty, floor, self.case, self.volume, free)
        return capped, refused


def make_policy(name: str, stores: Sequence[Store], items: Sequence[Item], cycle: Cycle,
                history: FloatArray, last_day: date) -> Ours | WholeCase:
    if name == "ours":
        return Ours(stores, items, cycle, history, last_day)
    if name == "whole-case":
        return WholeCase(stores, items, cycle, history, last_day)
    raise ValueError(f"policy: one of {', '.join(POLICIES)}")


