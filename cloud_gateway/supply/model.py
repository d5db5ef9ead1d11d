"""The replenishment's nouns: stores, items and the order cycle, as plain values."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from cloud_gateway.errors import CloudError


class SupplyError(CloudError):
    """Replenishment refused its input; the message says which value and why."""


class FridgeState(Enum):
    OK = "ok"
    ALARM = "alarm"  # too warm, door open...: chilled goods must not go in
    OFFLINE = "offline"  # no word from it: nobody can vouch for its temperature


@dataclass(frozen=True)
class Store:
    id: str
    fridge_capacity: float  # volume units (litres, say) of chilled stock it can hold
    pickup_capacity: int  # pre-orders it can hand over per delivery wave
    zone: str

    def __post_init__(self) -> None:
        if not self.id:
            raise SupplyError("store: an id is required")
        if self.fridge_capacity < 0 or self.pickup_capacity < 0:
            raise SupplyError(f"store {self.id}: capacities cannot be negative")


@dataclass(frozen=True)
class Item:
    id: str
    shelf_life_days: int  # sellable on the delivery day and the days after, this many in all
    unit_lot: int  # the smallest quantity the depot sends (1 for loose pieces)
    case_pack: int  # pieces in the supplier's case
    unit_volume: float  # fridge volume one piece takes
    cost: int  # fen per piece, what the store pays
    price: int  # fen per piece, what the resident pays
    chilled: bool
    case_only: bool = False  # the depot cannot split its cases: whole cases only

    def __post_init__(self) -> None:
        if not self.id:
            raise SupplyError("item: an id is required")
        if self.shelf_life_days < 1:
            raise SupplyError(f"item {self.id}: shelf_life_days must be at least 1")
        if self.unit_lot < 1 or self.case_pack < 1:
            raise SupplyError(f"item {self.id}: unit_lot and case_pack must be at least 1")
        if self.unit_volume < 0 or self.cost < 0 or self.price < 0:
            raise SupplyError(f"item {self.id}: volume, cost and price cannot be negative")

    @property
    def order_lot(self) -> int:
        """What quantities are rounded up to: the unit lot, a whole case only if the item
        comes in nothing smaller."""
        return self.case_pack if self.case_only else self.unit_lot


@dataclass(frozen=True)
class Cycle:
    cutoff_hour: int = 23  # local hour; an order placed before it rides this cutoff's wave
    lead_time_days: int = 1  # a cutoff on day d delivers at the opening of day d + lead time
    review_days: int = 1  # one delivery every this many days
    service_level: float = 0.95  # walk-in demand the stock should meet, per line
    tz: str = "Asia/Shanghai"

    def __post_init__(self) -> None:
        if not 0 <= self.cutoff_hour <= 23:
            raise SupplyError("cycle: cutoff_hour must be 0-23")
        if self.lead_time_days < 1 or self.review_days < 1:
            raise SupplyError("cycle: lead_time_days and review_days must be at least 1")
        if not 0.5 <= self.service_level < 1:
            raise SupplyError("cycle: service_level must be in [0.5, 1)")
