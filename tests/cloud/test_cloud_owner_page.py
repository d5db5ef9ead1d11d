"""The owner page in real headless Chromium (Playwright) against a real server and database.

The acknowledge button twice: once with the POST captured in the browser (Playwright route),
to pin the wire format (URL with the %2F-encoded id, bearer token, JSON body); once through
the escalation's real endpoint (cloud_gateway.alerts), reading the acknowledgement back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_cloud_haccp import STORE, T0, fill_day

from cloud_gateway.db import Database
from cloud_gateway.web import Api, HttpServer

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "owner-token-0123456789abcdef0123456789"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"{CHROMIUM} missing (Debian's chromium package)")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[HttpServer]:
    path = tmp_path / "cloud.sqlite"
    with Database.open(path) as db:
        fill_day(db)
        _owner(db)
    with HttpServer(Api(path), "127.0.0.1", 0) as srv:
        yield srv


def _owner(db: Database) -> None:
    """The page's reads need a login: Li owns the store."""
    from cloud_gateway import accounts

    with db.transaction() as conn:
        accounts.add_user(conn, "li", "owner", [STORE], "li-password-1234", 0.0)


def _login(page: Any, url: str, then: str) -> None:
    page.goto(url + "login?next=" + then)
    page.fill("input[name=user]", "li")
    page.fill("input[name=password]", "li-password-1234")
    page.click("button")
    page.wait_for_url(url.rstrip("/") + then)


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            ctx = browser.new_context(viewport={"width": 1100, "height": 1300},
                                      timezone_id="UTC")
            p = ctx.new_page()
            errors: list[str] = []
            p.on("pageerror", lambda exc: errors.append(str(exc)))
            yield p
            assert errors == [], errors  # no script errors on the page
        finally:
            browser.close()


def test_owner_page_fridges_chart_and_acknowledge(server: HttpServer, page: Any,
                                                  tmp_path: Path) -> None:
    from playwright.sync_api import Route, expect

    _login(page, server.url, "/owner")
    cards = page.locator("article.fridge")
    expect(cards).to_have_count(2)
    f1, f2 = page.locator('[data-fridge="fridge-1"]'), page.locator('[data-fridge="fridge-2"]')
    expect(f1.locator(".badge")).to_have_text("ok")
    expect(f2.locator(".badge")).to_have_text("critical")
    expect(f2).to_have_class("fridge critical")
    # Newest readings: fridge-2 back at 3.0 °C; fridge-1 3 + 0.5·sin(1439/60) = 2.54.
    expect(f2.locator(".temp.product b")).to_have_text("3.0 °C")
    expect(f1.locator(".temp.product b")).to_have_text("2.5 °C")
    expect(f1.locator(".alerts")).to_have_count(0)  # its door alert was cleared
    alert = f2.locator("li.alert")
    expect(alert).to_have_count(1)
    expect(alert).to_contain_text("product 9.0 °C, above 8 °C for 15 min")

    # The charts: product and air lines, the three limits, defrost/door/compressor bands.
    for card in (f1, f2):
        svg = card.locator("svg.chart")
        expect(svg).to_have_count(1)
        expect(svg.locator("polyline.product")).not_to_have_count(0)
        expect(svg.locator("polyline.air")).not_to_have_count(0)
        for name in ("hot", "warm", "freeze"):
            expect(svg.locator(f"line.limit-{name}")).to_have_count(1)
    expect(f1.locator("svg rect.defrost")).to_have_count(1)
    expect(f1.locator("svg rect.door")).to_have_count(1)
    expect(f1.locator("svg rect.compressor")).to_have_count(24)
    # The 8 °C line sits above the 5 °C line, and fridge-2's product line reaches above it.
    y_hot = float(f2.locator("line.limit-hot").get_attribute("y1"))
    y_warm = float(f2.locator("line.limit-warm").get_attribute("y1"))
    assert y_hot < y_warm
    ys = [float(pt.split(",")[1]) for pl in f2.locator("polyline.product").all()
          for pt in (pl.get_attribute("points") or "").split()]
    assert min(ys) < y_hot

    page.screenshot(path=str(tmp_path / "owner.png"), full_page=True)
    if os.environ.get("XD_SCREENSHOT"):  # keep a copy to look at
        page.screenshot(path=os.environ["XD_SCREENSHOT"], full_page=True)

    posts: list[dict[str, Any]] = []

    def capture(route: Route) -> None:
        req = route.request
        posts.append({"method": req.method, "url": req.url,
                      "auth": req.headers.get("authorization"),
                      "type": req.headers.get("content-type"),
                      "body": json.loads(req.post_data or "null")})
        route.fulfill(status=200, content_type="application/json",
                      body=json.dumps({"acked_by": "Li", "state": "active"}))

    page.route("**/api/alerts/**", capture)
    page.fill("#who", "Li")
    page.fill("#token", TOKEN)
    page.click("#save")
    alert.locator("input").fill("moved stock to fridge-1, called technician")
    alert.locator("button.ack").click()
    expect(alert.locator(".ackres")).to_have_text("acknowledged")
    expect(alert.locator("button.ack")).to_have_count(0)
    alert_id = f"fridge-2/warm/{round((T0 + 36_000) * 1000)}"
    assert posts == [{
        "method": "POST",
        "url": server.url + "api/alerts/store-001/" + alert_id.replace("/", "%2F") + "/ack",
        "auth": f"Bearer {TOKEN}", "type": "application/json",
        "body": {"by": "Li", "corrective_action": "moved stock to fridge-1, called technician"},
    }]
    assert page.evaluate("localStorage.getItem('xiaodian.owner.token')") == TOKEN


