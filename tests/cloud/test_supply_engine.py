"""The replenishment engine on hand-checked cases (cloud_gateway.supply)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from cloud_gateway.supply.admission import FRIDGE_FULL, PICKUP_FULL, Admission, offer_elsewhere
from cloud_gateway.supply.forecast import (
    METHOD_NONE,
    METHOD_SEASONAL_ES,
    METHOD_TSB,
    WeekdayRates,
    fit_rates,
)
from cloud_gateway.supply.model import Cycle, FridgeState, Item, Store, SupplyError
from cloud_gateway.supply.netting import poisson_quantile
from cloud_gateway.supply.planning import PreOrder, StockLot, plan_cutoff

CUT = date(2026, 12, 7)  # a Monday
TOMORROW = CUT + timedelta(days=1)
CYCLE = Cycle(cutoff_hour=23, lead_time_days=1, review_days=1, service_level=0.95)


def item(iid: str, **kw: object) -> Item:
    base: dict[str, object] = dict(shelf_life_days=3, unit_lot=1, case_pack=12, unit_volume=1.0,
                                   cost=100, price=150, chilled=True)
    base.update(kw)
    return Item(iid, **base)  # type: ignore[arg-type]


def store(sid: str = "S1", cap: float = 1000.0, zone: str = "z") -> Store:
    return Store(sid, cap, 50, zone)


def rates(per_day: list[float], n_stores: int = 1) -> WeekdayRates:
    r = np.array([[x] * 7 for x in per_day] * n_stores, dtype=np.float64)
    return WeekdayRates(r, np.zeros(len(r), dtype=np.int8), CUT)


OK = FridgeState.OK


def test_lots_expiring_before_the_last_covered_day_are_not_netted() -> None:
    milk = item("milk")
    stock = [StockLot("S1", "milk", CUT, 3),  # last day today: gone before the delivery
             StockLot("S1", "milk", TOMORROW, 2)]  # sellable tomorrow: counts
    plan = plan_cutoff(CUT, CYCLE, [store()], [milk], [PreOrder("p", "S1", "milk", 5)], stock,
                       rates([0.0]), {"S1": OK})
    (line,) = plan.lines()
    assert line.qty == 3  # 5 pre-ordered - 2 still sellable
    assert (line.why.preorders, line.why.netted_stock, line.why.expiring_excluded) == (5, 2, 3)
    assert line.why.forecast == 0 and line.why.capped == 0 and line.why.refused is None


def test_forecast_and_safety_come_from_the_poisson_quantile() -> None:
    # Poisson(4): P(X <= 7) = 0.9489, P(X <= 8) = 0.9786: 8 pieces for a 95% service level.
    assert poisson_quantile(np.array([4.0, 0.0, 0.3]), 0.95).tolist() == [8.0, 0.0, 1.0]
    plan = plan_cutoff(CUT, CYCLE, [store()], [item("milk")], [],
                       [StockLot("S1", "milk", CUT + timedelta(days=5), 1)], rates([4.0]),
                       {"S1": OK})
    (line,) = plan.lines()
    assert line.qty == 7 and line.why.forecast == pytest.approx(4.0)
    assert line.why.safety == pytest.approx(4.0) and line.why.netted_stock == 1


def test_shelf_life_limits_the_days_covered() -> None:
    # Delivered every 3 days: a 1-day item covers only its delivery day (plus no lead
    # days), a 5-day one all three.
    cycle = Cycle(lead_time_days=1, review_days=3, service_level=0.5)
    items = [item("salad", shelf_life_days=1), item("milk", shelf_life_days=5)]
    plan = plan_cutoff(CUT, cycle, [store()], items, [], [], rates([2.0, 2.0]), {"S1": OK})
    assert plan.forecast[0].tolist() == pytest.approx([2.0, 6.0])


def test_unit_lots_round_up_and_only_case_only_items_come_in_cases() -> None:
    items = [item("loose", unit_lot=1, case_pack=12), item("pairs", unit_lot=2, case_pack=12),
             item("eggs", unit_lot=1, case_pack=12, case_only=True)]
    pre = [PreOrder(f"p{k}", "S1", i.id, 3) for k, i in enumerate(items)]
    plan = plan_cutoff(CUT, CYCLE, [store()], items, pre, [], rates([0.0] * 3), {"S1": OK})
    got = {line.item: (line.qty, line.why.lot, line.why.rounded_up) for line in plan.lines()}
    assert got == {"loose": (3, 1, 0.0), "pairs": (4, 2, 1.0), "eggs": (12, 12, 9.0)}


def test_the_fridge_cap_cuts_the_forecast_never_the_pre_orders() -> None:
    items = [item("a", unit_volume=1.0), item("b", unit_volume=1.0),
             item("bread", chilled=False, unit_volume=5.0)]
    # 4 pre-ordered a; each line's forecast wants 8 more (mean 4, 95%): 20 chilled > 10 L.
    plan = plan_cutoff(CUT, CYCLE, [store(cap=10.0)], items, [PreOrder("p", "S1", "a", 4)],
                       [], rates([4.0, 4.0, 4.0]), {"S1": OK})
    q = dict(plan.quantities())
    assert q[("S1", "a")] >= 4  # the pre-orders stay
    assert q[("S1", "a")] + q[("S1", "b")] <= 10  # fits the fridge
    assert q[("S1", "bread")] == 8  # not in the fridge: not capped
    lines = {line.item: line for line in plan.lines()}
    assert lines["a"].why.capped + lines["b"].why.capped == 20 - (q[("S1", "a")]
                                                                   + q[("S1", "b")])
    assert lines["a"].why.capped > 0 and lines["bread"].why.capped == 0
    assert plan.over_capacity == []


def test_stock_still_in_the_fridge_takes_room() -> None:
    plan = plan_cutoff(CUT, CYCLE, [store(cap=10.0)], [item("a")], [],
                       [StockLot("S1", "a", CUT + timedelta(days=9), 6)], rates([8.0]),
                       {"S1": OK})
    assert int(plan.qty[0, 0]) == 4  # 10 L less the 6 pieces already there


def test_a_fridge_in_alarm_refuses_chilled_lines_and_their_pre_orders() -> None:
    items = [item("milk"), item("bread", chilled=False, unit_volume=0.0)]
    pre = [PreOrder("p1", "S1", "milk", 2), PreOrder("p2", "S1", "bread", 1),
           PreOrder("p3", "S2", "milk", 1)]
    plan = plan_cutoff(CUT, CYCLE, [store("S1"), store("S2")], items, pre, [],
                       rates([1.0, 1.0], 2), {"S1": FridgeState.ALARM})  # S2: no word: offline
    lines = {(line.store, line.item): line for line in plan.lines()}
    assert lines[("S1", "milk")].qty == 0 and lines[("S1", "milk")].why.refused == "fridge_alarm"
    assert lines[("S2", "milk")].why.refused == "fridge_offline"
    assert lines[("S1", "bread")].qty > 0 and lines[("S1", "bread")].why.refused is None
    assert sorted((r.preorder.id, r.reason) for r in plan.refused_preorders) == [
        ("p1", "fridge_alarm"), ("p3", "fridge_offline")]


def test_unknown_ids_and_mismatched_forecasts_are_refused() -> None:
    with pytest.raises(SupplyError, match="unknown store or item 'nope'"):
        plan_cutoff(CUT, CYCLE, [store()], [item("a")], [PreOrder("p", "S1", "nope", 1)], [],
                    rates([0.0]), {"S1": OK})
    with pytest.raises(SupplyError, match="2 series for 1 stores x 1 items"):
        plan_cutoff(CUT, CYCLE, [store()], [item("a")], [], [], rates([0.0, 0.0]), {"S1": OK})
    with pytest.raises(SupplyError, match="unit_lot"):
        item("bad", unit_lot=0)


def test_admission_closes_a_store_at_its_pickup_or_fridge_capacity() -> None:
    stores = {"S1": Store("S1", 10.0, 2, "z")}
    items = {"milk": item("milk", unit_volume=2.0), "bread": item("bread", chilled=False)}
    adm = Admission(stores, items, fridge_share=0.5)  # 5 L for pre-orders
    assert adm.accept("S1", [("milk", 2)]) is None  # 4 L
    assert adm.accept("S1", [("milk", 1)]) == FRIDGE_FULL  # 6 L > 5 L: nothing changes
    assert adm.accept("S1", [("bread", 9)]) is None  # ambient: no fridge room
    assert adm.accept("S1", [("bread", 1)]) == PICKUP_FULL  # third order of the wave
    assert adm.orders == {"S1": 2} and adm.volume == {"S1": 4.0}


def test_refused_pre_orders_go_to_a_store_of_the_zone_or_are_refunded() -> None:
    stores = {s.id: s for s in (Store("A", 100, 5, "north"), Store("B", 100, 5, "north"),
                                Store("C", 100, 5, "south"))}
    items = {"milk": item("milk")}
    adm = Admission(stores, items)
    for store_id in ("A", "C"):
        assert adm.accept(store_id, [("milk", 1)]) is None
    pre = [PreOrder("a1", "A", "milk", 1), PreOrder("c1", "C", "milk", 1)]
    fridges = {"A": FridgeState.ALARM, "B": OK, "C": FridgeState.OFFLINE}
    plan = plan_cutoff(CUT, CYCLE, list(stores.values()), [items["milk"]], pre, [],
                       rates([0.0], 3), fridges)
    moved, refunded = offer_elsewhere(plan.refused_preorders, adm, fridges)
    assert [(p.id, to) for p, to in moved] == [("a1", "B")]
    assert [p.id for p in refunded] == ["c1"]  # no other store in the south
    assert adm.orders == {"A": 0, "B": 1, "C": 0}


def test_forecasts_classify_and_keep_the_weekday_pattern() -> None:
    weeks = 8
    smooth = np.tile([4, 4, 4, 4, 4, 10, 10], weeks).astype(np.float64)  # Monday first
    intermittent = np.zeros(7 * weeks)
    intermittent[::5] = 3.0
    never = np.zeros(7 * weeks)
    last = CUT - timedelta(days=1)  # a Sunday: the history's days start on a Monday
    fitted = fit_rates(np.vstack([smooth, intermittent, never]), last)
    assert fitted.methods.tolist() == [METHOD_SEASONAL_ES, METHOD_TSB, METHOD_NONE]
    assert fitted.rates[0, 5] == pytest.approx(10.0, abs=0.5)  # Saturday
    assert fitted.rates[0, 0] == pytest.approx(4.0, abs=0.5)  # Monday
    assert 0.3 < fitted.rates[1, 0] < 0.9  # ~3 every 5 days
    assert np.all(fitted.rates[1] == fitted.rates[1, 0])  # one flat rate
    assert fitted.rates[2].tolist() == [0.0] * 7
    with pytest.raises(SupplyError, match="finite and not negative"):
        fit_rates(np.array([[1.0, -1.0]]), last)
