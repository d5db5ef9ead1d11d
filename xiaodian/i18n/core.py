"""Translators per locale: catalogue lookup plus Babel's locale-aware formatting."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_datetime, format_time
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal

DEFAULT_LOCALE = "zh_CN"
LOCALES = ("zh_CN", "en")
DEFAULT_TZ = "Asia/Shanghai"
LOCALE_DIR = Path(__file__).with_name("locales")
DOMAIN = "messages"
NBSP = "\u00a0"


def N_(message: str) -> str:
    """Marks `message` for the catalogue without translating it (translated where shown)."""
    return message


@dataclass(frozen=True)
class Message:
    """Text made before the reader's language is known: a marked msgid and its values.

    Domain code returns these (an alert's cause, a refusal); whoever shows it calls
    `Translator.render(message)`. `str(message)` is the English text, for logs. A value
    may itself be a `Message` (a duration, "air probe"): it is rendered in the same
    language first, so a sentence never has to be built from translated pieces by hand.
    """

    msgid: str
    params: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.msgid % self.params if self.params else self.msgid


def negotiate(asked: str | None, remembered: str | None = None) -> str:
    """The locale to use: what was asked now (`?lang=`), else remembered, else zh-CN."""
    for candidate in (asked, remembered):
        found = _match(candidate)
        if found is not None:
            return found
    return DEFAULT_LOCALE


def _match(tag: str | None) -> str | None:
    if not tag:
        return None
    norm = tag.strip().replace("-", "_").lower()
    for loc in LOCALES:
        if norm == loc.lower() or norm == loc.split("_")[0].lower():
            return loc
    if norm.startswith("zh"):
        return "zh_CN"
    if norm.startswith("en"):
        return "en"
    return None


@functools.cache
def _catalogue(locale: str) -> dict[str, str | tuple[str, ...]]:
    """msgid → translation (a tuple for plural forms); fuzzy and empty entries skipped."""
    path = LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not path.exists():
        return {}
    with path.open("rb") as fh:
        cat = read_po(fh, locale=locale)
    out: dict[str, str | tuple[str, ...]] = {}
    for msg in cat:
        if not msg.id or msg.fuzzy:
            continue
        key = msg.id[0] if isinstance(msg.id, (list, tuple)) else msg.id
        if isinstance(msg.string, (list, tuple)):
            if all(msg.string):
                out[key] = tuple(msg.string)
        elif msg.string:
            out[key] = msg.string
    return out


@dataclass(frozen=True)
class Translator:
    """Words and formats for one locale; times in the time zone each call names."""

    locale: str
    _strings: dict[str, str | tuple[str, ...]]

    @property
    def lang(self) -> str:
        """The BCP 47 tag for `<html lang>`: zh-CN or en."""
        return self.locale.replace("_", "-")

    def gettext(self, message: str) -> str:
        found = self._strings.get(message)
        return found if isinstance(found, str) else message

    _ = gettext

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        found = self._strings.get(singular)
        if isinstance(found, tuple):
            index = Locale.parse(self.locale).plural_form(n)
            forms = {"one": 0, "other": len(found) - 1}
            return found[min(forms.get(index, len(found) - 1), len(found) - 1)]
        return singular if n == 1 else plural

    def render(self, message: Message | str) -> str:
        """A `Message` (or a bare marked msgid) in this locale, its values filled in."""
        if isinstance(message, str):
            return self.gettext(message)
        text = self.gettext(message.msgid)
        if not message.params:
            return text
        params = {k: self.render(v) if isinstance(v, Message) else v
                  for k, v in message.params.items()}
        return text % params

    def date_time(self, t: float | datetime, tz: str = DEFAULT_TZ, *,
                 fmt: str = "medium") -> str:
        """An instant in the store's time zone: "2026年12月7日 14:05:09" / "Dec 7, 2026, ..."."""
        when = t if isinstance(t, datetime) else datetime.fromtimestamp(t, UTC)
        return format_datetime(when, fmt, tzinfo=ZoneInfo(tz), locale=self.locale)

    def time(self, t: float | datetime, tz: str = DEFAULT_TZ, *, fmt: str = "short") -> str:
        when = t if isinstance(t, datetime) else datetime.fromtimestamp(t, UTC)
        return format_time(when, fmt, tzinfo=ZoneInfo(tz), locale=self.locale)

    def money(self, fen: int) -> str:
        """Fen as yuan for the locale: ¥12.50 (CNY always; fen are what is stored)."""
        return format_currency(Decimal(fen) / 100, "CNY", locale=self.locale)

    def number(self, value: float | int | Decimal, digits: int = 0) -> str:
        pattern = "#,##0" + ("." + "0" * digits if digits else "")
        return format_decimal(value, pattern, locale=self.locale)

    def temperature(self, celsius: float) -> str:
        """"3.1 °C" with no-break spaces, so a temperature never breaks over two lines."""
        return f"{self.number(celsius, 1)}{NBSP}°C"

    def grams(self, grams: int) -> str:
        if abs(grams) >= 1000:
            return f"{self.number(grams / 1000, 3)}{NBSP}kg"
        return f"{self.number(grams)}{NBSP}g"


@functools.cache
def translator(locale: str = DEFAULT_LOCALE) -> Translator:
    """The translator for `locale` (one of LOCALES; anything else is refused)."""
    if locale not in LOCALES:
        raise ValueError(f"locale: one of {', '.join(LOCALES)}, not {locale!r}")
    return Translator(locale, _catalogue(locale) if locale != "en" else {})
