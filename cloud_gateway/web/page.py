"""What every page a person reads shares: their language, the template, the store's zone.

zh-CN unless the reader asked for English (`?lang=en`), which a `lang` cookie remembers
(xiaodian.i18n.negotiate); every page has a switch to the other language. Templates live in
cloud_gateway/templates/. API JSON stays English (it is for programs); a refusal a page shows
is translated here, in the page.

Alert texts and the domain's refusals become words through cloud_gateway/page_text.py
(`alert_text`, `refusal_text`), the one place to rewire them.
"""

from __future__ import annotations

from http import HTTPStatus
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from xiaodian.i18n import Translator, negotiate, translator
from xiaodian.i18n.templates import render

from ..errors import CloudError
from ..page_text import TEMPLATE_HELPERS, alert_text, refusal_text
from .context import cookie_value
from .core import HTML, Call, Reply, parse_query

__all__ = ["alert_text", "check_vendor", "for_a_person", "html_reply", "message_page", "page",
           "reader", "refusal_text", "remember", "switch", "vendor_file"]

LANG_COOKIE = "lang"
LANG_MAX_AGE_S = 365 * 86400
# The pages' own scripts and styles, the vendored chart library, data from this origin only.
PAGE_CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline'; "
            "style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; "
            "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
LANG_NAMES = (("zh-CN", "中文"), ("en", "English"))
VENDOR_FILES = {"uPlot.iife.min.js": "text/javascript; charset=utf-8",
                "uPlot.min.css": "text/css; charset=utf-8"}


class VendorMissing(CloudError):
    """The pages' chart library was not installed (scripts/bootstrap.sh copies it)."""


def check_vendor() -> None:
    """Refuse to start a server whose pages would show no chart: say how to fix it."""
    folder = resources.files("cloud_gateway").joinpath("static/vendor")
    missing = [n for n in VENDOR_FILES if not folder.joinpath(n).is_file()]
    if missing:
        raise VendorMissing(
            f"cloud_gateway/static/vendor/{missing[0]} is missing: the owner page's chart"
            " library (uPlot, pinned in package.json) is installed by `make bootstrap`"
            " (scripts/bootstrap.sh runs `npm ci` and copies it there)")


def for_a_person(path: str, accept: str | None) -> bool:
    """Whether a refusal of `path` goes to a browser's reader (HTML) rather than a program."""
    return not path.startswith("/api/") and "text/html" in (accept or "")


def vendor_file(name: str) -> bytes:
    return resources.files("cloud_gateway").joinpath(f"static/vendor/{name}").read_bytes()


def _asked(call: Call) -> str | None:
    try:
        return parse_query(call.query_string).get("lang")
    except CloudError:
        return None


def reader(call: Call) -> Translator:
    """The reader's translator: ?lang= now, else the `lang` cookie, else zh-CN."""
    return translator(negotiate(_asked(call),
                                cookie_value(call.headers.get("Cookie") or "", LANG_COOKIE)))


def remember(call: Call, t: Translator) -> tuple[tuple[str, str], ...]:
    if _asked(call) is None:
        return ()
    return (("Set-Cookie", f"{LANG_COOKIE}={t.lang}; Path=/; Max-Age={LANG_MAX_AGE_S};"
             " SameSite=Lax"),)


def switch(call: Call, t: Translator) -> list[dict[str, Any]]:
    """Links to this same page in each language (its other query fields kept)."""
    try:
        query = parse_query(call.query_string)
    except CloudError:
        query = {}
    out = []
    for tag, name in LANG_NAMES:
        q = urlencode({**{k: v for k, v in query.items() if k != "lang"}, "lang": tag})
        out.append({"tag": tag, "name": name, "href": f"{call.target.split('?')[0]}?{q}",
                    "current": tag == t.lang})
    return out


def page(call: Call, template: str, t: Translator, status: int = HTTPStatus.OK,
         headers: tuple[tuple[str, str], ...] = (), **context: Any) -> Reply:
    """A page from cloud_gateway/templates/, in the reader's language."""
    body = render("cloud_gateway", "templates", template, t, switch=switch(call, t),
                  **TEMPLATE_HELPERS, **context)
    return html_reply(call, t, body, status, headers)


def html_reply(call: Call, t: Translator, body: str, status: int = HTTPStatus.OK,
               headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    """A rendered page with the pages' headers (CSP, referrer, the remembered language)."""
    return Reply(status, body.encode(), HTML,
                 (("Content-Security-Policy", PAGE_CSP), ("Referrer-Policy", "same-origin"),
                  *remember(call, t), *headers))


def message_page(call: Call, status: int, text: str, t: Translator | None = None,
                 title: str | None = None) -> Reply:
    """A page that only says something (a refusal a person sees), already translated."""
    t = t or reader(call)
    return page(call, "message.html", t, status, text=text,
                title=title or t.gettext("Something went wrong"))
