"""A pickup at the counter: the scanned code verified (rate-limited against guessing), the
order handed over, and the clerk's confirmation or cancellation.

The confirmation is one transaction: stock out of the lots, the order picked up, the
code spent, the lane checks and the cloud's progress event.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from edge.retail import ledger
from edge.retail.desk import Desk, RetailError
from edge.retail.handover import Handover, PickLine
from edge.retail.smart_fridge import SmartFridges
from edge.retail.verify import Accepted, RateLimiter, Refused, check_code
from edge.scan.redeemed import RedeemedCodes
from edge.words import Sentences
from xiaodian.i18n import N_, Message
from xiaodian.wire.pickup import PickupCodec
from xiaodian.wire.retail import Movement, OrderProgress, pickup_refusal_data, progress_data

# Refusals that count towards the rate limit: the code itself is not genuine.
GUESSES = frozenset({"malformed", "oversize", "wrong_store", "unknown_key", "bad_mac"})

# Why a clerk may confirm a smart-fridge pickup nobody weighed (the page offers these; the
# code is recorded with the order, at the terminal and in the cloud's order event).
UNWEIGHED_REASONS = {
    "fridge_not_answering": N_("The fridge does not answer"),
    "scale_not_settling": N_("The scale does not settle"),
    "taken_by_hand": N_("Taken out by hand"),
}


class PickupFlow:
    def __init__(self, desk: Desk, fridges: SmartFridges, codec: PickupCodec | None,
                 limiter: RateLimiter) -> None:
        self.desk = desk
        self.fridges = fridges
        self.codec = codec  # None: no pickup key configured, every code is refused
        self.limiter = limiter
        self.redeemed = RedeemedCodes(desk.db)
        self.rate_limit_reported = 0.0  # the lockout already reported to the cloud

    def pickup(self, code: str, source: str) -> dict[str, Any]:
        """A scanned pickup code: refused (and counted), or its handover started."""
        desk = self.desk
        wall, _ = desk.now()
        wait = self.limiter.blocked(wall)
        if wait > 0:
            # One refusal event per lockout, not one per scan of a bot at the scanner.
            if self.rate_limit_reported != self.limiter.locked_until:
                self.rate_limit_reported = self.limiter.locked_until
                desk.commit([("counter", "pickup", pickup_refusal_data("rate_limited"))])
            return desk.say(False, Message(N_("Too many failed pickup scans")),
                            Message(N_("Scanning paused: try again in %(s)s s. If a customer "
                                       "keeps showing bad codes, call support."),
                                    {"s": int(wait) + 1}), reason="rate_limited",
                            source=source)
        verdict = check_code(self.codec, code, wall, desk.order_state,
                             self.redeemed.redeemed_at)
        if isinstance(verdict, Refused):
            # Only what could be someone guessing counts: a genuine code for an order
            # that is cancelled or not yet here is no attack, and must not lock the clerk out.
            pause = self.limiter.failure(wall) if verdict.reason in GUESSES else 0.0
            desk.commit([("counter", "pickup", pickup_refusal_data(verdict.reason))])
            msg = verdict.message
            if pause:
                msg = Sentences((*msg.parts, Message(
                    N_("Too many failed scans: scanning paused for %(s)s s."),
                    {"s": int(pause)})))
            return desk.say(False, Message(N_("Do not hand over")), msg, reason=verdict.reason,
                            source=source)
        self.limiter.success()
        return self._start(verdict, source)

    def _start(self, ok: Accepted, source: str) -> dict[str, Any]:
        desk = self.desk
        order = desk.order(ok.order.id)
        assert order is not None
        h = self.fridges.handover
        if h is not None and h.order != order.id:
            return desk.say(False, Message(N_("Finish order %(order)s first"),
                                           {"order": h.order}),
                            Message(N_("Confirm or cancel the handover of order %(order)s "
                                       "(%(customer)s) before starting order %(next)s."),
                                    {"order": h.order, "customer": h.customer,
                                     "next": order.id}),
                            reason="busy", source=source, order=h.order)
        if h is None:
            lines = [PickLine(ln.item, desk.name(ln.item), ln.qty,
                              desk.catalogue[ln.item].location
                              if ln.item in desk.catalogue else None) for ln in order.lines]
            h = Handover(order.id, order.customer, lines, {})
            self.fridges.begin(h, ok.ticket.nonce)
        return desk.say(True, Message(N_("Order %(order)s: %(customer)s"),
                                      {"order": order.id, "customer": order.customer}),
                        Message(N_("Hand over:")),
                        order=order.id, source=source, handover=h.view())

    def confirm(self, order_id: int, handed: dict[str, int] | None,
                override: str | None = None) -> dict[str, Any]:
        """The clerk confirms the handover: stock moves, the order is picked up, the code
        is spent, the cloud hears it (all one transaction).

        A smart-fridge line is confirmed only once its fridge's door has been opened and
        shut and its lanes have settled (what was taken is weighed); before that, only
        with `override`, the clerk's reason (a key of UNWEIGHED_REASONS), which is kept
        with the order here and goes to the cloud in its `order` event."""
        desk, fridges = self.desk, self.fridges
        h = fridges.handover
        if h is None or h.order != order_id:
            raise RetailError(Message(N_("Order %(order)s is not being handed over."),
                                      {"order": order_id}))
        unweighed = h.unweighed()
        if override is not None and override not in UNWEIGHED_REASONS:
            raise RetailError(Message(N_("Choose why it is handed over unweighed.")))
        if unweighed and override is None:
            return desk.say(False, Message(N_("Not weighed yet")), Sentences((
                Message(N_("%(fridges)s: the items taken have not been weighed."),
                        {"fridges": ", ".join(unweighed)}),
                Message(N_("Wait until the door is shut and the weighing is done, or confirm "
                           "without weighing and say why.")))),
                reason="unweighed", order=order_id, unweighed=unweighed)
        if not unweighed:
            override = None  # weighed after all: nothing to excuse
        taken = h.taken()
        qty: dict[str, int] = {}
        for ln in h.lines:  # what the clerk says, else what the lanes measured, else ordered
            measured = taken[ln.item]
            qty[ln.item] = (handed or {}).get(ln.item, ln.qty if measured is None else measured)
        diffs = tuple((ln.item, qty[ln.item] - ln.qty) for ln in h.lines
                      if qty[ln.item] != ln.qty)
        wall, _ = desk.now()
        moves: list[Movement] = []
        for ln in h.lines:
            n = qty[ln.item]
            if n > 0:
                moves += ledger.outgoing("pickup", ledger.lots(desk.db, ln.item), ln.item, n,
                                         order=order_id)
        note = ("handed over with differences" if diffs else None) if override is None else (
            f"handed over unweighed ({override})")
        events, write = desk.moves(moves, wall)
        events += [(c.fridge, "lane_check", c.data()) for c in h.checks()]
        later, _, hand_back = fridges.release(  # a door still open, a lane still moving
            h, f"during the handover of order {order_id}, confirmed before it was weighed", qty)
        events += later
        events.append(("orders", "order", progress_data(
            OrderProgress(order_id, "picked_up", diffs, note, unweighed=override))))
        st = desk.order_state(order_id)
        nonce = fridges.nonce

        def write_all(db: sqlite3.Connection) -> None:
            write(db)
            desk.set_state(db, order_id, "picked_up", wall, note)
            db.execute("INSERT INTO pickup_redeemed (store, order_id, nonce, redeemed_at) "
                       "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                       (desk.store_id, order_id, nonce, wall))
            ledger.clear_handover(db)  # done with: a restart must not bring it back
        if st is None or st.state != "received":
            fridges.end(cleared=False)
            raise RetailError(Message(N_("Order %(order)s can no longer be handed over."),
                                      {"order": order_id}))
        desk.commit(events, write_all)
        hand_back()
        fridges.end()
        desk.check_expiry()
        after = (Message(N_("Confirmed without weighing: %(reason)s. The lanes are checked "
                            "once they settle."), {"reason": Message(UNWEIGHED_REASONS[override])})
                 if override is not None else None)
        if diffs:
            text = "; ".join(f"{desk.name(i)} {d:+d}" for i, d in diffs)  # names: data
            parts = (Message(N_("Differences: %(list)s"), {"list": text}),)
            return desk.say(True, Message(N_("Order %(order)s picked up, with differences"),
                                          {"order": order_id}),
                            Sentences(parts + ((after,) if after else ())),
                            order=order_id, differences=[list(d) for d in diffs])
        return desk.say(True, Message(N_("Order %(order)s picked up"), {"order": order_id}),
                        after or Message(N_("Stock updated.")), order=order_id,
                        unweighed=override)

    def abort(self) -> dict[str, Any]:
        """The clerk cancels the handover: the order stays `received` and its code stays
        good (the customer may come back), but what left the fridge meanwhile is reported
        (lane checks, order named) in the same commit that forgets the handover."""
        desk, fridges = self.desk, self.fridges
        h = fridges.handover
        if h is None:
            return desk.say(False, Message(N_("No handover to cancel")))
        events, checks, hand_back = fridges.release(
            h, f"during a cancelled handover of order {h.order}")
        if events:
            desk.commit(events, ledger.clear_handover)
        hand_back()
        fridges.end(cleared=bool(events))
        gone = [c.words for c in checks if c.verdict == "mismatch" and c.words is not None]
        parts: tuple[Message, ...] = (Message(N_("The order still waits for pickup.")),)
        if gone:
            parts += (Message(N_("Taken from the fridge and not handed over: %(list)s. "
                                 "Reported to the owner as missing; put it back or count it."),
                              {"list": Sentences(tuple(gone))}),)
        return desk.say(False, Message(N_("Handover of order %(order)s cancelled"),
                                       {"order": h.order}), Sentences(parts),
                        order=h.order, missing=gone)
