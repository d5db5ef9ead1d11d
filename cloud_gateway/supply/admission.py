"""Pre-orders accepted only within a store's capacity for the wave, and where the
pre-orders of a store that cannot take chilled goods go instead."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .model import FridgeState, Item, Store, SupplyError
from .planning import PreOrder, RefusedPreOrder

PICKUP_FULL = "pickup_full"  # the store hands over no more pre-orders this wave
FRIDGE_FULL = "fridge_full"  # their chilled goods would not fit its fridge share


@dataclass
class Admission:
    """One wave's bookkeeping: pre-orders accepted per store and the fridge volume they
    take. A store's cycle closes (for this wave) when either limit is reached: pre-orders
    may take at most `fridge_share` of the fridge, the rest is for walk-in stock."""

    stores: Mapping[str, Store]
    items: Mapping[str, Item]
    fridge_share: float = 0.5
    orders: dict[str, int] = field(default_factory=dict)
    volume: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.fridge_share <= 1:
            raise SupplyError("fridge_share: must be in (0, 1]")

    def refusal(self, store: str, lines: Sequence[tuple[str, int]]) -> str | None:
        """Why an order of `lines` (item, qty) for `store` cannot be accepted, or None."""
        s = self.stores.get(store)
        if s is None:
            raise SupplyError(f"pre-order: unknown store {store!r}")
        if self.orders.get(store, 0) + 1 > s.pickup_capacity:
            return PICKUP_FULL
        if self.volume.get(store, 0.0) + self.volume_of(lines) > (
                s.fridge_capacity * self.fridge_share + 1e-9):
            return FRIDGE_FULL
        return None

    def accept(self, store: str, lines: Sequence[tuple[str, int]]) -> str | None:
        """Take the order if it fits (None), else say why not and change nothing."""
        why = self.refusal(store, lines)
        if why is None:
            self.orders[store] = self.orders.get(store, 0) + 1
            self.volume[store] = self.volume.get(store, 0.0) + self.volume_of(lines)
        return why

    def release(self, store: str, lines: Sequence[tuple[str, int]]) -> None:
        """An accepted order leaves this store (offered to another one)."""
        self.orders[store] = self.orders.get(store, 0) - 1
        self.volume[store] = self.volume.get(store, 0.0) - self.volume_of(lines)

    def volume_of(self, lines: Sequence[tuple[str, int]]) -> float:
        """The fridge volume the chilled pieces of `lines` take."""
        total = 0.0
        for item, qty in lines:
            it = self.items.get(item)
            if it is None:
                raise SupplyError(f"pre-order: unknown item {item!r}")
            if it.chilled:
                total += it.unit_volume * qty
        return total


def offer_elsewhere(refused: Sequence[RefusedPreOrder], admission: Admission,
                    fridges: Mapping[str, FridgeState]
                    ) -> tuple[list[tuple[PreOrder, str]], list[PreOrder]]:
    """Each refused pre-order goes to the store of the same zone with a working fridge
    and the most pickup room left that accepts it, else it is refunded. Returns
    (moved: [(pre-order, new store)], refunded). The resident is told either way by the
    caller, which owns the notices."""
    moved: list[tuple[PreOrder, str]] = []
    refunded: list[PreOrder] = []
    for r in refused:
        p = r.preorder
        home = admission.stores[p.store]
        lines = [(p.item, p.qty)]
        admission.release(p.store, lines)
        candidates = sorted(
            (s for s in admission.stores.values()
             if s.zone == home.zone and s.id != home.id
             and fridges.get(s.id, FridgeState.OFFLINE) is FridgeState.OK),
            key=lambda s: (admission.orders.get(s.id, 0) - s.pickup_capacity, s.id))
        for s in candidates:
            if admission.accept(s.id, lines) is None:
                moved.append((PreOrder(p.id, s.id, p.item, p.qty), s.id))
                break
        else:
            refunded.append(p)
    return moved, refunded
