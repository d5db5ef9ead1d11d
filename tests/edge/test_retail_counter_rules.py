"""The counter's rules from issue #13 on the retail core (real SQLite, no network): a
smart-fridge pickup is never confirmed unweighed without a recorded reason, a sale below
zero asks once and records why, weighed scans carry weight and price, and every verdict
reads in Chinese by default (times in the store's zone)."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest
from retail_env import BREAD, MILK, STORE, T0, Env, en

from edge.config import EdgeSettings
from edge.retail.desk import local_date
from edge.words import localize
from xiaodian.i18n import translator
from xiaodian.wire.payloads import PayloadError
from xiaodian.wire.retail import OrderProgress, parse_progress, progress_data

CJK = re.compile(r"[\u4e00-\u9fff]")


def zh(value: object) -> object:
    return localize(value, translator("zh_CN"), "Asia/Shanghai")


def test_an_unweighed_smart_fridge_pickup_is_refused_until_a_reason_is_given(
        tmp_path: Path) -> None:
    env = Env(tmp_path)
    r = env.retail
    env.fridge_event("lanes", {"lanes": [{"lane": 0, "grams": 1000, "stable": True}]})
    env.order(41)
    assert r.handle("scan", {"code": env.codec.issue(41, T0 + 3600)})["ok"]
    r.tick()  # unlocked; the customer has not opened the door
    refused = r.handle("confirm", {"order": 41})
    assert not refused["ok"] and refused["reason"] == "unweighed"
    assert refused["unweighed"] == ["fridge-1"]
    assert "not been weighed" in refused["message"]
    # Nothing moved: the order waits, no stock left, the handover is still on the counter.
    assert [p["state"] for p in env.events("order")] == ["received"]
    assert env.events("stock") == [] and r.handover is not None
    # A reason that is not one of the counter's is refused as well.
    assert r.handle("confirm", {"order": 41, "override": "because"})["reason"] == "refused"
    assert r.handle("confirm", {"order": 41, "override": 3})["reason"] == "refused"
    # The clerk's own count does not excuse the weighing either.
    counted = {"order": 41, "quantities": {MILK: 1, BREAD: 1}}
    assert r.handle("confirm", counted)["reason"] == "unweighed"
    done = r.handle("confirm", {**counted, "override": "taken_by_hand"})
    assert done["ok"] and "with differences" in done["title"]
    assert "Confirmed without weighing: Taken out by hand" in done["message"]
    # Recorded at the terminal (the order's row and its event) and for the cloud.
    [picked] = [p for p in env.events("order") if p["state"] == "picked_up"]
    assert picked["unweighed"] == "taken_by_hand" and picked["differences"] == [[MILK, -1]]
    assert parse_progress(picked).unweighed == "taken_by_hand"
    (note,) = env.store.db.execute("SELECT note FROM orders WHERE id=41").fetchone()
    assert note == "handed over unweighed (taken_by_hand)"


def test_a_weighed_pickup_needs_no_reason_and_records_none(tmp_path: Path) -> None:
    env = Env(tmp_path)
    r = env.retail
    env.fridge_event("lanes", {"lanes": [{"lane": 0, "grams": 1000, "stable": True}]})
    env.order(42)
    assert r.handle("scan", {"code": env.codec.issue(42, T0 + 3600)})["ok"]
    r.tick()
    env.fridge_event("door", {"open": True})
    env.fridge_event("lanes", {"lanes": [{"lane": 0, "grams": 700, "stable": False}]})
    env.fridge_event("door", {"open": False})
    assert r.handle("confirm", {"order": 42})["reason"] == "unweighed"  # lane not settled
    env.fridge_event("lanes", {"lanes": [{"lane": 0, "grams": 500, "stable": True}]})
    assert r.handover is not None and r.handover.unweighed() == []
    done = r.handle("confirm", {"order": 42, "override": "scale_not_settling"})
    assert done["ok"] and done["unweighed"] is None  # weighed after all: nothing excused
    [picked] = [p for p in env.events("order") if p["state"] == "picked_up"]
    assert "unweighed" not in picked and picked["note"] is None


def test_the_unweighed_field_is_optional_on_the_wire() -> None:
    old = {"order": 5, "state": "picked_up", "differences": [], "note": None}
    assert parse_progress(old).unweighed is None  # an older store's event still parses
    assert "unweighed" not in progress_data(OrderProgress(5, "picked_up"))
    with pytest.raises(PayloadError, match="unweighed"):
        parse_progress({**old, "state": "expired", "unweighed": "taken_by_hand"})


def test_a_sale_below_zero_asks_once_and_records_why(tmp_path: Path) -> None:
    env = Env(tmp_path)
    r = env.retail
    r.handle("mode", {"mode": "sale"})
    line = "]E06901234567816"  # bread, never received by scan
    asked = r.handle("scan", {"code": line})
    assert not asked["ok"] and asked["reason"] == "below_zero" and asked["code"] == line
    assert "this sale takes it to -1" in asked["message"]
    assert env.events("stock") == []  # asking records nothing
    assert r.handle("scan", {"code": line, "below_zero": "because"})["reason"] == "refused"
    sold = r.handle("scan", {"code": line, "below_zero": "delivery not scanned in"})
    assert sold["ok"] and sold["title"] == "Sale: Bread"
    assert "Recorded below zero: Delivery not scanned in" in sold["message"]
    # Asked once: the next sale while still below zero carries the same reason.
    again = r.handle("scan", {"code": line})
    assert again["ok"] and "Recorded below zero" in again["message"]
    notes = [(m["item"], m["qty"], m["note"]) for m in env.events("stock")]
    assert notes == [(BREAD, -1, "sold below zero: delivery not scanned in")] * 2
    # Received again, sold down to zero: the next sale below zero asks afresh.
    r.handle("mode", {"mode": "receive"})
    for _ in range(3):
        r.handle("scan", {"code": line})
    r.handle("mode", {"mode": "sale"})
    plain = r.handle("scan", {"code": line})
    assert plain["ok"] and env.events("stock")[-1]["note"] is None
    assert r.handle("scan", {"code": line})["reason"] == "below_zero"


def test_a_weighed_gs1_scan_shows_weight_and_price(tmp_path: Path) -> None:
    env = Env(tmp_path)
    r = env.retail
    r.handle("mode", {"mode": "receive"})
    # GS1-128: GTIN, net weight 1.250 kg (3103), price 19.90 yuan (3922).
    v = r.handle("scan", {"code": f"]C101{MILK}310300125039221990"})
    assert v["ok"] and v["weight"] == "1.250\u00a0kg" and v["price"] == "CN¥19.90"
    assert env.events("stock")[0]["grams"] == 1250
    shown = zh(r.verdict)
    assert isinstance(shown, dict)
    assert shown["weight"] == "1.250\u00a0kg" and shown["price"] == "¥19.90"
    assert shown["title"] == "已收货：Milk 1L"


def test_verdicts_read_in_chinese_with_the_store_s_local_time(tmp_path: Path) -> None:
    env = Env(tmp_path)
    r = env.retail
    env.order(43)
    code = env.codec.issue(43, T0 + 3600)
    assert r.handle("scan", {"code": code})["ok"]
    r.tick()
    r.handle("confirm", {"order": 43, "override": "taken_by_hand"})
    refused = r.handle("scan", {"code": code})
    # T0 = 2026-05-28 20:26:40 UTC = 2026-05-29 04:26:40 in Shanghai.
    assert "picked up at 4:26" in refused["message"]
    shown = zh(r.verdict)
    assert isinstance(shown, dict) and CJK.search(shown["title"] + shown["message"])
    assert not re.search(r"[A-Za-z]{3,}", shown["title"] + shown["message"])
    assert "04:26" in shown["message"]
    view = zh(r.view())
    assert isinstance(view, dict)
    assert view["orders"] == []
    assert json.dumps(view, ensure_ascii=False)  # everything shown is plain JSON


def test_the_store_s_day_and_time_zone_setting() -> None:
    # 23:30 UTC on 28 May is already 29 May in Shanghai, still 28 May in New York.
    wall = 1_780_011_000.0
    assert local_date(wall) == date(2026, 5, 29)
    assert local_date(wall, "America/New_York") == date(2026, 5, 28)
    assert EdgeSettings(store_id=STORE, data_dir=Path("d")).tz == "Asia/Shanghai"
    assert EdgeSettings(store_id=STORE, data_dir=Path("d"), tz="Europe/Berlin").tz
    for bad in ("Mars/Olympus", "", "../etc/passwd", " Asia/Shanghai"):
        with pytest.raises(ValueError, match="tz"):
            EdgeSettings(store_id=STORE, data_dir=Path("d"), tz=bad)


def test_every_counter_text_is_in_the_catalogue(tmp_path: Path) -> None:
    """Each refusal, verdict and list the core makes renders to Chinese (no msgid left in
    English) - the words the clerk reads, not the names of products."""
    env = Env(tmp_path)
    r = env.retail
    shown = [r.handle("scan", {"code": "]E06901234567891"}),  # check digit
             r.handle("scan", {"code": "]E09999999999994"}),  # not in the catalogue
             r.handle("mode", {"mode": "steal"}),
             r.handle("abort", {}),
             r.handle("delivery", {"order": 999})]
    assert all(not v["ok"] for v in shown)
    for v in (zh(r.desk.verdict), ):
        assert isinstance(v, dict) and CJK.search(v["title"])
    for action, body in (("scan", {"code": "]E06901234567891"}), ("abort", {}),
                         ("mode", {"mode": "steal"}), ("waste", {"item": MILK, "qty": 1})):
        r.handle(action, body)
        v = zh(r.desk.verdict)
        assert isinstance(v, dict)
        text = f"{v['title']} {v['message'] or ''}"
        assert CJK.search(text) and not re.search(r"[A-Za-z]{3,}", text), text
    assert en(r.desk.verdict)["title"] == "Not done"
