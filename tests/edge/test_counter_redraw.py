"""A clerk's tap on the handover's buttons survives the page's redraws.

The counter redraws the handover whenever its snapshot moves (the fridge answers the
unlock, the door opens, the weights settle). It used to rebuild the buttons each time, so a
tap whose press landed before a redraw and whose release landed after it hit a button that
no longer existed, and Confirm never reached the terminal (seen once in CI).

Driven without an agent: the page's own server (`edge.kiosk.Kiosk`) with snapshots this
test publishes, and the terminal's side answered by the test, so the press, the unlock
answer and the release come in exactly that order: no timing is left to chance.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.testkit.browser import (
    TERMINAL,
    browser_page,
    english_words,
    have_chromium,
    overflow_px,
    screenshot,
    visible_text,
)
from devstack.testkit.edge import free_port
from devstack.testkit.wait import wait
from edge.kiosk import CounterRequest, Kiosk
from xiaodian.i18n import N_, Message, translator

MILK = "06901234567892"
ORDER = 7
PHASES = {  # the fridge's phase -> what the handover waits for (HandoverState.waiting_for)
    "unlocking": N_("Unlocking %(fridge)s"),
    "unlocked": N_("%(fridge)s unlocked: open the door and take the items"),
    "open": N_("%(fridge)s open: close the door when done"),
}

pytestmark = pytest.mark.skipif(not have_chromium(), reason="/usr/bin/chromium missing")


def handover(phase: str) -> dict[str, Any]:
    """A pickup's handover as `HandoverState.view` gives it, one fridge in `phase`."""
    return {
        "order": ORDER, "customer": "Wang",
        "lines": [{"item": MILK, "name": "Milk 1L", "qty": 2,
                   "where": Message(N_("%(fridge)s lane %(lane)s"),
                                    {"fridge": "fridge-1", "lane": 3}),
                   "weighed": True, "taken": None, "difference": 0}],
        "fridges": {"fridge-1": {"phase": phase, "note": None}},
        "unweighed": ["fridge-1"],
        "waiting_for": Message(PHASES[phase], {"fridge": "fridge-1"}),
        "differences": [],
    }


def counter(verdict: dict[str, Any], ho: dict[str, Any] | None) -> dict[str, Any]:
    """A counter snapshot (edge.retail.counter) with nothing else going on."""
    return {"mode": "sale", "verdict": verdict, "handover": ho, "orders": [],
            "deliveries": [], "expiring": [], "incoming": [], "receiving": None,
            "window_days": 3, "unsent": 0, "pickup_key": True, "catalogue": [],
            "scan_paused_s": 0, "uplink": {"connected": True}, "alerts": []}


SHOWN = {"seq": 1, "ok": True, "at": time.time(), "message": None,
         "title": Message(N_("Order %(order)s: %(customer)s"),
                          {"order": ORDER, "customer": "Wang"})}
PICKED_UP = Message(N_("Order %(order)s picked up"), {"order": ORDER})


@pytest.fixture
def kiosk() -> Iterator[Kiosk]:
    k = Kiosk("127.0.0.1", free_port(), tz="Asia/Shanghai")
    k.start()
    try:
        yield k
    finally:
        k.close()


def one_request(k: Kiosk) -> CounterRequest:
    taken: list[CounterRequest] = []
    wait(lambda: taken.extend(k.take_requests()) or taken, 10,
         "the tap to reach the terminal (it was lost in the redraw)", interval=0.02)
    [req] = taken
    return req


def box(page: Any, selector: str) -> dict[str, float]:
    b = page.locator(selector).bounding_box()
    assert b is not None, f"{selector} is not on screen"
    return dict(b)


@pytest.mark.parametrize("next_phase", ["unlocked", "open"])
def test_a_tap_pressed_before_a_redraw_and_released_after_it_confirms(
    kiosk: Kiosk, next_phase: str
) -> None:
    zh = translator("zh_CN")
    kiosk.update_counter(counter(SHOWN, handover("unlocking")))
    with browser_page(TERMINAL, timezone_id="UTC") as page:
        page.goto(kiosk.url + "counter")
        waiting = page.locator("#waiting")
        waiting.wait_for()
        assert zh.render(Message(PHASES["unlocking"], {"fridge": "fridge-1"})) in \
            waiting.inner_text()
        screenshot(page, f"counter-redraw-before-{next_phase}")
        confirm = box(page, "#confirm")
        page.evaluate("window.confirmButton = document.getElementById('confirm')")
        # The clerk's finger goes down on Confirm ...
        page.mouse.move(confirm["x"] + confirm["width"] / 2, confirm["y"] + confirm["height"] / 2)
        page.mouse.down()
        # ... the fridge answers meanwhile and the page redraws the handover ...
        kiosk.update_counter(counter(SHOWN, handover(next_phase)))
        expected = zh.render(Message(PHASES[next_phase], {"fridge": "fridge-1"}))
        page.wait_for_function("t => document.getElementById('waiting').innerText.includes(t)",
                               arg=expected)
        screenshot(page, f"counter-redraw-after-{next_phase}")
        # ... nothing the finger is on moved, and it is the same button ...
        assert box(page, "#confirm") == confirm
        assert page.evaluate("window.confirmButton === document.getElementById('confirm')")
        # ... and the finger comes up: the tap is a click on Confirm.
        page.mouse.up()
        req = one_request(kiosk)
        assert (req.action, req.body) == ("confirm", {"order": ORDER})
        done = {"seq": 2, "ok": True, "at": time.time(), "message": None, "title": PICKED_UP}
        kiosk.update_counter(counter(done, None))
        req.answer(done)
        page.wait_for_function("() => document.getElementById('verdict').dataset.seq === '2'")
        assert page.locator("#verdict-title").inner_text() == zh.render(PICKED_UP)
        assert page.locator("#confirm").count() == 0
        assert overflow_px(page) == 0
        assert english_words(visible_text(page), ["Milk", "1L", "Wang"]) == []
