"""A plan line's why (planning.Why, stored as JSON) as words for people, in parts.

Returned as `Message`s: the page or the command renders them in its reader's language.
Each part is a whole phrase (never a sentence built from pieces); a reader sees them
joined with separators, the terms of the sum first, then what changed the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xiaodian.i18n import N_, Message

REFUSED = {"fridge_alarm": N_("no chilled goods: the fridge is in alarm"),
           "fridge_offline": N_("no chilled goods: the store's terminal is offline")}
CLOSED = {"cutoff_passed": N_("the wave's cutoff has passed"),
          "pickup_full": N_("the store hands over no more pre-orders this wave"),
          "fridge_full": N_("the store's fridge has no more room for pre-orders this wave")}
OUTCOMES = {"held": N_("rides the wave"), "moved": N_("moved to another store"),
            "refunded": N_("refunded"), "cancelled": N_("cancelled")}


def _n(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".") if x != int(x) else str(int(x))


def why_parts(why: Mapping[str, Any]) -> list[Message]:
    parts = [Message(N_("pre-orders %(n)s"), {"n": why["preorders"]}),
             Message(N_("forecast %(n)s"), {"n": _n(why["forecast"])}),
             Message(N_("safety %(n)s"), {"n": _n(why["safety"])}),
             Message(N_("minus sellable stock %(n)s"), {"n": why["netted_stock"]})]
    if why["expiring_excluded"]:
        parts.append(Message(N_("%(n)s expiring first not counted"),
                             {"n": why["expiring_excluded"]}))
    if why["rounded_up"]:
        parts.append(Message(N_("rounded up to a lot of %(lot)s (+%(n)s)"),
                             {"lot": why["lot"], "n": _n(why["rounded_up"])}))
    if why["capped"]:
        parts.append(Message(N_("%(n)s cut: the fridge is full"), {"n": why["capped"]}))
    if why["refused"]:
        parts.append(Message(REFUSED.get(why["refused"], why["refused"])))
    return parts


def why_message(reason: str) -> Message:
    """A refusal code (fridge_alarm, pickup_full, ...) as words."""
    text = REFUSED.get(reason) or CLOSED.get(reason)
    return Message(text) if text is not None else Message(N_("code %(code)s"),
                                                          {"code": reason})
