"""Orders at the terminal: the cloud's downlink (catalogue, orders, cancellations, delivery
manifests) stored,
orders expired when their time is up, and a delivery order's states advanced by the clerk.

A redelivered order or an older catalogue is recognised and ignored (the downlink is
acknowledged only after the commit, so a crash means redelivery).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from edge.retail import holds, ledger
from edge.retail.desk import Desk, EventRow, RetailError
from edge.retail.smart_fridge import SmartFridges
from xiaodian.i18n import N_, Message
from xiaodian.wire.retail import (
    Cancel,
    Catalogue,
    Downlink,
    Manifest,
    Movement,
    OrderProgress,
    OrderState,
    progress_data,
)

DELIVERY_NEXT: dict[str, OrderState] = {"received": "packed", "packed": "out_for_delivery",
                 "out_for_delivery": "delivered"}


# A delivery's state, and the button that moves it on, in the clerk's words.
DELIVERY_WORDS = {"received": Message(N_("received")), "packed": Message(N_("packed")),
                  "out_for_delivery": Message(N_("out for delivery")),
                  "delivered": Message(N_("delivered"))}
DELIVERY_BUTTON = {"received": Message(N_("Packed")),
                   "packed": Message(N_("Out for delivery")),
                   "out_for_delivery": Message(N_("Delivered"))}


class Orders:
    def __init__(self, desk: Desk, fridges: SmartFridges) -> None:
        self.desk = desk
        self.fridges = fridges  # a cancelled order may be the one at the counter
        self.rejected = 0

    def downlink(self, msg: Downlink) -> str:
        """Store one catalogue, order or cancellation; returns what was done (for the log).
        A redelivered order or an older catalogue is recognised and ignored."""
        desk = self.desk
        wall, _ = desk.now()
        if isinstance(msg, Catalogue):
            current = ledger.catalogue_version(desk.db)
            if current is not None and msg.version <= current:
                return f"catalogue version {msg.version} ignored (have {current})"
            desk.commit([], lambda db: ledger.replace_catalogue(db, msg))
            desk.catalogue = ledger.load_catalogue(desk.db)
            return f"catalogue version {msg.version} ({len(msg.items)} items)"
        if isinstance(msg, Cancel):
            return self._cancel(msg, wall)
        if isinstance(msg, Manifest):
            kept: list[int | None] = []

            def keep(db: sqlite3.Connection) -> None:
                # Stored and its pre-orders' pieces from stock held, in one transaction.
                kept.append(holds.hold_manifest(db, msg, wall, desk.today(wall))
                            if ledger.store_manifest(db, msg, wall) else None)
            desk.commit([], keep)
            if kept[0] is None:
                return f"manifest {msg.id} already stored (redelivery)"
            return (f"manifest {msg.id} for {msg.delivery} ({len(msg.lines)} lines) stored,"
                    f" {kept[0]} pieces of stock held for pre-orders")
        if desk.order_state(msg.id) is not None:
            return f"order {msg.id} already stored (redelivery)"
        lines = json.dumps([[ln.item, ln.qty] for ln in msg.lines])

        def insert(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO orders (id, mode, customer, created, expires, lines, state,"
                       " updated, note) VALUES (?,?,?,?,?,?,'received',?,NULL)",
                       (msg.id, msg.mode, msg.customer, msg.created, msg.expires, lines, wall))
        desk.commit([("orders", "order", progress_data(OrderProgress(msg.id, "received")))],
                    insert)
        return f"order {msg.id} ({msg.mode}, {len(msg.lines)} lines) stored"

    def _cancel(self, msg: Cancel, wall: float) -> str:
        desk = self.desk
        st = desk.order_state(msg.order)
        if st is None:
            # Remember it, so the order itself arriving late (out of order, or redelivered
            # after it was parked) is not taken for a live one.
            def tombstone(db: sqlite3.Connection) -> None:
                db.execute("INSERT INTO orders (id, mode, customer, created, expires, lines,"
                           " state, updated, note)"
                           " VALUES (?,'unknown','',?,?,'[]','cancelled',?,?)",
                           (msg.order, wall, wall, wall,
                            msg.reason or "cancelled before it arrived"))
            desk.commit([], tombstone)
            return f"cancellation of unknown order {msg.order} kept: the order will be refused"
        if st.state not in ("received",):
            return f"cancellation of order {msg.order} ignored: it is {st.state}"
        h = self.fridges.handover
        ours = h is not None and h.order == msg.order
        checks: list[EventRow] = []
        hand_back: Callable[[], None] = lambda: None  # noqa: E731
        if h is not None and ours:  # what left the fridge meanwhile is still reported
            checks, _, hand_back = self.fridges.release(
                h, f"during the handover of order {h.order}, cancelled by the cloud")

        def write(db: sqlite3.Connection) -> None:
            desk.set_state(db, msg.order, "cancelled", wall, msg.reason)
            if ours:
                ledger.clear_handover(db)
        desk.commit([*checks, ("orders", "order", progress_data(
            OrderProgress(msg.order, "cancelled", note=msg.reason or None)))], write)
        hand_back()
        if ours:
            self.fridges.end()
            desk.say(False, Message(N_("Order %(order)s was just cancelled"),
                                    {"order": msg.order}),
                     Message(N_("Do not hand it over.")))
        return f"order {msg.order} cancelled"

    def reject(self, topic: str, payload: bytes, reason: str) -> None:
        """A downlink message that does not parse: kept with its reason, never retried."""
        wall, _ = self.desk.now()
        self.rejected += 1

        def park(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO retail_rejects (wall, topic, reason, payload) VALUES (?,?,?,?)",
                       (wall, topic, reason[:500], payload[:65536]))
        self.desk.store.add([], extra=park)

    def expire_due(self, wall: float) -> None:
        """Orders not picked up in time expire; the one at the counter waits for the clerk."""
        desk = self.desk
        due = [r[0] for r in desk.db.execute(
            "SELECT id FROM orders WHERE state='received' AND expires <= ?", (wall,))]
        for order_id in due:
            h = self.fridges.handover
            if h is not None and h.order == order_id:
                continue  # the customer is at the counter: let the clerk finish
            self._expire(order_id, wall)

    def _expire(self, order_id: int, wall: float) -> None:
        """An order not collected in time: what was held for it goes back to stock while
        within its shelf life, else to waste (a `waste` movement naming the order), and the
        order's `expired` event says which, all in one transaction."""
        desk = self.desk
        pieces = holds.of_order(desk.db, order_id)
        settled = holds.settle(ledger.lots(desk.db), pieces, desk.today(wall))
        moves = [Movement(ledger.new_id(), "waste", s.item, -k, None, lot.batch, lot.expiry,
                          order_id, f"uncollected pre-order {order_id}: past its date")
                 for s in settled for lot, k in s.wasted]
        back = sum(s.back for s in settled)
        wasted = sum(k for s in settled for _, k in s.wasted)
        note = (f"uncollected: {back} back to stock, {wasted} to waste" if pieces else None)
        events, write_moves = desk.moves(moves, wall)
        events.append(("orders", "order", progress_data(
            OrderProgress(order_id, "expired", note=note))))

        def write(db: sqlite3.Connection) -> None:
            write_moves(db)
            desk.set_state(db, order_id, "expired", wall, note)
            holds.end(db, order_id, note or "expired")
        desk.commit(events, write)
        if moves:
            desk.check_expiry()

    def advance_delivery(self, order_id: int) -> dict[str, Any]:
        """The clerk moves a delivery order on: packing takes its stock out (FEFO)."""
        desk = self.desk
        order, st = desk.order(order_id), desk.order_state(order_id)
        if order is None or st is None or order.mode != "delivery":
            raise RetailError(Message(N_("No delivery order %(order)s."), {"order": order_id}))
        nxt = DELIVERY_NEXT.get(st.state)
        if nxt is None:
            raise RetailError(Message(N_("Order %(order)s: nothing more to do."),
                                      {"order": order_id}))
        wall, _ = desk.now()
        moves: list[Movement] = []
        if nxt == "packed":
            for ln in order.lines:
                moves += ledger.outgoing("dispatch", ledger.lots(desk.db, ln.item), ln.item,
                                         ln.qty, order=order_id)
        events, write = desk.moves(moves, wall)
        events.append(("orders", "order", progress_data(OrderProgress(order_id, nxt))))

        def write_all(db: sqlite3.Connection) -> None:
            write(db)
            desk.set_state(db, order_id, nxt, wall)
        desk.commit(events, write_all)
        desk.check_expiry()
        return desk.say(True, Message(N_("Delivery %(order)s: %(state)s"),
                                      {"order": order_id, "state": DELIVERY_WORDS[nxt]}),
                        order.customer, order=order_id)

    def open_orders(self, wall: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Pickup orders and deliveries the counter page lists (delivered ones for a day)."""
        desk = self.desk
        orders: list[dict[str, Any]] = []
        deliveries: list[dict[str, Any]] = []
        for oid, mode, customer, expires, lines, state in desk.db.execute(
                "SELECT id, mode, customer, expires, lines, state FROM orders WHERE state IN "
                "('received', 'packed', 'out_for_delivery') OR (state='delivered' AND "
                "updated > ?) ORDER BY expires", (wall - 86400,)):
            row = {"order": oid, "customer": customer, "expires": expires, "state": state,
                   "state_text": DELIVERY_WORDS.get(state, state),
                   "next_text": DELIVERY_BUTTON.get(state),
                   "items": [{"item": i, "name": desk.name(i), "qty": q,
                              "where": desk.where(i)} for i, q in json.loads(lines)]}
            (orders if mode == "pickup" else deliveries).append(row)
        return orders, deliveries
