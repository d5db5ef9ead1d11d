"""The cutoff of a zone's wave, against the database: gather, plan, store.

`propose` reads everything the engine needs (the zone's stores and settings, the depot's
items, the wave's pre-orders, the stock lots the stores' ledgers report, their walk-in
sales, each fridge's state) and runs `planning.plan_cutoff`; it changes nothing, so
`xiaodian supply plan` can show it at any time. `cutoff` closes the cycle and stores the
same proposal in one transaction: pre-sale lines under their minimum cancelled, the
pre-orders of a store whose fridge cannot take chilled goods moved to another store of the
zone or refunded, the plan lines with their why and the lot the depot sends. A second run
finds the cycle planned and changes nothing.

Forecasts are fitted here from the last `HISTORY_DAYS` of walk-in sales (`sale`
movements); with many stores they belong in a nightly job that stores the rates
(forecast.py), which the cutoff would then read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np

from .. import sql
from ..retail_tables import Refusal, RetailError
from . import settings, waves
from .admission import Admission
from .cycles import Schedule, below_minimum
from .forecast import WeekdayRates, fit_rates
from .model import Cycle, FridgeState, Store
from .planning import Plan, PreOrder, StockLot, plan_cutoff

HISTORY_DAYS = 28
FRIDGE_REASON = {FridgeState.ALARM: "fridge_alarm", FridgeState.OFFLINE: "fridge_offline"}


@dataclass
class Proposal:
    zone: str
    wave: date
    schedule: Schedule
    stores: list[Store]
    items: list[settings.SupplyItem]
    plan: Plan
    fridges: dict[str, FridgeState]
    below_minimum: list[str]  # pre-sale items whose lines are cancelled
    cancelled_lines: list[tuple[int, str]]  # (order, item)
    moved: list[tuple[int, str, str]] = field(default_factory=list)  # (order, from, to)
    refunded: list[tuple[int, str, str]] = field(default_factory=list)  # (order, store, why)

    def batch(self) -> str:
        """The lot name the depot's delivery carries (the depot's own lot numbers would
        replace it once a depot system reports them)."""
        return f"D{self.plan.delivery:%Y%m%d}"

    def expiry(self, item: settings.SupplyItem) -> date:
        """The last day the delivered lot may be sold."""
        return self.plan.delivery + timedelta(days=item.item.shelf_life_days - 1)


def default_wave(schedule: Schedule, now: float) -> date:
    """The wave whose cutoff passed last (the one a cutoff run at 23:05 closes)."""
    return schedule.wave_of(now) - timedelta(days=1)


def fridge_states(conn: sql.Connection, stores: Sequence[str]) -> dict[str, FridgeState]:
    """OK unless the terminal is offline (or never reported) or a critical alert is open."""
    online = {r[0]: bool(r[1]) for r in conn.execute("SELECT store, online FROM store_state")}
    alarmed = {r[0] for r in conn.execute(
        "SELECT DISTINCT store FROM alerts WHERE state = 'active' AND severity = 'critical'")}
    out: dict[str, FridgeState] = {}
    for s in stores:
        if not online.get(s, False):
            out[s] = FridgeState.OFFLINE
        elif s in alarmed:
            out[s] = FridgeState.ALARM
        else:
            out[s] = FridgeState.OK
    return out


def check_zone(conn: sql.Connection, zone: str) -> None:
    """A zone no store is in and no timetable names is a typo, not an empty zone."""
    if zone not in settings.zones(conn):
        raise RetailError(Refusal.NOT_FOUND, f"no delivery zone {zone[:40]!r}: no store is"
                          " in it (xiaodian supply store set STORE --zone ...)")


def propose(conn: sql.Connection, zone: str, wave: date) -> Proposal:
    """What the engine would plan for the zone's wave now; reads only."""
    check_zone(conn, zone)
    schedule = settings.get_zone(conn, zone)
    stores = settings.zone_stores(conn, zone)
    items = settings.items(conn)
    ids = [s.id for s in stores]
    fridges = fridge_states(conn, ids)
    lines = waves.preorder_lines(conn, zone, wave)
    totals: dict[str, int] = {}
    for ln in lines:
        totals[ln["item"]] = totals.get(ln["item"], 0) + ln["qty"]
    low = below_minimum(totals, {i.item.id: i.presale_min for i in items})
    cancelled = [(ln["order"], ln["item"]) for ln in lines if ln["item"] in low]
    live = [ln for ln in lines if ln["item"] not in low]
    moved, refunded = _reroute(conn, zone, wave, live, fridges, items)
    moved_to = {o: to for o, _, to in moved}
    gone = {o for o, _, _ in refunded}
    pre = [PreOrder(f"{ln['order']}:{ln['item']}", moved_to.get(ln["order"], ln["store"]),
                    ln["item"], ln["qty"]) for ln in live if ln["order"] not in gone]
    cycle = Cycle(cutoff_hour=schedule.cutoff.hour, lead_time_days=schedule.lead_time_days,
                  tz=schedule.tz)
    plan = plan_cutoff(wave, cycle, stores, [i.item for i in items], pre,
                       _stock(conn, ids, {i.item.id for i in items}),
                       _rates(conn, stores, items, wave, schedule), fridges)
    return Proposal(zone, wave, schedule, stores, items, plan, fridges, low, cancelled,
                    moved, refunded)


