"""The terminal's own software on the technician's fleet page (#19 point 3), in real headless
Chromium: an agent rollout reads as 终端软件 1.1.0 with each store's state and result in
words, and why a terminal rolled back in words too (its reason codes,
xiaodian/wire/update_reasons.py; an older terminal's free-text detail marked 终端原文), and
the fleet's terminal-software column says which stores are not yet on the version a running
agent rollout brings. Chinese first, English on request; desktop and phone. Set
XIAODIAN_SCREENSHOTS=/dir to keep the pictures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fleet_world import SigningIssuer

from cloud_gateway import accounts, rollouts, stores
from cloud_gateway.db import Database
from cloud_gateway.ingest_core import ingest
from cloud_gateway.web import Api, HttpServer
from devstack.testkit.browser import (
    DESKTOP,
    PHONE,
    browser_page,
    english_words,
    have_chromium,
    overflow_px,
    screenshot,
    visible_text,
)
from xiaodian.wire.commands import AGENT_DEVICE
from xiaodian.wire.payloads import batch_payload, event_record, reading_record, state_payload

pytestmark = pytest.mark.skipif(not have_chromium(), reason="Debian's chromium missing")

NOW = 1_780_000_000.0
S1, S2 = "store-001", "store-002"
# What an older terminal says of its rollback: free text only.
DETAIL = "not healthy within 180 s: fridge-1 not read"
# What a terminal of now says: reason codes, and their English for older clouds.
REASONS = [{"code": "not_healthy_within", "window_s": 180}, {"code": "not_connected"},
           {"code": "devices_not_read", "devices": ["fridge-1"]},
           {"code": "restarted", "times": 2}]
REASONS_DETAIL = ("not healthy within 180 s; not connected to the cloud; devices not read: "
                  "fridge-1; restarted by systemd 2 time(s) (crash or watchdog)")
REASONS_ZH = ("180 秒内未恢复正常运行；未连接云端；未读到冰箱数据：fridge-1；"
              "被 systemd 重启了 2 次（崩溃或看门狗）")
REASONS_EN = REASONS_DETAIL
# Names, a program's name and the older terminal's own words are data, not interface.
DATA = ["tech", "English", "fridge-1", "fridge-9", "systemd", *DETAIL.split()]


def _update(db: Database, store: str, command: str, seq: int, at: float, state: str,
            percent: int, version: str, **done: Any) -> None:
    data = {"command": command, "kind": "agent", "state": state, "percent": percent,
            "sha256": "cd" * 32, "version": version, **done}
    out = ingest(db, f"xd/v1/{store}/events", batch_payload("events", store, AGENT_DEVICE, 2, [
        event_record(seq, "update", None, None, at, True, data)]), "w", at + 1)
    assert out.action == "stored", out.reason


def _agent_rollout(db: Database, issuer: SigningIssuer, version: str, at: float) -> str:
    art = rollouts.Artefact("agent", AGENT_DEVICE,
                            f"https://cloud.example:8443/artefacts/{'cd' * 32}", "cd" * 32,
                            31_457_280, version)
    rid = rollouts.create(db, art, [S1, S2], at, share=0.5, created_by="tech")
    assert rollouts.tick(db, issuer, rid, at).start == (S1,)
    return rid


def fill(db: Database) -> None:
    """Two stores, a fridge each. 1.0.1 rolled back on the canary twice (halted): first
    saying why in free text only (a terminal from before the reason codes), then in codes;
    1.1.0 confirmed on the canary and now downloading at store-002, whose terminal still
    runs 1.0.0."""
    for store, fridge, version in ((S1, "fridge-1", "1.1.0"), (S2, "fridge-9", "1.0.0")):
        ingest(db, f"xd/v1/{store}/telemetry", batch_payload("readings", store, fridge, 1, [
            reading_record(1, 1, 1000, NOW - 60, True, [(0, "ok", 3.0), (1, "ok", 3.5)])]),
            "w", NOW - 60)
        ingest(db, f"xd/v1/{store}/state", state_payload(store, True, 2, NOW - 60, version,
                                                          [fridge]), "w", NOW - 60)
    issuer = SigningIssuer(db)
    older = _agent_rollout(db, issuer, "1.0.1", NOW - 10800)
    (cid,) = [r["command_id"] for r in rollouts.store_rows(db, older)]
    _update(db, S1, cid, 1, NOW - 10700, "done", 100, "1.0.1", result="rolled_back",
            ok=False, detail=DETAIL)
    assert rollouts.tick(db, issuer, older, NOW - 10600).state.value == "halted"
    old = _agent_rollout(db, issuer, "1.0.1", NOW - 7200)
    (cid,) = [r["command_id"] for r in rollouts.store_rows(db, old)]
    _update(db, S1, cid, 2, NOW - 7000, "downloading", 0, "1.0.1")
    _update(db, S1, cid, 3, NOW - 6900, "done", 100, "1.0.1", result="rolled_back", ok=False,
            detail=REASONS_DETAIL, reasons=REASONS)
    assert rollouts.tick(db, issuer, old, NOW - 6800).state.value == "halted"
    new = _agent_rollout(db, issuer, "1.1.0", NOW - 1800)
    (cid,) = [r["command_id"] for r in rollouts.store_rows(db, new)]
    # A confirmed terminal of now: no reasons, its detail ("healthy") not shown.
    _update(db, S1, cid, 4, NOW - 1700, "done", 100, "1.1.0", result="confirmed", ok=True,
            detail="healthy", reasons=[])
    assert rollouts.tick(db, issuer, new, NOW - 1200).start == (S2,)
    cid2 = [r["command_id"] for r in rollouts.store_rows(db, new)][1]
    _update(db, S2, cid2, 1, NOW - 1100, "downloading", 40, "1.1.0")
    with db.transaction() as conn:
        stores.set_profile(conn, S1, NOW, name="和平路店", tz="Asia/Shanghai")
        stores.set_profile(conn, S2, NOW, name="长江路店", tz="Asia/Shanghai")
        accounts.add_user(conn, "tech", "technician", [S1, S2], "tech-password-1234", 0.0)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[HttpServer]:
    path = tmp_path / "cloud.sqlite"
    with Database.open(path) as db:
        fill(db)
    with HttpServer(Api(path, now=lambda: NOW), "127.0.0.1", 0) as srv:
        yield srv


def _login(page: Any, url: str, lang: str = "") -> None:
    page.goto(url + "login?next=/tech" + lang)  # &lang=en: the cookie keeps it
    page.fill("input[name=user]", "tech")
    page.fill("input[name=password]", "tech-password-1234")
    page.click("button[type=submit]")
    page.wait_for_url(url + "tech")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_an_agent_rollout_reads_as_the_terminals_software(server: HttpServer,
                                                           viewport: dict[str, int]) -> None:
    from playwright.sync_api import expect

    tag = "desktop" if viewport is DESKTOP else "phone"
    with browser_page(viewport) as page:
        _login(page, server.url)
        expect(page.locator("#updates h2")).to_have_text("更新")
        running, halted, older = page.locator("#updates .rollout[data-kind=agent]").all()
        expect(running.locator("strong")).to_have_text("终端软件 1.1.0")
        expect(running.locator(".badge")).to_have_text("进行中")
        expect(running.locator(f"tr[data-store={S1}] td").nth(3)).to_have_text(
            "已确认，正在运行新版本")
        expect(running.locator(f"tr[data-store={S1}] .detail")).to_have_count(0)
        expect(running.locator(f"tr[data-store={S2}] td").nth(1)).to_have_text("下载中")
        expect(running.locator(f"tr[data-store={S2}] td").nth(2)).to_have_text("40%")
        expect(halted.locator("strong")).to_have_text("终端软件 1.0.1")
        expect(halted.locator(".why")).to_have_text("第一家店失败，其他店都没有收到。")
        result = halted.locator(f"tr[data-store={S1}] td").nth(3)
        expect(result).to_contain_text("已回滚：新版本运行不正常，旧版本已恢复运行")
        # Why, from the terminal's reason codes, in Chinese: none of its English.
        expect(result.locator(".detail")).to_have_text(REASONS_ZH)
        expect(result.locator(".own-words")).to_have_count(0)
        expect(result.locator(".detail")).to_be_visible()
        # An older terminal's free text, shown as its own words.
        old_result = older.locator(f"tr[data-store={S1}] td").nth(3)
        expect(old_result).to_contain_text("已回滚：新版本运行不正常，旧版本已恢复运行")
        expect(old_result.locator(".detail.own-words")).to_have_text(f"终端原文：{DETAIL}")
        # The inventory: store-002's terminal is not yet on the running rollout's 1.1.0.
        expect(page.locator("tr[data-device=fridge-9] td.agent")).to_have_text(
            "1.0.0 （尚未升级到 1.1.0）")
        expect(page.locator("tr[data-device=fridge-1] td.agent")).to_have_text("1.1.0")
        expect(page.locator("tr[data-device=fridge-1] .behind")).to_have_count(0)
        screenshot(page, f"agent-rollout-{tag}")
        assert english_words(visible_text(page), DATA) == []
        assert overflow_px(page) == 0


def test_in_english_on_request(server: HttpServer) -> None:
    from playwright.sync_api import expect

    with browser_page(DESKTOP) as page:
        _login(page, server.url, "&lang=en")
        running = page.locator("#updates .rollout[data-kind=agent]").first
        expect(running.locator("strong")).to_have_text("Terminal software 1.1.0")
        expect(page.locator("tr[data-device=fridge-9] .behind")).to_have_text(
            "(not yet on 1.1.0)")
        expect(page.locator("#updates")).to_contain_text(
            "rolled back: the new version was not healthy, the old one runs")
        _running, halted, older = page.locator("#updates .rollout[data-kind=agent]").all()
        expect(halted.locator(f"tr[data-store={S1}] .detail")).to_have_text(REASONS_EN)
        expect(older.locator(f"tr[data-store={S1}] .detail.own-words")).to_have_text(
            f"Terminal's own words: {DETAIL}")
        assert overflow_px(page) == 0
        screenshot(page, "agent-rollout-desktop-en")
