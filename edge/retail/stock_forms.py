"""Stock the clerk records: a product scanned in receive, sale or waste mode (one piece),
and the stock forms (waste by count, a manual adjustment). Pieces out of the ledger are
taken FEFO, from the label's lot when it names one.

A piece leaving a fridge lane this way is credited to the lane watch, so the drop in
weight it causes is explained and not reported as gone without a sale.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from edge.retail import ledger
from edge.retail.desk import Desk, RetailError, whole_number
from edge.retail.handover import LaneWatch
from edge.scan.parse import Scan
from xiaodian.wire.retail import MAX_QTY, CatalogueItem, Movement, movement_data


class StockForms:
    def __init__(self, desk: Desk, lanes: LaneWatch) -> None:
        self.desk = desk
        self.lanes = lanes

    def scanned(self, mode: str, scan: Scan, item: str, cat: CatalogueItem,
                source: str) -> dict[str, Any]:
        """One piece received (expiry from the label, else the shelf life) or out (sale,
        waste) by a scan in that mode."""
        desk = self.desk
        wall, _ = desk.now()
        if mode == "receive":
            expiry = (scan.expiry.isoformat() if scan.expiry else
                      (desk.today(wall) + timedelta(days=cat.shelf_life_days)).isoformat())
            moves = [Movement(ledger.new_id(), "delivery", item, 1, scan.weight_g, scan.batch,
                              expiry, None, None)]
        else:
            lots = ledger.lots(desk.db, item)
            if scan.batch is not None:  # the label names its lot: take it from that one
                lots = [lot for lot in lots if lot.batch == scan.batch] or lots
            moves = ledger.outgoing(mode, lots, item, 1, grams=scan.weight_g)
            if cat.location is not None:
                self.lanes.explain((cat.location.fridge, cat.location.lane), 1)
        desk.record(moves)
        m = moves[0]
        detail = ", ".join(p for p in (
            f"batch {m.batch}" if m.batch else "", f"expires {m.expiry}" if m.expiry else "",
            f"{m.grams} g" if m.grams else "") if p)
        return desk.say(True, f"{mode.capitalize()}: {cat.name}", detail, source=source,
                        item=item)

    def adjust(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A manual correction (a count, a broken pack): signed pieces, with a reason."""
        desk = self.desk
        item = body.get("item")
        if not isinstance(item, str) or item not in desk.catalogue:
            raise RetailError(f"Unknown item {item!r}.")
        qty = whole_number(body, "qty", signed=True)
        note = body.get("note")
        if qty == 0 or not isinstance(note, str) or not note.strip():
            raise RetailError("An adjustment needs a non-zero quantity and a reason.")
        batch, expiry = body.get("batch"), body.get("expiry")
        batch = batch if isinstance(batch, str) and batch else None
        expiry = expiry if isinstance(expiry, str) and expiry else None
        if qty < 0 and batch is None and expiry is None:
            # Fewer than the ledger says, lot not named: out of the lots on hand, FEFO, so
            # the expiry list does not go on showing pieces that are not there.
            moves = ledger.outgoing("adjust", ledger.lots(desk.db, item), item, -qty,
                                    note=note.strip()[:200])
        else:
            moves = [Movement(ledger.new_id(), "adjust", item, qty, None, batch, expiry, None,
                              note.strip()[:200])]
        try:
            for m in moves:
                movement_data(m)
        except ValueError as exc:
            raise RetailError(str(exc)) from None
        desk.record(moves)
        return desk.say(True, f"Adjusted {desk.name(item)} by {qty:+d}", note.strip())

    def waste(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Pieces thrown away, counted rather than scanned one by one: FEFO (from the
        label's lot if one was scanned), with the reason (expired, damaged, ...)."""
        desk = self.desk
        item = body.get("item")
        if not isinstance(item, str) or item not in desk.catalogue:
            raise RetailError(f"Unknown item {item!r}.")
        qty = whole_number(body, "qty")
        note = body.get("note")
        if not 0 < qty <= MAX_QTY or not isinstance(note, str) or not note.strip():
            raise RetailError(f"Waste needs 1 to {MAX_QTY} pieces and a reason.")
        lots = ledger.lots(desk.db, item)
        batch = body.get("batch")
        if isinstance(batch, str) and batch:
            lots = [lot for lot in lots if lot.batch == batch] or lots
        moves = ledger.outgoing("waste", lots, item, qty, note=note.strip()[:200])
        cat = desk.catalogue[item]
        if cat.location is not None:  # leaving its lane is explained, as a scanned waste
            self.lanes.explain((cat.location.fridge, cat.location.lane), qty)
        desk.record(moves)
        return desk.say(True, f"Waste: {cat.name} ×{qty}", note.strip(), item=item)
