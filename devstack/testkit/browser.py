"""Headless Chromium for page tests: Debian's browser driven by Playwright, and what every
page test checks as its reader would: no English left in a zh-CN page, nothing wider than
the screen, and no script errors (`reader_checks`, `browser_page`); and the cloud's login
form filled in as a person does (`log_in`).

Set XIAODIAN_SCREENSHOTS=/some/dir to keep a PNG of every page a test looks at (the tests
pass without it; people look at the pictures).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Geolocation

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PHONE = {"width": 390, "height": 844}
SMALL_PHONE = {"width": 360, "height": 740}
TERMINAL = {"width": 800, "height": 480}
DESKTOP = {"width": 1366, "height": 800}

# Latin words a Chinese page may show: ids, units, codes and brand names people see as such.
ALWAYS_ALLOWED = re.compile(
    r"^(?:fridge|store|lane|probe|order|door|scanner)-?[\w-]*$"  # ids: fridge-2, store-001
    r"|^(?:[A-Za-z]|[A-Z]{2,}[\w-]*|\w*\d\w*|kg|g|min|h|s|ms|km|m|x|OK|No|GMT|UTC|Asia|Shanghai)$"
)


def have_chromium() -> bool:
    return os.path.exists(CHROMIUM)


@contextmanager
def browser_page(viewport: Any, *, timezone_id: str = "UTC", locale: str = "zh-CN",
                 geolocation: Geolocation | None = None) -> Iterator[Any]:
    """A fresh page; fails the test on any script error when the block ends.

    `geolocation` ({"latitude", "longitude"}, WGS-84 as a phone's GPS gives it) is granted
    to the page; without it the page is refused a position when it asks.

    The browser's own time zone is UTC on purpose: a page must show the store's time zone
    because it says so, not because the browser happens to be in China.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            ctx = browser.new_context(viewport=viewport, timezone_id=timezone_id,
                                      locale=locale, geolocation=geolocation,
                                      permissions=["geolocation"] if geolocation else [])
            page = ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page
            assert errors == [], f"script errors on the page: {errors}"
        finally:
            browser.close()


def visible_text(page: Any) -> str:
    return str(page.evaluate("document.body.innerText"))


def english_words(text: str, allowed: Iterable[str] = ()) -> list[str]:
    """Latin-letter words in `text` that a zh-CN reader should not meet.

    Ids, units, upper-case codes (GTIN, HACCP) and anything in `allowed` (names of people,
    products and stores, which are data, not interface) are let through.
    """
    extra = {a.lower() for a in allowed}
    found = []
    for word in re.findall(r"[A-Za-z][A-Za-z0-9'’-]*", text):
        if ALWAYS_ALLOWED.match(word) or word.lower() in extra:
            continue
        found.append(word)
    return found


def overflow_px(page: Any) -> int:
    """How far the page is wider than its viewport (0: no horizontal scrolling)."""
    return int(page.evaluate(
        "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - window.innerWidth"))


def screenshot(page: Any, name: str) -> Path | None:
    """A full-page PNG in $XIAODIAN_SCREENSHOTS, when set; the path, or None."""
    folder = os.environ.get("XIAODIAN_SCREENSHOTS")
    if not folder:
        return None
    path = Path(folder) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


def reader_checks(page: Any, name: str, allowed: Iterable[str] = ()) -> None:
    """The page as it is now, as a zh-CN reader meets it: kept as the picture `name` (when
    asked for), no English but `allowed` (data: names, ids, the language switch), nothing
    wider than the screen. `name` also says which page failed."""
    screenshot(page, name)
    assert english_words(visible_text(page), allowed) == [], name
    assert overflow_px(page) == 0, name


def log_in(page: Any, url: str, user: str, password: str, then: str = "/",
           lang: str = "") -> None:
    """Through the cloud's login form (`url`: the server's, ending in /) as `user`, going
    on to the path `then`; returns once the browser is there. `lang` ("en") asks for the
    form in that language, which a cookie then keeps."""
    page.goto(f"{url}login?next={then}" + (f"&lang={lang}" if lang else ""))
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(url.rstrip("/") + then)
