"""Every word a person reads, in their language: zh-CN first, English on request.

One mechanism for the whole project (the edge's counter pages, the cloud's owner pages and
dashboard, alert texts, notices, the demo's inbox): gettext catalogues managed with Babel.

- **Source strings are English** and marked where they are written: `t.gettext("...")` when
  a translator is at hand, `N_("...")` for text made before anyone's language is known
  (an alert's cause, a refusal's reason), translated where it is shown. In Jinja templates,
  `{{ _("...") }}`. Placeholders are named: `"%(fridge)s is warm"`, so a translation can
  reorder them.
- **The catalogue** is `xiaodian/i18n/locales/<locale>/LC_MESSAGES/messages.po`, read at
  start-up (no compiled `.mo` to forget). `make catalog` extracts every marked string
  (`babel.cfg`) into `messages.pot` and updates the catalogues; `tests/wire/test_i18n.py`
  fails when a marked string has no zh-CN translation, and the browser tests fail when a
  page shows English words in zh-CN.
- **Which language**: zh-CN unless the person asked for English (`?lang=en`, remembered in a
  cookie by the page that read it). A browser's Accept-Language is not asked: the
  programme's screens are Chinese first, and a headless or borrowed browser in English
  must not silently switch a shop's counter.
- **Dates and times** always in the store's own time zone (`Asia/Shanghai` unless the store
  says otherwise), never the server's; money is stored in fen and shown as ¥ for the locale.
"""

from __future__ import annotations

from .core import (
    DEFAULT_LOCALE,
    DEFAULT_TZ,
    LOCALES,
    N_,
    Message,
    Translator,
    negotiate,
    translator,
)

__all__ = [
    "DEFAULT_LOCALE", "DEFAULT_TZ", "LOCALES", "N_", "Message", "Translator", "negotiate",
    "translator",
]