def test_a_logged_in_owner_acknowledges_without_a_token(server: HttpServer, page: Any) -> None:
    from playwright.sync_api import expect

    _login(page, server.url, f"/owner/{STORE}")
    page.fill("#who", "Li")
    page.click("#save")  # a name, no token: the session is the authority
    alert = page.locator('[data-fridge="fridge-2"] li.alert')
    alert.locator("input").fill("moved stock")
    alert.locator("button.ack").click()
    expect(alert.locator(".ackres")).to_have_text("acknowledged")
    page.reload()
    expect(page.locator('[data-fridge="fridge-2"] li.alert .ackres')).to_have_text(
        "acknowledged by Li: moved stock")


def test_owner_page_for_one_store_and_haccp_link(server: HttpServer, page: Any) -> None:
    from playwright.sync_api import expect

    _login(page, server.url, f"/owner/{STORE}")
    expect(page.locator("article.fridge")).to_have_count(2)
    page.locator('[data-fridge="fridge-2"] a', has_text="HACCP record").click()
    expect(page.locator("h1")).to_have_text("HACCP record · store-001 · 2025-06-01")
    expect(page.locator("svg.chart line.limit-warm")).to_have_count(1)
    expect(page.locator("table.excursions tr")).to_have_count(3)  # header + 5 °C + 8 °C


def test_acknowledge_for_real_then_the_page_shows_who(tmp_path: Path, page: Any) -> None:
    """Through the escalation's real ack endpoint (bearer token) and back from the database."""
    from playwright.sync_api import expect

    path = tmp_path / "cloud.sqlite"
    with Database.open(path) as db:
        fill_day(db)
        _owner(db)
    with HttpServer(Api(path, api_token=TOKEN.encode()), "127.0.0.1", 0) as srv:
        _login(page, srv.url, f"/owner/{STORE}")
        page.fill("#who", "Li")
        page.fill("#token", "wrong-" + TOKEN)
        page.click("#save")
        alert = page.locator('[data-fridge="fridge-2"] li.alert')
        alert.locator("button.ack").click()
        expect(alert.locator(".ackres")).to_have_text("not acknowledged: wrong token")
        page.fill("#token", TOKEN)
        page.click("#save")
        alert.locator("input").fill("moved stock")
        alert.locator("button.ack").click()
        expect(alert.locator(".ackres")).to_have_text("acknowledged")
        page.reload()
        expect(page.locator('[data-fridge="fridge-2"] li.alert .ackres')).to_have_text(
            "acknowledged by Li: moved stock")
        expect(page.locator('[data-fridge="fridge-2"] button.ack')).to_have_count(0)
