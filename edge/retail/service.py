"""Retail at the terminal, wired to the agent's database and fridges (owned by its thread).

`Retail` is the facade the agent uses; the work is done by the parts it wires together,
each small and with one responsibility:

- `desk.Desk`: shared state (catalogue, verdict, version) and the one-transaction write;
- `counter.Counter`: scan dispatch, modes, the page's requests and what the page shows;
- `pickup_flow.PickupFlow`: pickup code verification, handover, confirm or cancel;
- `smart_fridge.SmartFridges`: unlocks, doors, lane weights, the handover across a restart;
- `orders.Orders`: the cloud's downlink, order expiry, delivery order states;
- `stock_forms.StockForms`: receive, sale and waste scans, waste and adjust forms.

Every change is one SQLite transaction on the agent's own connection: the ledger row,
the order's new state and the outbox events the cloud will get commit together, so with
the network down everything goes on and is sent later, exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from edge.config import PickupSettings, RetailSettings
from edge.retail import ledger
from edge.retail.counter import MODES, RETAIL_DEVICES, Counter
from edge.retail.desk import Desk, RetailError, local_date
from edge.retail.fridge_commands import UNLOCK_S, FridgeCommands
from edge.retail.handover import Handover, LaneReading, LaneWatch
from edge.retail.orders import DELIVERY_NEXT, Orders
from edge.retail.pickup_flow import GUESSES, PickupFlow
from edge.retail.receive_flow import ReceiveFlow
from edge.retail.smart_fridge import SmartFridges
from edge.retail.stock_forms import StockForms
from edge.retail.verify import OrderState, RateLimiter
from edge.store import EdgeStore, NewEvent, NewReading
from edge.wallclock import WallClock
from xiaodian.wire.pickup import PickupCodec
from xiaodian.wire.retail import CatalogueItem, Downlink, Order

__all__ = ["DELIVERY_NEXT", "GUESSES", "MODES", "RETAIL_DEVICES", "UNLOCK_S", "Retail",
           "RetailError", "local_date"]


class Retail:
    """The agent's one entry point to retail: records from the devices, the cloud's
    downlink, the counter page's requests, the loop's tick and the page's view."""

    def __init__(
        self,
        store: EdgeStore,
        store_id: str,
        clock: WallClock,
        pickup: PickupSettings | None,
        settings: RetailSettings,
        fridges: Mapping[str, FridgeCommands],
        *,
        today: Callable[[float], date] = local_date,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.desk = Desk(store, store_id, clock, settings, today)
        codec = (PickupCodec(store_id, pickup.key(), key_id=pickup.key_id)
                 if pickup is not None else None)
        self.fridges = SmartFridges(self.desk, fridges)
        self.pickup = PickupFlow(self.desk, self.fridges, codec, limiter or RateLimiter())
        self.orders = Orders(self.desk, self.fridges)
        self.forms = StockForms(self.desk, self.fridges.lanes)
        self.receive = ReceiveFlow(self.desk, settings.clerks)
        self.counter = Counter(self.desk, self.fridges, self.pickup, self.orders, self.forms,
                               self.receive)
        self.fridges.load_lanes()
        self.fridges.restore()

    # ------------------------------------------------------------ state others read

    @property
    def version(self) -> int:
        """Bumps on every change the counter page shows."""
        return self.desk.version

    @property
    def verdict(self) -> dict[str, Any]:
        return self.desk.verdict

    @property
    def mode(self) -> str:
        return self.counter.mode

    @property
    def catalogue(self) -> dict[str, CatalogueItem]:
        return self.desk.catalogue

    @property
    def handover(self) -> Handover | None:
        return self.fridges.handover

    @property
    def lanes(self) -> LaneWatch:
        return self.fridges.lanes

    @property
    def rejected(self) -> int:
        return self.orders.rejected

    def order_state(self, order_id: int) -> OrderState | None:
        return self.desk.order_state(order_id)

    def order(self, order_id: int) -> Order | None:
        return self.desk.order(order_id)

    # ------------------------------------------------------------ from the cloud

    def downlink(self, msg: Downlink) -> str:
        return self.orders.downlink(msg)

    def reject(self, topic: str, payload: bytes, reason: str) -> None:
        self.orders.reject(topic, payload, reason)

    # ------------------------------------------------------------ from the devices

    def on_records(self, records: list[NewReading | NewEvent]) -> None:
        """Fresh records the agent just stored: scans, doors, lanes, locks."""
        for r in records:
            if not isinstance(r, NewEvent):
                continue
            if r.type == "scan":
                self.counter.scan(r.transient or str(r.data.get("line", "")), source=r.device)
            else:
                self.fridges.event(r.device, r.type, r.data)
        self.fridges.save()

    def save_handover(self) -> None:
        self.fridges.save()

    def door(self, fridge: str, is_open: bool) -> None:
        self.fridges.door(fridge, is_open)

    def lane_weights(self, fridge: str, readings: list[LaneReading]) -> None:
        self.fridges.lane_weights(fridge, readings)

    # ------------------------------------------------------------ the clerk

    def scan(self, line: str, source: str = "counter") -> dict[str, Any]:
        return self.counter.scan(line, source)

    def handle(self, action: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.counter.handle(action, body)

    def confirm(self, order_id: int, handed: dict[str, int] | None) -> dict[str, Any]:
        return self.pickup.confirm(order_id, handed)

    def abort(self) -> dict[str, Any]:
        return self.pickup.abort()

    def advance_delivery(self, order_id: int) -> dict[str, Any]:
        return self.orders.advance_delivery(order_id)

    def adjust(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.forms.adjust(body)

    def waste(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.forms.waste(body)

    # ------------------------------------------------------------ time and the page

    def tick(self) -> None:
        """Called from the agent's loop: unlock answers, expired orders, the expiry list."""
        self.fridges.tick()
        wall, _ = self.desk.now()
        self.orders.expire_due(wall)
        if self.desk.expiry_day != self.desk.today(wall):
            self.desk.check_expiry()
        self.fridges.save()

    def expiry_list(self) -> list[ledger.Lot]:
        return self.desk.expiry_list()

    def check_expiry(self) -> None:
        self.desk.check_expiry()

    def view(self) -> dict[str, Any]:
        return self.counter.view()
