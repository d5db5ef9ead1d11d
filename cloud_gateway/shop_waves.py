"""The resident app's pre-sale: the next delivery wave of the supply cycle (supply/waves.py).

`SupplyWaves` is the `shop.WaveSource` the app runs with. A store takes pre-orders only
with supply settings (`xiaodian supply store set`): its zone's timetable names the wave an
order placed now rides, its cutoff and the delivery day's pickup window. What the wave can
still bring, per item, is what admission would accept (admission.py): nothing once the
store's pickups for the wave are taken, and for a chilled item no more pieces than the
fridge share left holds; an ambient item at most `PRESALE_MAX` pieces (the depot bounds
nothing else). Placing is `waves.place_preorder`, whose refusals (`detail["closed"]`)
become `ShopError`s: a full store is `full` (the page offers the next store), a passed
cutoff `closed`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from xiaodian.i18n import N_, Message
from xiaodian.wire import retail as contract

from . import retail, sql
from .shop import ShopError, Wave
from .supply import settings, waves
from .supply.admission import FRIDGE_FULL, PICKUP_FULL
from .supply.cycles import takes_orders
from .supply.model import SupplyError

PRESALE_MAX = 20  # pieces of one ambient item one pre-order may ask for

FULL = Message(N_("This store's next delivery is full: it takes no more pre-orders."), {})
CLOSED = Message(N_("The next delivery takes no more orders: its cutoff has passed."), {})


class SupplyWaves:
    """The next wave of the store's delivery zone, as the supply tables have it."""

    def next_wave(self, conn: sql.Connection, store: str, now: float) -> Wave | None:
        s = settings.get_store(conn, store)
        if s is None:
            return None
        schedule = settings.get_zone(conn, s.zone)
        wave = schedule.wave_of(now)
        cyc = waves.get_cycle(conn, s.zone, wave)
        cutoff = schedule.cutoff_at(wave) if cyc is None else float(cyc["cutoff_at"])
        if not takes_orders("open" if cyc is None else cyc["state"], cutoff, now):
            return None  # closed early by an operator; the next wave opens at the cutoff
        opens, closes = schedule.pickup_window(wave)
        adm = waves.admission_for(conn, s.zone, wave)
        closed = PICKUP_FULL if adm.orders.get(store, 0) >= s.pickup_capacity else None
        presale: dict[str, int] = {}
        cat = retail.catalogue(conn, store)
        listed = {i["item"] for i in cat["items"]} if cat else set()
        room = s.fridge_capacity * adm.fridge_share - adm.volume.get(store, 0.0)
        for si in settings.items(conn) if closed is None else ():
            it = si.item
            if it.id not in listed:
                continue
            n = PRESALE_MAX
            if it.chilled and it.unit_volume > 0:
                n = min(n, math.floor(room / it.unit_volume + 1e-9))
            if n > 0:
                presale[it.id] = n
        if closed is None and not presale and room <= 0:
            closed = FRIDGE_FULL
        return Wave(cutoff, opens, presale, name=wave.isoformat(), until=closes,
                    delivery=schedule.delivery(wave).isoformat(), tz=schedule.tz,
                    closed=closed)

    def refusal(self, conn: sql.Connection, store: str, lines: Sequence[tuple[str, int]],
                now: float) -> str | None:
        """Why the store's wave cannot take these lines together (pickup_full,
        fridge_full), or None; reads only."""
        s = settings.get_store(conn, store)
        if s is None:
            return waves.CUTOFF_PASSED
        wave = settings.get_zone(conn, s.zone).wave_of(now)
        try:
            return waves.admission_for(conn, s.zone, wave).refusal(store, lines)
        except SupplyError:  # an item the depot does not list
            return FRIDGE_FULL

    def place(self, conn: sql.Connection, store: str, req: retail.OrderRequest, now: float,
              by: str) -> contract.Order:
        """The pre-order on the wave it rides, in the caller's transaction."""
        try:
            order, _wave = waves.place_preorder(conn, store, req, now, by)
        except retail.RetailError as exc:
            closed = exc.detail.get("closed") if isinstance(exc.detail, dict) else None
            if closed in (PICKUP_FULL, FRIDGE_FULL):
                raise ShopError(FULL, kind="full") from exc
            if closed == waves.CUTOFF_PASSED:
                raise ShopError(CLOSED, kind="closed") from exc
            raise ShopError(Message(N_("This store cannot promise everything in your cart."),
                                    {}), kind="full") from exc
        return order


def wave_state(conn: sql.Connection, order_id: int) -> dict[str, Any] | None:
    """A pre-order's wave and where its cycle stands (None: not a pre-order)."""
    row = conn.execute(
        "SELECT w.zone, w.wave, w.outcome, w.reason, c.state, c.cutoff_at, c.delivery,"
        " c.cutoff_done_at, c.delivered_at FROM wave_orders w LEFT JOIN supply_cycles c"
        " ON c.zone = w.zone AND c.wave = w.wave WHERE w.order_id = ?", (order_id,)).fetchone()
    if row is None:
        return None
    return dict(zip(("zone", "wave", "outcome", "reason", "state", "cutoff_at", "delivery",
                     "cutoff_done_at", "delivered_at"), tuple(row), strict=True))
