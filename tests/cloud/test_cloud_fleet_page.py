"""The technician's fleet view and device page in real headless Chromium against a real
server and database (#16 point 2): Chinese first, on a desktop (1366×800) and a phone,
sortable and filterable, trends drawn from the hourly vitals, the event log in words.
Set XIAODIAN_SCREENSHOTS=/dir to keep the pictures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_cloud_haccp import STORE, T0, fill_day

from cloud_gateway import accounts, commands, rollouts, stores
from cloud_gateway.db import Database
from cloud_gateway.ingest_core import ingest
from cloud_gateway.web import Api, HttpServer
from devstack.testkit.browser import (
    DESKTOP,
    PHONE,
    browser_page,
    have_chromium,
    log_in,
    reader_checks,
    visible_text,
)
from devstack.testkit.http_client import get
from xiaodian.wire.commands import key_id_for, sign_command
from xiaodian.wire.health import HEALTH_DEVICE
from xiaodian.wire.payloads import batch_payload, event_record, reading_record, state_payload

pytestmark = pytest.mark.skipif(not have_chromium(), reason="Debian's chromium missing")

NOW = T0 + 86_400 + 60  # a minute after fill_day's last readings
STORE2 = "store-002"
H = 3600
DATA = ["tech", "English", "fridge-1", "fridge-2", "fridge-9", "store-002"]  # names, switch
TECH, PASSWORD = "tech", "tech-password-1234"  # the technician of both stores


def _vitals(fridge: str, hour: int, duty: float, per_10k: float | None) -> dict[str, Any]:
    return {"fridge": fridge, "hour": hour, "readings": 60, "compressor_known_s": 3600.0,
            "compressor_on_s": round(3600 * duty, 1), "duty": duty, "compressor_starts": 3,
            "defrosts": ([{"duration_s": 1500.0 + hour % 7 * 60, "ended_on": "timeout"}]
                         if hour % 6 == 0 else []),
            "defrost_s": 1500.0 if hour % 6 == 0 else 0.0, "door_openings": 4,
            "door_open_s": 80.0, "pulldowns_s": [240.0 + (hour % 24) * 5],
            "pulldown_unrecovered": 0, "reboots": [], "probes": [], "mains_lost": 0,
            "mains_off_s": 0.0, "firmware": "0.1.0",
            "link": None if per_10k is None else {"frames": 1000, "errors": 1, "missed": 0,
                                                  "reconnects": 0, "per_10k": per_10k}}


def fill_fleet(db: Database) -> None:
    fill_day(db)  # store-001: fridge-1 and fridge-2 (an open critical alert), a day of data
    hello = {"protocol": [1, 0], "firmware": [0, 1, 0], "reset_cause": "watchdog",
             "capabilities": 0, "probe_count": 2, "lane_count": 0, "boot_count": 3,
             "device_id": "x"}
    for i, device in enumerate(("fridge-1", "fridge-2")):
        ingest(db, f"xd/v1/{STORE}/events", batch_payload("events", STORE, device, 1, [
            event_record(900 + i, "hello", 1, 5, T0 + 60, True, hello)]), "w", T0 + 61)
    last = int(NOW // H) - 1
    for device, start, per_10k in (("fridge-1", last - 28 * 24, 2.0), ("fridge-2", last - 30,
                                                                         350.0)):
        records = [event_record(i + 1, "vitals", None, None, h * H + 1860.0, True,
                                _vitals(device, h, round(0.35 + (h - start) / 3000, 4),
                                        per_10k))
                   for i, h in enumerate(range(start, last + 1))]
        for i in range(0, len(records), 200):  # within a message's 256 KiB
            out = ingest(db, f"xd/v1/{STORE}/health", batch_payload(
                "events", STORE, HEALTH_DEVICE, 10 + int(device[-1]), records[i:i + 200]),
                "w", NOW - 30)
            assert out.action == "stored", out.reason
    # store-002: its terminal went away hours ago.
    ingest(db, f"xd/v1/{STORE2}/telemetry", batch_payload("readings", STORE2, "fridge-9", 1, [
        reading_record(1, 1, 1000, NOW - 5 * H, True, [(0, "ok", 3.0), (1, "ok", 3.5)])]),
        "w", NOW - 5 * H)
    ingest(db, f"xd/v1/{STORE2}/state", state_payload(STORE2, False, 1, NOW - 5 * H, "0.1",
                                                       ["fridge-9"]), "w", NOW - 5 * H)
    fill_rollout(db)
    with db.transaction() as conn:
        stores.set_profile(conn, STORE, NOW, name="和平路店", tz="Asia/Shanghai")
        stores.set_profile(conn, STORE2, NOW, name="长江路店", tz="Asia/Shanghai")
        accounts.add_user(conn, TECH, "technician", [STORE, STORE2], PASSWORD, 0.0)


class SigningIssuer:
    """Signs and records `update` commands as the cloud's Commander does, without a broker
    (the page reads the database; the e2e test test_fw_cloud_rollout.py sends them)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.key = Ed25519PrivateKey.generate()

    def issue(self, store: str, action: str, params: dict[str, Any], now: float | None = None,
              *, issued_by: str = "") -> str:
        signed = sign_command(self.key, key_id_for(self.key.public_key()), target=store,
                              action=action, params=params, issued_at=int(now or NOW))
        commands.insert_command(self.db, signed, issued_by)
        return signed.command.command_id


