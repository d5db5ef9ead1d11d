"""A device event as the technician reads it on the device page, in the reader's words.

The events' data are the controller's codes (firmware_bridge/codec.py: compressor, defrost
and reset reasons) and the agent's link states; an unknown (newer) code is shown as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xiaodian.i18n import N_, Translator

COMPRESSOR_REASONS = {
    "thermostat": N_("thermostat"), "min_off_time": N_("after its minimum off time"),
    "defrost_start": N_("defrost began"), "defrost_end": N_("defrost ended"),
    "command": N_("by command"), "power": N_("mains"), "fault": N_("safety cycle"),
}
DEFROST_ENDS = {
    "temperature": N_("ended on temperature"), "timeout": N_("ended on its timeout"),
    "power": N_("cut short by a power cut"), "fault": N_("cut short by a fault"),
    "command": N_("ended by command"), "schedule": N_("ended"),
}
RESET_CAUSES = {
    "power_on": N_("power on"), "hard": N_("reset button"), "watchdog": N_("watchdog"),
    "deep_sleep": N_("wake from sleep"), "soft": N_("software restart"),
    "brownout": N_("brownout"), "unknown": N_("unknown cause"),
}


def _code(table: Mapping[str, str], code: Any, t: Translator) -> str:
    return t.gettext(table[code]) if code in table else str(code)


def event_text(type_: str, data: Mapping[str, Any], t: Translator) -> str:
    """One line for the device's event log."""
    key = _KEYS.get(type_)
    if key is not None:
        flag = bool(data.get(key))
        if type_ in ("door", "defrost") and data.get("state_report"):
            type_ += "@attach"
        return t.gettext(_WORDS[(type_, flag)]) % {
            "why": _code(COMPRESSOR_REASONS, data.get("reason"), t),
            "how": _code(DEFROST_ENDS, data.get("reason"), t)}
    if type_ == "hello":
        firmware = ".".join(str(x) for x in data.get("firmware", ()))
        return t.gettext("Controller connected: firmware %(fw)s, boot %(n)s, last restart:"
                         " %(cause)s") % {"fw": firmware, "n": data.get("boot_count", "?"),
                                          "cause": _code(RESET_CAUSES, data.get("reset_cause"),
                                                         t)}
    if type_ == "link":
        return t.gettext(_WORDS[("link", data.get("state") == "up")])
    return type_


_KEYS = {"door": "open", "compressor": "on", "defrost": "active", "power": "mains",
         "lock": "locked"}
# Extra placeholders are ignored by %: every entry takes the same mapping.
_WORDS = {
    ("door", True): N_("Door opened"), ("door", False): N_("Door closed"),
    ("door@attach", True): N_("Door open on connecting"),
    ("door@attach", False): N_("Door shut on connecting"),
    ("compressor", True): N_("Compressor on (%(why)s)"),
    ("compressor", False): N_("Compressor off (%(why)s)"),
    ("defrost", True): N_("Defrost started"), ("defrost", False): N_("Defrost %(how)s"),
    ("defrost@attach", True): N_("Defrost running on connecting"),
    ("defrost@attach", False): N_("No defrost on connecting"),
    ("power", True): N_("Mains on"), ("power", False): N_("Mains lost"),
    ("lock", True): N_("Locked"), ("lock", False): N_("Unlocked"),
    ("link", True): N_("Serial link up"), ("link", False): N_("Serial link lost"),
}