def cutoff(conn: sql.Connection, zone: str, wave: date, now: float, by: str
           ) -> tuple[dict[str, Any], bool]:
    """Close the zone's wave and store its plan, in the caller's transaction. Returns the
    cycle and whether this run changed anything (False: it was planned already)."""
    check_zone(conn, zone)
    schedule = settings.get_zone(conn, zone)
    cyc = waves.ensure_cycle(conn, zone, wave, schedule, now)
    if waves.reached(cyc["state"], "planned"):
        return cyc, False
    waves.advance(conn, zone, wave, "cutoff", now)
    p = propose(conn, zone, wave)
    for order, item in p.cancelled_lines:
        conn.execute("UPDATE order_lines SET line_state = ? WHERE order_id = ? AND item = ?",
                     (settings.LINE_CANCELLED_MIN, order, item))
    for order in sorted({o for o, _ in p.cancelled_lines}):
        left = conn.execute("SELECT COUNT(*) FROM order_lines WHERE order_id = ? AND"
                            " line_state = ''", (order,)).fetchone()[0]
        if left == 0:
            waves.end_preorder(conn, order, "cancelled", settings.LINE_CANCELLED_MIN, now)
    for order, src, to in p.moved:
        waves.move_preorder(conn, order, to, FRIDGE_REASON[p.fridges[src]])
    for order, _, why in p.refunded:
        waves.end_preorder(conn, order, "refunded", why, now)
    _tell(conn, p, now)
    by_id = {i.item.id: i for i in p.items}
    rows = []
    for ln in p.plan.lines():
        reasons = {k: (round(v, 3) if isinstance(v, float) else v)
                   for k, v in ln.why._asdict().items()}
        rows.append((zone, wave.isoformat(), ln.store, ln.item, ln.qty, json.dumps(reasons),
                     p.batch(), p.expiry(by_id[ln.item]).isoformat()))
    conn.executemany("INSERT INTO plan_lines (zone, wave, store, item, qty, why, batch,"
                     " expiry) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    waves.advance(conn, zone, wave, "planned", now)
    # The manifests go to the stores now, not at dispatch: a store holds the pieces of its
    # stock the plan netted against pre-orders (`from_stock`) from the cutoff on.
    # (Imported here: dispatch -> manifest -> cutoff.)
    from .dispatch import send_manifests
    send_manifests(conn, zone, wave, now)
    got = waves.get_cycle(conn, zone, wave)
    assert got is not None
    return got, True


def _tell(conn: sql.Connection, p: Proposal, now: float) -> None:
    """The residents of pre-orders the cutoff moved or cancelled, told (once each)."""
    from .. import resident_notices as rn
    from .. import stores

    def name(store: str) -> str:
        return stores.get(conn, store).name

    about = p.wave.isoformat()
    items = {i.item.id: i for i in p.items}
    for order, item in p.cancelled_lines:
        rn.add(conn, order, rn.LINE_CANCELLED, f"{about}:{item}",
               {"item": item, "name": items[item].name, "min": items[item].presale_min}, now)
    for order, src, to in p.moved:
        rn.add(conn, order, rn.MOVED, about, {"from": name(src), "to": name(to),
                                              "reason": FRIDGE_REASON[p.fridges[src]]}, now)
    for order, _, why in p.refunded:
        rn.add(conn, order, rn.CANCELLED, about, {"reason": why}, now)


def plan_rows(conn: sql.Connection, zone: str, wave: date,
              store: str | None = None) -> list[dict[str, Any]]:
    """The stored plan of a wave (what the cutoff decided), store by store."""
    only = "" if store is None else " AND p.store = ?"
    params: tuple[Any, ...] = (zone, wave.isoformat()) + (() if store is None else (store,))
    return [{"store": r[0], "item": r[1], "qty": int(r[2]), "why": json.loads(r[3]),
             "batch": r[4], "expiry": r[5], "name": r[6] or r[1]} for r in conn.execute(
        "SELECT p.store, p.item, p.qty, p.why, p.batch, p.expiry, i.name FROM plan_lines p"
        " LEFT JOIN supply_items i ON i.item = p.item"
        f" WHERE p.zone = ? AND p.wave = ?{only} ORDER BY p.store, p.item", params)]


# ---------------------------------------------------------------- inputs


def _reroute(conn: sql.Connection, zone: str, wave: date, lines: Sequence[Mapping[str, Any]],
             fridges: Mapping[str, FridgeState], items: Sequence[settings.SupplyItem]
             ) -> tuple[list[tuple[int, str, str]], list[tuple[int, str, str]]]:
    """Whole pre-orders with a chilled line at a store whose fridge cannot take it: to the
    store of the zone with a working fridge and the most pickup room that accepts the
    order (admission), else refunded. Same rule as admission.offer_elsewhere, per order."""
    chilled = {i.item.id for i in items if i.item.chilled}
    orders: dict[int, list[tuple[str, int]]] = {}
    home: dict[int, str] = {}
    for ln in lines:
        orders.setdefault(ln["order"], []).append((ln["item"], ln["qty"]))
        home[ln["order"]] = ln["store"]
    hit = [o for o, ls in orders.items() if fridges.get(home[o]) is not FridgeState.OK
           and any(i in chilled for i, _ in ls)]
    if not hit:
        return [], []
    adm: Admission = waves.admission_for(conn, zone, wave)
    moved: list[tuple[int, str, str]] = []
    refunded: list[tuple[int, str, str]] = []
    for o in hit:
        src = home[o]
        adm.release(src, orders[o])
        candidates = sorted(
            (s for s in adm.stores.values()
             if s.id != src and fridges.get(s.id) is FridgeState.OK),
            key=lambda s: (adm.orders.get(s.id, 0) - s.pickup_capacity, s.id))
        for s in candidates:
            if adm.accept(s.id, orders[o]) is None:
                moved.append((o, src, s.id))
                break
        else:
            refunded.append((o, src, FRIDGE_REASON[fridges.get(src, FridgeState.OFFLINE)]))
    return moved, refunded


def _stock(conn: sql.Connection, stores: Sequence[str], items: set[str]) -> list[StockLot]:
    if not stores:
        return []
    marks = ", ".join("?" for _ in stores)
    out = []
    for store, item, expiry, qty in conn.execute(
            f"SELECT store, item, expiry, on_hand FROM stock WHERE store IN ({marks})"
            " AND on_hand > 0", tuple(stores)):
        if item in items:
            out.append(StockLot(store, item, date.fromisoformat(expiry) if expiry else None,
                                int(qty)))
    return out


def _rates(conn: sql.Connection, stores: Sequence[Store],
           items: Sequence[settings.SupplyItem], wave: date, schedule: Schedule
           ) -> WeekdayRates:
    """Walk-in rates per store x item (store-major) from the stores' sales up to the
    wave's day, in the zone's local days."""
    first = wave - timedelta(days=HISTORY_DAYS - 1)
    history = np.zeros((len(stores) * len(items), HISTORY_DAYS))
    if not stores or not items:
        return WeekdayRates(np.zeros((0, 7)), np.zeros(0, dtype=np.int8), wave)
    s_ix = {s.id: k for k, s in enumerate(stores)}
    i_ix = {i.item.id: k for k, i in enumerate(items)}
    start = datetime.combine(first, datetime.min.time(), schedule.zone).timestamp()
    end = schedule.cutoff_at(wave)
    marks = ", ".join("?" for _ in stores)
    for store, item, qty, wall in conn.execute(
            f"SELECT store, item, qty, wall FROM movements WHERE kind = 'sale' AND store IN"
            f" ({marks}) AND wall >= ? AND wall < ?", (*s_ix, start, end)):
        if item not in i_ix:
            continue
        day = (datetime.fromtimestamp(wall, schedule.zone).date() - first).days
        if 0 <= day < HISTORY_DAYS:
            history[s_ix[store] * len(items) + i_ix[item], day] += -int(qty)
    return fit_rates(history, wave)
