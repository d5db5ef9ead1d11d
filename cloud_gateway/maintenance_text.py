"""A maintenance alert in words (pure): its name, what the vitals show, what to check.

Shared by the technician's pages (cloud_gateway/web/fleet.py) and the notices
(alerts/notice_text.py), so a notice says what the page says. Rendered in the reader's
language by the caller (`Translator.render`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xiaodian.i18n import N_, Message

NAMES = {
    "duty_rising": N_("compressor working harder"),
    "defrost_timeouts": N_("defrosts ending on their timer"),
    "pulldown_slower": N_("slower pull-down after door openings"),
    "probe_dropouts": N_("probe dropping out"),
}
_SHOWS = {
    "duty_rising": N_("duty cycle %(duty_pct)s %% over 7 days, %(rise_pct)s %% above the "
                      "28-day baseline (%(baseline_pct)s %%) at similar door activity"),
    "defrost_timeouts": N_("%(timeouts)s of %(defrosts)s defrosts in 24 h ended on their "
                           "timer, not on the evaporator's temperature"),
    "pulldown_slower": N_("pull-down after a door opening now %(median_min)s min, "
                          "baseline %(baseline_min)s min, rising"),
    "probe_dropouts": N_("probe %(probe)s dropped out %(episodes)s times in 7 days "
                         "(%(bad_readings)s of %(readings)s readings)"),
}
CHECKS = {
    "duty_rising": N_("Clean the condenser; check for a refrigerant leak, the door seal and "
                      "ice on the evaporator."),
    "defrost_timeouts": N_("Check the evaporator for ice, the drain, the defrost heater and "
                           "the termination probe."),
    "pulldown_slower": N_("Check the condenser, the refrigerant charge and the evaporator "
                          "fan."),
    "probe_dropouts": N_("Check the probe's cable and connector; replace the probe."),
}


def name(rule: str) -> Message | str:
    return Message(NAMES[rule]) if rule in NAMES else rule


def shows(rule: str, evidence: Mapping[str, Any]) -> Message | str:
    """What the vitals show, from the finding's evidence."""
    if rule not in _SHOWS:
        return ""
    params = dict(evidence)
    for k in ("median_s", "baseline_s"):
        if isinstance(params.get(k), int | float):
            params[k.replace("_s", "_min")] = f"{params[k] / 60:.1f}"
    try:
        Message(_SHOWS[rule], params).__str__()
    except (KeyError, TypeError, ValueError):
        return ""  # an older row without every number: the name says enough
    return Message(_SHOWS[rule], params)


def check(rule: str) -> Message | str:
    return Message(CHECKS[rule]) if rule in CHECKS else ""
