"""The owner is told, and answers from the phone: the demo's stack with its notice inbox.

The demo's own scenario (fridge-2 starts warm, "just switched on after a delivery") makes
the edge raise a critical `hot` alert 15 simulated minutes in; the cloud signs a webhook
to the inbox the stack made the owner's contact. The inbox page is opened as the owner's
phone would (390×844, zh-CN, the browser in UTC), its acknowledgement link followed, and
the cloud's form filled in by its field names (the form's words are the cloud's to change).
The cloud must then hold the acknowledgement, with the corrective action, made by link.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from devstack.inbox import Notice
from devstack.inbox_page import RULES, SEVERITIES
from devstack.stack import StoreStack
from devstack.testkit.browser import (
    PHONE,
    SMALL_PHONE,
    browser_page,
    have_chromium,
    overflow_px,
    reader_checks,
    screenshot,
    visible_text,
)
from devstack.testkit.wait import wait
from xiaodian.i18n import DEFAULT_TZ, translator

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not have_chromium(), reason="needs /usr/bin/chromium")]

SPEED = 120.0  # the hot alert 15 simulated minutes in: about 8 s after the start
ACTION = "把冷藏品移到 fridge-1，叫了维修。"  # what the owner types: moved the goods, called


def _owner_alerts(notices: list[Notice]) -> list[Notice]:
    return [n for n in notices if n.kind == "alert" and n.alert.get("audience") == "owner"]


def test_the_owner_is_told_and_acknowledges_from_the_phone(
        store_stack: Callable[..., StoreStack]) -> None:
    stack = store_stack(speed=SPEED, owner_inbox=True)
    assert stack.inbox is not None
    inbox = stack.inbox.inbox
    wait(lambda: _owner_alerts(inbox.notices()), 60, "the owner's first alert notice")
    t = translator("zh_CN")
    with browser_page(PHONE) as page:
        page.goto(stack.inbox_url)
        first = page.locator("article").first
        link = first.locator("a.ack")
        ack_url = link.get_attribute("href")
        shown = next(n for n in inbox.notices() if n.ack_url == ack_url)
        card = first.inner_text()
        alert: dict[str, Any] = shown.alert
        # Where, what, how bad and when (in the store's zone, not the browser's UTC).
        assert alert["fridge"] in card and alert["store"] in card
        assert t.gettext(RULES[alert["rule"]]) in card
        assert t.gettext(SEVERITIES[alert["severity"]]) in card
        assert t.date_time(alert["raised_at"], DEFAULT_TZ, fmt="short") in card
        assert shown.body["text"] in card
        # Chinese, apart from data (the cloud's own text, ids) and the language switch.
        data_words = re.findall(r"[A-Za-z][A-Za-z0-9'’-]*",
                                " ".join(str(n.body["text"]) for n in inbox.notices()))
        reader_checks(page, "inbox-phone", [*data_words, "English"])
        # The link is the big thing on the card: a thumb-sized button across the screen.
        box = link.bounding_box()
        assert box is not None and box["height"] >= 48 and box["width"] >= 300, box
        assert box["y"] + box["height"] <= PHONE["height"], "the first link is below the fold"
        page.set_viewport_size(SMALL_PHONE)
        assert overflow_px(page) == 0, "wider than a 360 px phone"
        page.set_viewport_size(PHONE)

        link.click()
        page.wait_for_load_state()
        assert urlsplit(page.url).path.startswith("/ack/")
        screenshot(page, "inbox-ack-form-phone")
        form = page.locator("form:has([name=corrective_action])")
        form.locator("[name=corrective_action]").fill(ACTION)
        by = form.locator("[name=by]")
        if by.count() and not by.input_value():  # the link's contact, unless pre-filled
            by.fill("owner")
        with page.expect_response(lambda r: r.request.method == "POST") as posted:
            form.locator("button, [type=submit]").first.click()
        assert posted.value.status == 200, posted.value.text()
        page.wait_for_load_state()
        screenshot(page, "inbox-acknowledged-phone")

        # English on request, remembered: the switch, then the page again without it.
        page.goto(stack.inbox_url)
        page.locator("header a[lang=en]").click()
        page.wait_for_load_state()
        page.goto(stack.inbox_url)
        en = translator("en")
        assert page.locator("html").get_attribute("lang") == "en"
        assert en.gettext(RULES[alert["rule"]]) in visible_text(page)
        screenshot(page, "inbox-phone-en")

    key = unquote(urlsplit(ack_url).path.removeprefix("/ack/"))
    assert key == alert["key"]
    recorded = stack.api(f"api/alerts/{key}")
    acks = [(a["by"], a["corrective_action"], a["via"]) for a in recorded["acks"]]
    assert acks == [("owner", ACTION, "link:owner")]
    assert recorded["acked_at"] is not None and recorded["corrective_action"] == ACTION
