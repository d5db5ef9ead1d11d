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

from edge.retail import holds, ledger
from edge.retail.desk import Desk, RetailError, whole_number
from edge.retail.handover import LaneWatch
from edge.scan.parse import Scan
from edge.words import Day, Facts, Grams, Money, Sentences
from xiaodian.i18n import N_, Message
from xiaodian.wire.retail import MAX_QTY, CatalogueItem, Movement, movement_data

SCANNED = {"receive": N_("Received: %(name)s"), "sale": N_("Sale: %(name)s"),
           "waste": N_("Waste: %(name)s")}
# Why a sale may take an item below zero on hand (the page offers these; the reason is the
# sale's note, in the ledger and in its `stock` event).
BELOW_ZERO_REASONS = {
    "delivery not scanned in": N_("Delivery not scanned in"),
    "miscounted": N_("The count was wrong"),
    "other stock": N_("From stock not on record"),
}


NOTE = "sold below zero: "  # the start of such a sale's note; the reason follows


class StockForms:
    def __init__(self, desk: Desk, lanes: LaneWatch) -> None:
        self.desk = desk
        self.lanes = lanes

    def scanned(self, mode: str, scan: Scan, item: str, cat: CatalogueItem,
                source: str, line: str = "", below_zero: str | None = None) -> dict[str, Any]:
        """One piece received (expiry from the label, else the shelf life) or out (sale,
        waste) by a scan in that mode. A sale the ledger has no piece for asks first (once
        per item while it stays below zero): `below_zero` is the clerk's reason."""
        desk = self.desk
        wall, _ = desk.now()
        extra = None
        if mode == "receive":
            expiry = (scan.expiry.isoformat() if scan.expiry else
                      (desk.today(wall) + timedelta(days=cat.shelf_life_days)).isoformat())
            moves = [Movement(ledger.new_id(), "delivery", item, 1, scan.weight_g, scan.batch,
                              expiry, None, None)]
        else:
            lots = ledger.lots(desk.db, item)
            note = None
            if mode == "sale":
                on_hand = sum(lot.qty for lot in lots)
                held = holds.held(desk.db, item, wall)
                if on_hand >= 1 and on_hand - held < 1:
                    return desk.say(False, Message(N_("%(name)s: held for pre-orders"),
                                                   {"name": cat.name}),
                                    Message(N_("All %(n)s on hand are held for customers who"
                                               " pre-ordered it: nothing recorded; do not"
                                               " sell it."), {"n": on_hand}),
                                    reason="held", item=item, source=source)
                asked = self._below_zero(item, sum(lot.qty for lot in lots), below_zero,
                                         code=line, source=source)
                if isinstance(asked, dict):
                    return asked
                note, extra = asked
            if scan.batch is not None:  # the label names its lot: take it from that one
                lots = [lot for lot in lots if lot.batch == scan.batch] or lots
            moves = ledger.outgoing(mode, lots, item, 1, grams=scan.weight_g, note=note)
            if cat.location is not None:
                self.lanes.explain((cat.location.fridge, cat.location.lane), 1)
        desk.record(moves, extra)
        m = moves[0]
        details = [Message(N_("Batch %(batch)s"), {"batch": m.batch}) if m.batch else None,
                   Message(N_("Expires %(date)s"), {"date": Day(m.expiry)}) if m.expiry else None,
                   Message(N_("Recorded below zero: %(reason)s"),
                           {"reason": Message(BELOW_ZERO_REASONS[m.note[len(NOTE):]])})
                   if m.note and m.note.startswith(NOTE) else None]
        # A weighed good's label carries its weight and price: the clerk reads both.
        return desk.say(True, Message(SCANNED[mode], {"name": cat.name}),
                        Facts(tuple(d for d in details if d is not None)),
                        source=source, item=item,
                        weight=None if scan.weight_g is None else Grams(scan.weight_g),
                        price=None if scan.price_fen is None else Money(scan.price_fen))

    def _below_zero(self, item: str, on_hand: int, answer: str | None, **extra: Any) -> (
            dict[str, Any] | tuple[str | None, ledger.Writer | None]):
        """A sale of one piece with `on_hand` in the ledger: the question to ask (a verdict),
        or the sale's note and what to remember with it. Asked once: the reason given is
        kept while the item stays below zero, and used again for its next sales."""
        desk = self.desk
        key = f"below_zero:{item}"
        remembered = ledger.meta(desk.db, key)
        if on_hand >= 1:
            if remembered is None:
                return None, None
            return None, lambda db: ledger.del_meta(db, key)  # back above zero: forget it
        if answer is not None and answer not in BELOW_ZERO_REASONS:
            raise RetailError(Message(N_("Choose why the item is sold below zero.")))
        reason = answer or (remembered if on_hand < 0 else None)
        if reason is None or reason not in BELOW_ZERO_REASONS:
            return desk.say(False, Message(N_("%(name)s: none on record"),
                                           {"name": desk.name(item)}), Sentences((
                Message(N_("The ledger has %(n)s on hand: this sale takes it to %(after)s."),
                        {"n": on_hand, "after": on_hand - 1}),
                Message(N_("Say why, and the sale is recorded with the reason.")))),
                reason="below_zero", item=item, **extra)
        return NOTE + reason, lambda db: ledger.set_meta(db, key, reason)

    def adjust(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A manual correction (a count, a broken pack): signed pieces, with a reason."""
        desk = self.desk
        item = body.get("item")
        if not isinstance(item, str) or item not in desk.catalogue:
            raise RetailError(Message(N_("Choose the item.")))
        qty = whole_number(body, "qty", signed=True)
        note = body.get("note")
        if qty == 0 or not isinstance(note, str) or not note.strip():
            raise RetailError(Message(N_("An adjustment needs a non-zero quantity and a "
                                         "reason.")))
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
        except ValueError:
            raise RetailError(Message(N_("The batch or the date is not valid."))) from None
        desk.record(moves)
        return desk.say(True, Message(N_("Adjusted %(name)s by %(qty)s"),
                                      {"name": desk.name(item), "qty": f"{qty:+d}"}),
                        reason_words(note.strip()), item=item)

    def waste(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Pieces thrown away, counted rather than scanned one by one: FEFO (from the
        label's lot if one was scanned), with the reason (expired, damaged, ...)."""
        desk = self.desk
        item = body.get("item")
        if not isinstance(item, str) or item not in desk.catalogue:
            raise RetailError(Message(N_("Choose the item.")))
        qty = whole_number(body, "qty")
        note = body.get("note")
        if not 0 < qty <= MAX_QTY or not isinstance(note, str) or not note.strip():
            raise RetailError(Message(N_("Waste needs 1 to %(max)s pieces and a reason."),
                                      {"max": MAX_QTY}))
        lots = ledger.lots(desk.db, item)
        batch = body.get("batch")
        if isinstance(batch, str) and batch:
            lots = [lot for lot in lots if lot.batch == batch] or lots
        moves = ledger.outgoing("waste", lots, item, qty, note=note.strip()[:200])
        cat = desk.catalogue[item]
        if cat.location is not None:  # leaving its lane is explained, as a scanned waste
            self.lanes.explain((cat.location.fridge, cat.location.lane), qty)
        desk.record(moves)
        return desk.say(True, Message(N_("Waste: %(name)s ×%(qty)s"),
                                      {"name": cat.name, "qty": qty}),
                        reason_words(note.strip()), item=item)


# The stock form's reasons: the English words are what is recorded (the note), these are
# what the clerk reads.
FORM_REASONS = {"count correction": N_("count correction"), "damaged": N_("damaged"),
                "found": N_("found"), "expired": N_("expired"), "spoiled": N_("spoiled")}


def reason_words(note: str) -> Message | str:
    """A recorded reason in the clerk's words (a note typed elsewhere is shown as it is)."""
    return Message(FORM_REASONS[note]) if note in FORM_REASONS else note
