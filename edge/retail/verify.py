"""Pickup codes at the counter (pure): the verdict for a scanned code, and a rate limiter
for repeated failures. The cryptography is xiaodian.wire.pickup's; this adds the order
(known here, not cancelled, not expired, not picked up) and words for the clerk."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from edge.scan.errors import PickupError
from edge.words import Clock, Sentences
from xiaodian.i18n import N_, Message
from xiaodian.wire.pickup import PickupCodec, PickupTicket, _Verifier

# What the clerk reads, per refusal reason: what happened and what to do.
MESSAGES = {
    "no_key": N_("This terminal has no pickup key: pickup codes cannot be checked here. "
                 "Call support."),
    "malformed": N_("Not a readable pickup code. Ask the customer to show the code again."),
    "oversize": N_("Not a pickup code (far too long)."),
    "wrong_store": N_("This code is for another store. The customer's app shows which one."),
    "unknown_key": N_("This code was made with a key this terminal does not know. "
                      "Call support."),
    "bad_mac": N_("NOT a genuine pickup code (forged or altered). Do not hand anything over."),
    "expired": N_("This pickup code has expired."),
    "already_redeemed": N_("This order was already picked up."),
    "unknown_order": N_("This terminal has not received this order yet. Try again in a "
                        "minute; if the network is down, call support."),
    "cancelled": N_("This order was cancelled."),
    "order_expired": N_("This order expired: it was not collected in time."),
    "not_pickup": N_("This is a delivery order, not for pickup at the counter."),
    "rate_limited": N_("Too many failed scans."),
}


@dataclass(frozen=True)
class OrderState:
    """What verification needs to know of an order stored at this terminal."""

    id: int
    mode: str
    state: str
    expires: float
    note: str | None = None


@dataclass(frozen=True)
class Refused:
    reason: str  # a key of MESSAGES
    message: Sentences  # for the clerk: what happened and what to do, then the details


@dataclass(frozen=True)
class Accepted:
    ticket: PickupTicket
    order: OrderState


def refuse(reason: str, detail: Message | None = None) -> Refused:
    parts = (Message(MESSAGES[reason]),) + ((detail,) if detail is not None else ())
    return Refused(reason, Sentences(parts))


def _order(order: int) -> Message:
    return Message(N_("Order %(order)s."), {"order": order})


def check_code(
    codec: _Verifier | PickupCodec | None,
    code: str,
    now: float,
    order: Callable[[int], OrderState | None],
    redeemed_at: Callable[[str, int], float | None],
) -> Accepted | Refused:
    """The verdict for one scanned pickup code, never an exception."""
    if codec is None:
        return refuse("no_key")
    try:
        ticket = codec.verify(code, now)
    except PickupError as exc:
        return refuse(exc.reason)  # (the codec's own words are English, for logs)
    when = redeemed_at(ticket.store_id, ticket.order_id)
    if when is not None:
        return refuse("already_redeemed", Message(
            N_("Order %(order)s, picked up at %(when)s."),
            {"order": ticket.order_id, "when": Clock(when)}))
    o = order(ticket.order_id)
    if o is None:
        return refuse("unknown_order", _order(ticket.order_id))
    if o.state == "picked_up":
        return refuse("already_redeemed", _order(o.id))
    if o.state == "cancelled":
        # The cloud's reason is the shop's own data (its words, as written).
        return refuse("cancelled", Message(N_("Order %(order)s: %(note)s"),
                                           {"order": o.id, "note": o.note})
                      if o.note else _order(o.id))
    if o.mode != "pickup":
        return refuse("not_pickup", _order(o.id))
    if o.state == "expired" or now >= o.expires:
        return refuse("order_expired", Message(N_("Order %(order)s, due by %(when)s."),
                                               {"order": o.id, "when": Clock(o.expires)}))
    if o.state != "received":
        return refuse("already_redeemed", _order(o.id))
    return Accepted(ticket, o)


class RateLimiter:
    """After `limit` failures within `window_s`, refuse every scan for a pause that doubles
    with each lockout (up to `max_pause_s`); a success clears it all. Time is injected."""

    def __init__(self, limit: int = 5, window_s: float = 60.0, pause_s: float = 30.0,
                 max_pause_s: float = 900.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self.pause_s = pause_s
        self.max_pause_s = max_pause_s
        self._failures: deque[float] = deque()
        self._lockouts = 0
        self.locked_until = 0.0

    def blocked(self, now: float) -> float:
        """Seconds still to wait (0: scans are taken)."""
        return max(0.0, self.locked_until - now)

    def failure(self, now: float) -> float:
        """Count a failure; returns the pause it started (0: none)."""
        self._failures.append(now)
        while self._failures and self._failures[0] <= now - self.window_s:
            self._failures.popleft()
        if len(self._failures) < self.limit:
            return 0.0
        pause = min(self.pause_s * 2.0 ** self._lockouts, self.max_pause_s)
        self._lockouts += 1
        self._failures.clear()
        self.locked_until = now + pause
        return pause

    def success(self) -> None:
        self._failures.clear()
        self._lockouts = 0
        self.locked_until = 0.0
