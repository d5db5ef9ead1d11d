"""What the terminal's pages say, made before the reader is known and put in words per request.

The agent's thread builds the counter's verdicts and lists once, for every reader: texts as
`Message`s (marked English msgids with named values) and values that read differently per
locale as the small types below (money, weights, times, dates). The page server calls
`localize` for each request with that reader's translator and the store's time zone, so the
same snapshot reads in Chinese on the counter and in English on `?lang=en`.

Every alert text a terminal page shows goes through `alert_text` (one place to change when
the alert texts get their own catalogue entries).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from babel.dates import format_skeleton

from xiaodian.i18n import N_, Message, Translator
from xiaodian.wire.alert_text import describe


@dataclass(frozen=True)
class Money:
    fen: int


@dataclass(frozen=True)
class Grams:
    grams: int


@dataclass(frozen=True)
class Clock:
    """An instant shown as the store's local time of day (HH:MM)."""

    ts: float


@dataclass(frozen=True)
class Day:
    """A calendar date (an expiry), ISO 8601 YYYY-MM-DD."""

    iso: str


@dataclass(frozen=True)
class Sentences:
    """Whole sentences shown one after the other (never pieces of one sentence)."""

    parts: tuple[Message, ...]


@dataclass(frozen=True)
class Facts:
    """Short facts about one thing shown side by side: "批号 B1 · 12月8日 到期"."""

    parts: tuple[Message, ...]


SEVERITY = {"warning": N_("Warning"), "critical": N_("Critical")}


def localize(value: Any, t: Translator, tz: str) -> Any:
    """`value` (dicts, lists, Messages, the types above, plain data) in `t`'s words."""
    if isinstance(value, Message):
        params = {k: localize(v, t, tz) for k, v in value.params.items()}
        return t.render(Message(value.msgid, params))
    if isinstance(value, Sentences):
        sep = "" if t.locale.startswith("zh") else " "
        return sep.join(localize(p, t, tz) for p in value.parts)
    if isinstance(value, Facts):
        return " · ".join(localize(p, t, tz) for p in value.parts)
    if isinstance(value, Money):
        return t.money(value.fen)
    if isinstance(value, Grams):
        return t.grams(value.grams)
    if isinstance(value, Clock):
        return t.time(value.ts, tz)
    if isinstance(value, Day):
        return day(value.iso, t)
    if isinstance(value, Mapping):
        return {k: localize(v, t, tz) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [localize(v, t, tz) for v in value]
    return value


def day(iso: str, t: Translator) -> str:
    """"12月8日" / "Dec 8"; text that is no date is shown as it is."""
    try:
        d = date.fromisoformat(iso)
    except ValueError:
        return iso
    return str(format_skeleton("MMMd", d, locale=t.locale))


def alert_text(alert: Mapping[str, Any], t: Translator) -> str:
    """The words of one active alert (`rule`, `severity`, `message`, `data` as the agent's
    status has them), for every terminal page that shows an alert: the reason code and
    numbers rendered by `xiaodian.wire.alert_text.describe`, as the cloud's notices do."""
    data = alert.get("data")
    if isinstance(data, Mapping) and "reason" in data:
        return t.render(describe(str(alert.get("rule", "")), data))
    return t.gettext(str(alert.get("message", "")))


def alerts_view(alerts: Any, t: Translator, tz: str) -> list[dict[str, Any]]:
    """The alerts a page lists, each with its words (`text`), its severity in words and
    since when (the store's time of day)."""
    out = []
    for a in alerts if isinstance(alerts, list) else []:
        if isinstance(a, Mapping):
            sev = str(a.get("severity", ""))
            since = a.get("since")
            out.append({**a, "text": alert_text(a, t),
                        "severity_text": t.gettext(SEVERITY.get(sev, N_("Warning"))),
                        "since_text": None if not isinstance(since, int | float) else
                        t.gettext(N_("since %(time)s")) % {"time": t.time(since, tz)}})
    return out
