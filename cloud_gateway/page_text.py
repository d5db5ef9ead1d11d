"""Words a page shows that came from the domain: alert texts and refusals.

`alert_text(row, t)` is the ONE place an alert's text becomes words on a page (the owner
page, the dashboard, the acknowledgement form, the HACCP record): the alert's reason code
and numbers (`data`) rendered by `xiaodian.wire.alert_text.describe`, the same words the
notices and the terminal use. Here, not in cloud_gateway.web, because the HACCP record is
also rendered by the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xiaodian.i18n import N_, Message, Translator
from xiaodian.wire.alert_text import describe


def alert_text(row: dict[str, Any], t: Translator) -> str:
    """An alert's text for the reader (row: an alert as its `to_dict()` or API JSON)."""
    data = row.get("data")
    if isinstance(data, Mapping) and "reason" in data:
        return t.render(describe(str(row.get("rule", "")), data))
    message = row.get("message") or ""  # an agent older than reason codes: its English
    return t.render(message) if isinstance(message, Message) else t.gettext(str(message))


def refusal_text(error: str | Message, t: Translator) -> str:
    """A refusal from the domain (an English msgid or a Message) in the reader's words."""
    return t.render(error) if isinstance(error, Message) else t.gettext(error)


# The alert rules' names (edge/rules, docs/alerts.md) and severities as people read them.
RULE_NAMES = {
    "warm": N_("Warm"), "hot": N_("Too hot"), "hard_limit": N_("Far too hot"),
    "freeze": N_("Freezing"), "door": N_("Door open"), "probe_fault": N_("Probe fault"),
    "probe_disagree": N_("Probes disagree"), "mains": N_("Power cut"),
    "link": N_("No data from the fridge"), "defrost_overrun": N_("Defrost too long"),
    "drift": N_("Running warm"), "cycling": N_("Compressor runs abnormally"),
}
SEVERITY_NAMES = {"ok": N_("Normal"), "warning": N_("Warning"), "critical": N_("Critical")}


def rule_name(rule: str, t: Translator) -> str:
    """A rule's name for the reader; an unknown (newer) rule by its id."""
    return t.gettext(RULE_NAMES[rule]) if rule in RULE_NAMES else rule


def severity_name(severity: str, t: Translator) -> str:
    return t.gettext(SEVERITY_NAMES[severity]) if severity in SEVERITY_NAMES else severity


ORDER_STATE_NAMES = {
    "open": N_("Sent to the store"), "received": N_("Waiting for pickup"),
    "picked_up": N_("Picked up"), "packed": N_("Packed"),
    "out_for_delivery": N_("Out for delivery"),
    "delivered": N_("Delivered"), "cancelled": N_("Cancelled"), "expired": N_("Expired"),
}


def order_state_name(state: str, t: Translator) -> str:
    return t.gettext(ORDER_STATE_NAMES[state]) if state in ORDER_STATE_NAMES else state


# What every template gets to turn the domain's words into the reader's.
TEMPLATE_HELPERS = {"alert_text": alert_text, "rule_name": rule_name,
                    "severity_name": severity_name, "order_state_name": order_state_name}
