"""The words of a notice (webhook, e-mail, Apprise), in the contact's language (pure).

zh-CN unless the contact asked for English (`lang = "en"`); times in the store's own
time zone (its escalation `timezone`, Asia/Shanghai by default). What the alert is about
comes from the shared renderer, `xiaodian.wire.alert_text`, fed the `reason` and numbers the
edge sent in the alert's `data`; an alert from an older agent without them falls back to
its English `message`, so a notice is never left without its cause.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from xiaodian.i18n import DEFAULT_TZ, N_, Message, translator
from xiaodian.wire.alert_text import describe, describe_end, rule_name

from .. import maintenance_text

TITLES = {
    "alert": N_("Fridge alert"),
    "upgrade": N_("Fridge alert now CRITICAL"),
    "escalation": N_("Fridge alert not acknowledged"),
    "repeat": N_("Fridge alert still unacknowledged"),
    "reminder": N_("Fridge alert still active after acknowledgement"),
    "all_clear": N_("All clear"),
    "resolved": N_("Fridge alert (already over)"),
}
SEVERITIES = {"warning": N_("warning"), "critical": N_("CRITICAL")}
ACKNOWLEDGE = N_("Acknowledge: %(link)s")


def _data(alert: Mapping[str, Any]) -> dict[str, Any]:
    data = alert.get("data", {})
    if isinstance(data, str):  # the row's JSON text
        try:
            data = json.loads(data)
        except ValueError:
            data = {}
    return data if isinstance(data, dict) else {}


def cause(alert: Mapping[str, Any]) -> Message | str:
    """What the alert is about: rendered from its reason, else its English message."""
    data = _data(alert)
    if "reason" in data:
        return describe(str(alert["rule"]), data)
    return str(alert.get("message", ""))


def ending(alert: Mapping[str, Any]) -> Message | str:
    """How a cleared alert ended, else its message (which says it on a cleared alert)."""
    ended = describe_end(str(alert["rule"]), _data(alert))
    return ended if ended is not None else str(alert.get("message", ""))


def notice(kind: str, alert: Mapping[str, Any], lang: str = "zh_CN",
           tz: str = DEFAULT_TZ) -> tuple[str, str]:
    """(title, text) of a notice of `kind` about `alert` (an `alerts` row as a dict)."""
    t = translator(lang)
    start = alert.get("started_at")
    since = t.date_time(float(start), tz, fmt="short") if isinstance(start, int | float) else "?"
    params: dict[str, Any] = {
        "store": alert["store"], "fridge": alert["fridge"],
        "severity": Message(SEVERITIES.get(str(alert["severity"]), str(alert["severity"]))),
        "rule": rule_name(str(alert["rule"])), "since": since,
    }
    if kind == "all_clear":
        text = Message(N_("%(store)s %(fridge)s: %(rule)s is over: %(end)s"),
                       params | {"end": ending(alert)})
    elif kind == "resolved":
        text = Message(N_("%(store)s %(fridge)s: %(severity)s, %(rule)s since %(since)s, "
                          "already over: %(cause)s; %(end)s"),
                       params | {"cause": cause(alert), "end": ending(alert)})
    elif kind == "reminder":
        text = Message(N_("%(store)s %(fridge)s: %(severity)s, %(rule)s since %(since)s, still "
                          "active (acknowledged by %(by)s): %(cause)s"),
                       params | {"cause": cause(alert), "by": alert.get("acked_by") or "?"})
    else:
        text = Message(N_("%(store)s %(fridge)s: %(severity)s, %(rule)s since %(since)s: "
                          "%(cause)s"), params | {"cause": cause(alert)})
    return t.gettext(TITLES[kind]), t.render(text)


def acknowledge_line(link: str, lang: str = "zh_CN") -> str:
    return translator(lang).render(Message(ACKNOWLEDGE, {"link": link}))


MAINTENANCE_TITLES = {
    "alert": N_("Fridge maintenance needed"),
    "repeat": N_("Fridge maintenance still needed"),
    "reminder": N_("Fridge maintenance still needed"),
    "all_clear": N_("Fridge maintenance alert over"),
    "resolved": N_("Fridge maintenance alert over"),
}


def maintenance_notice(kind: str, alert: Mapping[str, Any], lang: str = "zh_CN",
                       tz: str = DEFAULT_TZ) -> tuple[str, str]:
    """(title, text) of a notice to a technician about a maintenance alert
    (`maintenance_alerts.alert_dict`): what the vitals show and what to check."""
    t = translator(lang)
    rule = str(alert["rule"])
    since = t.date_time(float(alert["raised_hour"]) * 3600 + 3600, tz, fmt="short")
    params: dict[str, Any] = {"store": alert["store"], "fridge": alert["fridge"],
                              "rule": maintenance_text.name(rule), "since": since}
    if kind in ("all_clear", "resolved"):
        text = Message(N_("%(store)s %(fridge)s: %(rule)s (since %(since)s) is over."), params)
    else:
        text = Message(N_("%(store)s %(fridge)s: %(rule)s since %(since)s: %(shows)s. %(check)s"),
                       params | {"shows": maintenance_text.shows(rule, alert.get("evidence", {})),
                                 "check": maintenance_text.check(rule)})
    return t.gettext(MAINTENANCE_TITLES.get(kind, MAINTENANCE_TITLES["alert"])), t.render(text)
