"""What the inbox page shows of each notice, in the reader's language (pure: no I/O).

The cloud's own text comes along as it is (the alert texts are the cloud's to word); the
headline, severity, kind and times are made here from the notice's fields, so the page
reads in Chinese whatever language the cloud wrote the text in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from xiaodian.i18n import N_, Translator

from .inbox import Notice

# The edge's rules (docs/alerts.md), as an owner would name the trouble.
RULES = {
    "warm": N_("Too warm"),
    "hot": N_("Too hot"),
    "hard_limit": N_("Far too hot"),
    "freeze": N_("Freezing"),
    "door": N_("Door left open"),
    "probe_fault": N_("Temperature probe fault"),
    "probe_disagree": N_("Probes disagree"),
    "mains": N_("Power cut"),
    "link": N_("Fridge not reporting"),
    "defrost_overrun": N_("Defrost too long"),
    "drift": N_("Running warm over the day"),
    "cycling": N_("Compressor not cycling"),
}
# The cloud's notice kinds (cloud_gateway/alerts/policy.py).
KINDS = {
    "alert": N_("New alert"),
    "upgrade": N_("Now critical"),
    "escalation": N_("Not acknowledged yet"),
    "repeat": N_("Still not acknowledged"),
    "reminder": N_("Acknowledged, still going on"),
    "all_clear": N_("All clear"),
    "resolved": N_("Happened and is over"),
}
SEVERITIES = {"critical": N_("Critical"), "warning": N_("Warning")}


@dataclass(frozen=True)
class NoticeView:
    delivery: int
    store: str
    fridge: str
    headline: str
    kind: str
    severity: str  # "critical" | "warning" | other: the CSS class
    severity_label: str
    at: str  # when the edge raised it, in the store's zone
    since: str  # when the trouble began, or ""
    peak: str  # the worst temperature seen, or ""
    text: str  # the cloud's text, as sent
    ack_url: str
    ack_until: str  # when the link stops working, or ""
    over: bool  # the alert has cleared: the link records the corrective action afterwards


def _when(t: Translator, value: Any, tz: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return ""
    return t.date_time(float(value), tz, fmt="short")


def _link_expiry(url: str) -> int | None:
    """The expiry inside an ack link's token (`contact.expires.mac`), or None."""
    token = parse_qs(urlsplit(url).query).get("t", [""])[-1]
    parts = token.rsplit(".", 2)
    if len(parts) == 3 and parts[1].isascii() and parts[1].isdigit():
        return int(parts[1])
    return None


def notice_view(n: Notice, t: Translator, tz: str) -> NoticeView:
    a = n.alert
    rule = str(a["rule"])
    severity = str(a["severity"])
    peak = a.get("peak_c")
    started, raised = a.get("started_at"), a.get("raised_at")
    expiry = _link_expiry(n.ack_url)
    return NoticeView(
        delivery=n.delivery,
        store=str(a["store"]),
        fridge=str(a["fridge"]),
        headline=t.gettext(RULES[rule]) if rule in RULES else rule,
        kind=t.gettext(KINDS[n.kind]) if n.kind in KINDS else n.kind,
        severity=severity if severity in SEVERITIES else "other",
        severity_label=t.gettext(SEVERITIES[severity]) if severity in SEVERITIES else severity,
        at=_when(t, raised if raised is not None else n.body.get("sent_at"), tz),
        since=_when(t, started, tz) if started != raised else "",
        peak=(t.temperature(float(peak)) if isinstance(peak, (int, float))
              and not isinstance(peak, bool) and math.isfinite(peak) else ""),
        text=str(n.body.get("text", "")),
        ack_url=n.ack_url,
        ack_until=_when(t, expiry, tz) if expiry is not None else "",
        over=a.get("state") == "cleared" or n.kind in ("all_clear", "resolved"),
    )


def page_context(notices: list[Notice], t: Translator, tz: str) -> dict[str, Any]:
    """The template's context: newest notice first."""
    views = [notice_view(n, t, tz) for n in reversed(notices)]
    stores = sorted({v.store for v in views})
    return {"notices": views, "count": len(notices), "stores": stores, "tz": tz,
            "other_lang": "en" if t.locale != "en" else "zh-CN"}