def fill_rollout(db: Database) -> None:
    """A rollout of 1.1.0 to fridge-1 at both stores: the canary (store-001) rolled it back,
    so it halted by itself and store-002 was never sent it."""
    sha = "ab" * 32
    art = rollouts.Artefact("firmware", "fridge-1", f"https://cloud.example:8443/artefacts/{sha}",
                            sha, 61_494, "1.1.0")
    rid = rollouts.create(db, art, [STORE, STORE2], NOW - 600, share=0.5, created_by="tech")
    issuer = SigningIssuer(db)
    assert rollouts.tick(db, issuer, rid, NOW - 600).start == (STORE,)
    (cid,) = [r["command_id"] for r in rollouts.store_rows(db, rid)]
    for i, (state, pct) in enumerate((("downloading", 0), ("downloaded", 100),
                                      ("updating", 50), ("done", 100))):
        data = {"command": cid, "kind": "firmware", "state": state, "percent": pct,
                "sha256": sha, "version": "1.1.0"}
        if state == "done":
            data |= {"result": "rolled_back", "ok": False}
        out = ingest(db, f"xd/v1/{STORE}/events", batch_payload("events", STORE, "fridge-1", 1, [
            event_record(950 + i, "update", None, None, NOW - 500 + i, True, data)]),
            "w", NOW - 400)
        assert out.action == "stored", out.reason
    assert rollouts.tick(db, issuer, rid, NOW - 300).state.value == "halted"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[HttpServer]:
    path = tmp_path / "cloud.sqlite"
    with Database.open(path) as db:
        fill_fleet(db)
    with HttpServer(Api(path, now=lambda: NOW), "127.0.0.1", 0) as srv:
        yield srv


