"""A store's stock in the simulator, kept by the edge's own ledger code
(edge.retail.ledger): FEFO allocation of sales, pickups and waste over lots with expiry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

from edge.retail import ledger
from edge.retail.ledger import Lot
from xiaodian.wire.retail import Movement


def _carried(lot: Lot) -> Movement:
    # The lot as one movement, so ledger.lots_from can add the new ones to it.
    return Movement("carried", "delivery", lot.item, lot.qty, None, lot.batch, lot.expiry)


class StoreBook:
    def __init__(self) -> None:
        self.lots: dict[str, list[Lot]] = {}

    def on_hand(self, item: str) -> int:
        return sum(lot.qty for lot in self.lots.get(item, ()))

    def _apply(self, item: str, moves: list[Movement]) -> None:
        lots = ledger.lots_from([*map(_carried, self.lots.get(item, ())), *moves])
        # Pieces taken out of no lot are counted by the caller (oversold), not carried.
        self.lots[item] = [lot for lot in lots if lot.batch is not None and lot.qty > 0]

    def receive(self, item: str, qty: int, batch: str, expiry: date) -> None:
        self._apply(item, [Movement(ledger.new_id(), "delivery", item, qty, None, batch,
                                    expiry.isoformat())])

    def take(self, kind: str, item: str, qty: int) -> int:
        """`qty` pieces out (sale, pickup, waste), FEFO; returns how many of them the
        ledger found in no lot (oversold)."""
        moves = ledger.outgoing(kind, self.lots.get(item, ()), item, qty)
        self._apply(item, moves)
        return sum(-m.qty for m in moves if m.batch is None)

    def expire(self, today: date) -> list[tuple[str, int]]:
        """Lots past their last day go to waste: [(item, pieces)]."""
        out = []
        for item, lots in list(self.lots.items()):
            gone = sum(lot.qty for lot in ledger.expiring(lots, today, 0))
            if gone:
                self.take("waste", item, gone)
                out.append((item, gone))
        return out

    def stock(self) -> Iterator[tuple[str, date | None, int]]:
        for item, lots in self.lots.items():
            for lot in lots:
                yield item, None if lot.expiry is None else date.fromisoformat(lot.expiry), \
                    lot.qty
