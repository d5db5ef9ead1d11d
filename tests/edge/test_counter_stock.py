"""The counter page's stock form in real headless Chromium against a running agent: an item
named by a scan (nothing recorded), a count corrected by −2 with its reason, an item chosen
from the catalogue and found, waste by count; each one ledger row with its outbox event."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from retail_env import BREAD, MILK, STORE, seed_milk_received

from devstack.testkit.browser import browser_page, have_chromium
from devstack.testkit.edge import RunningAgent, free_port, seed_terminal
from edge.config import EdgeConfig, EdgeSettings
from xiaodian.mqtt import MqttSettings

pytestmark = pytest.mark.skipif(not have_chromium(), reason="/usr/bin/chromium missing")


def test_stock_form_adjusts_and_records_waste_in_chromium(
    tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings]
) -> None:
    from playwright.sync_api import expect

    port = free_port()
    cfg = EdgeConfig(
        edge=EdgeSettings(store_id=STORE, data_dir=tmp_path / "edge", kiosk_port=port),
        mqtt=mqtt_settings(STORE))
    # The shop as it was: a catalogue and three milk received (lot B1).
    with seed_terminal(cfg) as seed:
        seed_milk_received(seed, "300101")

    with RunningAgent(cfg), browser_page({"width": 1280, "height": 900}) as page:
        page.goto(f"http://127.0.0.1:{port}/counter?lang=en")  # the English words
        expect(page.locator("#st-item option")).to_have_text(
            ["choose the item…", "Bread", "Milk 1L"], timeout=20000)

        # The item by scan: in "Stock count" mode a scan only names it.
        page.click(".modes button[data-mode='stock']")
        expect(page.locator(".modes button[data-mode='stock']")).to_have_class("on")
        page.keyboard.type(f"]C101{MILK}1730010110B1")
        page.keyboard.press("Enter")
        expect(page.locator("#st-item")).to_have_value(MILK)
        expect(page.locator("#verdict.ok #verdict-title")).to_have_text("Milk 1L")
        page.click("#st-minus")
        page.click("#st-minus")
        expect(page.locator("#st-qty")).to_have_text("-2")
        page.click("#st-send")  # no reason yet: not sent
        expect(page.locator("#st-msg")).to_have_text("Choose a reason.")
        page.click("#st-reasons button[data-reason='count correction']")
        page.click("#st-send")
        expect(page.locator("#verdict-title")).to_have_text("Adjusted Milk 1L by -2")
        expect(page.locator("#st-qty")).to_have_text("0")
        expect(page.locator("#st-msg")).to_have_text("")

        # Chosen from the catalogue: a bread found.
        page.select_option("#st-item", BREAD)
        page.click("#st-plus")
        expect(page.locator("#st-qty")).to_have_text("+1")
        page.click("#st-reasons button[data-reason='found']")
        page.click("#st-send")
        expect(page.locator("#verdict-title")).to_have_text("Adjusted Bread by +1")

        # Waste by count: pieces out, its own reasons.
        page.click("#st-kind button[data-kind='waste']")
        expect(page.locator("#st-reasons button")).to_have_text(
            ["expired", "damaged", "spoiled"])
        page.select_option("#st-item", MILK)
        page.click("#st-minus")  # waste cannot go below zero pieces
        expect(page.locator("#st-qty")).to_have_text("0")
        page.click("#st-plus")
        page.click("#st-reasons button[data-reason='expired']")
        page.click("#st-send")
        expect(page.locator("#verdict-title")).to_have_text("Waste: Milk 1L ×1")
        # A scanner keeps typing into the scan field after all that tapping.
        expect(page.locator("#scan")).to_be_focused()

    con = sqlite3.connect(cfg.edge.db_path)
    try:
        moves = con.execute("SELECT id, kind, item, qty, batch, note FROM stock_movements "
                            "ORDER BY wall, rowid").fetchall()
        events: dict[str, bool] = {}
        for data, queued in con.execute(
                "SELECT e.data, o.seq IS NOT NULL FROM events e LEFT JOIN outbox o ON "
                "o.kind='events' AND o.device=e.device AND o.boot=e.boot AND o.seq=e.seq "
                "WHERE e.type='stock'"):
            events[json.loads(data)["id"]] = bool(queued)
    finally:
        con.close()
    assert [(k, i, q, b, n) for _, k, i, q, b, n in moves[3:]] == [
        ("adjust", MILK, -2, "B1", "count correction"), ("adjust", BREAD, 1, None, "found"),
        ("waste", MILK, -1, "B1", "expired")]
    # Each ledger row has its stock event, still in the outbox (no cloud here confirms it).
    assert set(events) == {m[0] for m in moves} and all(events.values())