def _rows(page: Any) -> list[str]:
    return [r.get_attribute("data-device") for r in page.locator("#fleet tbody tr:visible").all()]


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_fleet_view_sorts_and_filters_in_chinese(server: HttpServer,
                                                      viewport: dict[str, int]) -> None:
    from playwright.sync_api import expect

    tag = "desktop" if viewport is DESKTOP else "phone"
    with browser_page(viewport) as page:
        log_in(page, server.url, TECH, PASSWORD, "/tech")
        expect(page.locator("h1")).to_have_text("冰箱")
        reader_checks(page, f"fleet-{tag}", DATA)
        # Trouble first: fridge-2 has the critical alert, fridge-9 is offline.
        assert _rows(page) == ["fridge-2", "fridge-9", "fridge-1"]
        row9 = page.locator("tr[data-device=fridge-9]")
        expect(row9.locator(".badge")).to_have_text("离线")
        expect(page.locator("tr[data-device=fridge-1] .badge")).to_have_text("在线")
        expect(page.locator("tr[data-device=fridge-2] td.n").first).to_have_text("350.0")
        page.select_option("#show", "offline")
        assert _rows(page) == ["fridge-9"]
        expect(page.locator("#count")).to_have_text("显示 1 / 3 台冰箱")
        page.select_option("#show", "all")
        page.fill("#q", "和平")
        assert sorted(_rows(page)) == ["fridge-1", "fridge-2"]
        page.fill("#q", "")
        page.select_option("#sort", "link")
        assert _rows(page) == ["fridge-2", "fridge-1", "fridge-9"]
        if viewport is DESKTOP:
            page.click("th button[data-key=device]")
            assert _rows(page) == ["fridge-1", "fridge-2", "fridge-9"]
            expect(page.locator("#sort")).to_have_value("device")
            page.click("th button[data-key=device]")
            assert _rows(page) == ["fridge-9", "fridge-2", "fridge-1"]
        reader_checks(page, f"fleet-{tag}-sorted", DATA)
        # The rollout, halted by itself after the canary rolled the image back.
        ro = page.locator("#updates .rollout")
        expect(page.locator("#updates h2")).to_have_text("更新")
        expect(ro.locator(".badge")).to_have_text("已自动停止")
        expect(ro.locator(".why")).to_have_text("第一家店失败，其他店都没有收到。")
        expect(ro.locator(".counts")).to_have_text(
            "0 家确认，1 家失败，共 2 家店；第 1 / 2 阶段")  # stages (1, 2)
        expect(ro.locator("tr[data-store=store-001] td").nth(3)).to_have_text("已回滚到旧版本")
        expect(ro.locator("tr[data-store=store-002]")).to_have_count(0)  # never sent
        ro.scroll_into_view_if_needed()
        reader_checks(page, f"fleet-{tag}-updates", DATA)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_device_page_draws_7_and_28_day_trends(server: HttpServer,
                                                   viewport: dict[str, int]) -> None:
    from playwright.sync_api import expect

    tag = "desktop" if viewport is DESKTOP else "phone"
    with browser_page(viewport) as page:
        log_in(page, server.url, TECH, PASSWORD, f"/tech/{STORE}/fridge-1")
        trends = page.locator("#trends")
        expect(trends).to_have_attribute("data-points", str(7 * 24))
        expect(page.locator("#trends canvas")).to_have_count(3)
        blue = page.locator("#trends .chart").first.evaluate(
            """b => { const c = b.querySelector('canvas');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4)
              if (d[i] < 60 && d[i + 1] > 70 && d[i + 1] < 120 && d[i + 2] > 180) n++;
            return n; }""")
        assert blue > 200  # the duty-cycle line is drawn, not only the axes
        reader_checks(page, f"device-{tag}-7d", DATA)
        page.click(".period button[data-days='28']")
        expect(trends).to_have_attribute("data-points", str(28 * 24))
        expect(page.locator("#trend-summary")).to_contain_text("已上报 672 小时")
        # The event log in words, newest first, in the store's zone.
        log = page.locator(".log tbody tr")
        assert log.count() > 10
        text = visible_text(page)
        assert "控制器已连接：固件 0.1.0" in text and "看门狗" in text
        assert "压缩机启动（温控）" in text and "开门" in text
        reader_checks(page, f"device-{tag}-28d", DATA)


def test_maintenance_alerts_show_on_the_fleet_and_the_device_page(server: HttpServer) -> None:
    """fridge-1's duty cycle climbs through its 29 days of vitals (0.35 to 0.58 at the same
    door traffic): the cloud's maintenance rule raised `duty_rising` as they arrived."""
    from playwright.sync_api import expect

    with browser_page(DESKTOP) as page:
        log_in(page, server.url, TECH, PASSWORD, "/tech")
        expect(page.locator("tr[data-device=fridge-1] td.maint")).to_have_text("压缩机负荷上升")
        expect(page.locator("tr[data-device=fridge-2] td").last).to_have_text("–")
        page.select_option("#show", "maint")
        assert _rows(page) == ["fridge-1"]
        reader_checks(page, "fleet-desktop-maintenance", DATA)
        page.goto(server.url + f"tech/{STORE}/fridge-1")
        box = page.locator("#maintenance")
        expect(box.locator("li b")).to_have_text("压缩机负荷上升")
        expect(box).to_contain_text("在开门次数相近的情况下比 28 天基线")
        expect(box).to_contain_text("清洁冷凝器")
        reader_checks(page, "device-desktop-maintenance", DATA)
        page.goto(server.url + f"tech/{STORE}/fridge-2")
        expect(page.locator("#maintenance")).to_contain_text("无需维护。")


def test_the_trends_api_and_the_pages_need_a_login(server: HttpServer) -> None:
    r = get(server.url + f"api/stores/{STORE}/fridges/fridge-1/vitals?days=7")
    assert r.status == 401
    r = get(server.url + "tech")
    assert r.status == 303 and r.headers["Location"] == "/login?next=/tech"
