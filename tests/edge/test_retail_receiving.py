"""Receiving a delivery against its manifest, the pre-orders' hold and uncollected
pre-orders, on the retail service with a real SQLite file (no network)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from edge.config import Clerk, PickupSettings, RetailSettings
from edge.retail import holds, ledger, receiving
from edge.retail.clerks import hash_pin
from edge.retail.service import Retail
from edge.store import EdgeStore
from edge.wallclock import WallClock
from edge.words import localize
from xiaodian.i18n import translator
from xiaodian.wire.pickup import PickupCodec
from xiaodian.wire.retail import (
    Cancel,
    Catalogue,
    CatalogueItem,
    Manifest,
    ManifestLine,
    ManifestLot,
    Order,
    OrderLine,
    Serves,
    parse_movement,
    parse_progress,
    parse_receipt,
    receipt_data,
)

STORE = "store-001"
KEY = bytes(range(32))
T0 = 1_780_000_000.0  # 2026-05-28 (Shanghai)
MILK = "06901234567892"
TOFU = "06901234567823"
BREAD = "06901234567816"
PIN = "4321"
FAST_HASH = hash_pin(PIN, iterations=1000)


def en(value: Any) -> Any:
    return localize(value, translator("en"), "Asia/Shanghai")


class Env:
    def __init__(self, tmp_path: Path, clerks: tuple[Clerk, ...] = (Clerk("li", FAST_HASH),)
                 ) -> None:
        self.t = [T0]
        self.day = [date(2026, 5, 28)]
        key_file = tmp_path / "pickup.key"
        key_file.write_text(KEY.hex())
        key_file.chmod(0o600)
        self.path = tmp_path / "edge.sqlite3"
        self.clerks = clerks
        self.key_file = key_file
        self.open()
        self.codec = PickupCodec(STORE, KEY)
        self.retail.downlink(Catalogue(STORE, 3, (
            CatalogueItem(MILK, "Milk 1L", "piece", 7, "chilled"),
            CatalogueItem(TOFU, "Tofu", "piece", 3, "chilled"),
            CatalogueItem(BREAD, "Bread", "piece", 3, "ambient"))))

    def open(self) -> None:
        self.store = EdgeStore(self.path)
        self.retail = Retail(
            self.store, STORE, WallClock(now=lambda: self.t[0], synced=lambda: True),
            PickupSettings(self.key_file), RetailSettings(2, self.clerks), {},
            today=lambda wall: self.day[0])

    def do(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(en(self.retail.handle(action, body)))

    def events(self, type_: str) -> list[dict[str, Any]]:
        return [json.loads(d) for (d,) in self.store.db.execute(
            "SELECT data FROM events WHERE type=? ORDER BY device, boot, seq", (type_,))]

    def on_hand(self, item: str) -> int:
        return sum(lot.qty for lot in ledger.lots(self.store.db, item))

    def shelf(self, item: str, n: int, expiry: str = "2026-06-10") -> None:
        self.do("adjust", {"item": item, "qty": n, "note": "found", "batch": "S1",
                           "expiry": expiry})

    def sell(self, item: str) -> dict[str, Any]:
        self.do("mode", {"mode": "sale"})
        return self.do("scan", {"code": f"]E0{item[1:]}"})


def manifest(mid: int = 7, order: int = 41) -> Manifest:
    """10 milk pre-ordered by `order`: 2 come, 8 from the store's stock; 3 tofu (1 for it),
    in two lots."""
    return Manifest(mid, STORE, "north", "2026-05-27", "2026-05-28", (
        ManifestLine(MILK, "鲜牛奶", 2, (ManifestLot("D20260528", "2026-06-01", 2),),
                     (Serves(order, 2, 8),)),
        ManifestLine(TOFU, "豆腐", 3, (ManifestLot("T1", "2026-05-30", 2),
                                      ManifestLot("T2", "2026-05-31", 1)),
                     (Serves(order, 1, 0),))))


def preorder(env: Env, oid: int = 41, expires: float = T0 + 86400) -> None:
    env.retail.downlink(Order(oid, STORE, "pickup", "王芳", T0, expires,
                              (OrderLine(MILK, 10), OrderLine(TOFU, 1))))


# ---------------------------------------------------------------- pure


def test_the_receipt_explains_every_piece_and_the_lots_are_kept() -> None:
    m = manifest()
    d = {MILK: receiving.LineCount(good=1, counted=True, note="box crushed", damaged=0),
         TOFU: receiving.LineCount(good=3, damaged=1, counted=True)}
    r = receiving.build_receipt(m, d, "li", T0)
    assert [(x.item, x.issue, x.qty) for x in r.differences] == [
        (MILK, "short", 1), (TOFU, "over", 1), (TOFU, "damaged", 1)]
    assert r.differences[0].note == "box crushed"
    assert parse_receipt(receipt_data(r)) == r  # what the cloud accepts
    moves = receiving.delivery_moves(m, d)
    # 3 good tofu: 2 into T1, the one over the manifest into its last lot.
    assert [(x.item, x.batch, x.expiry, x.qty) for x in moves] == [
        (MILK, "D20260528", "2026-06-01", 1), (TOFU, "T1", "2026-05-30", 2),
        (TOFU, "T2", "2026-05-31", 1)]
    assert receiving.bag_pieces(m, d) == {(41, MILK): 1, (41, TOFU): 1}
    assert receiving.uncounted(m, {MILK: d[MILK]}) == [TOFU]


# ---------------------------------------------------------------- receiving


def receive_with_short_milk(env: Env) -> dict[str, Any]:
    env.retail.downlink(manifest())
    assert env.do("receiving", {"op": "open", "manifest": 7})["ok"]
    assert env.retail.mode == "receive"
    env.do("scan", {"code": f"]E0{MILK[1:]}"})  # one milk: one short
    for _ in range(3):
        assert env.do("scan", {"code": f"]E0{TOFU[1:]}"})["ok"]
    v = env.do("receiving", {"op": "set", "manifest": 7, "item": TOFU, "field": "damaged",
                             "value": 1})
    assert v["ok"]
    env.do("receiving", {"op": "set", "manifest": 7, "item": TOFU, "field": "good",
                         "value": 2})
    env.do("receiving", {"op": "set", "manifest": 7, "item": MILK, "field": "note",
                         "value": "one missing from the crate"})
    return env.do("receiving", {"op": "sign", "manifest": 7, "clerk": "li", "pin": PIN})


def test_receiving_a_manifest_with_a_short_line_signs_off_once(tmp_path: Path) -> None:
    env = Env(tmp_path)
    before = len(env.events("stock"))
    done = receive_with_short_milk(env)
    assert done["ok"], done
    (data,) = env.events("receipt")
    r = parse_receipt(data)
    assert r.manifest == 7 and r.signed_by == "li" and r.signed_at == T0
    assert {(x.item, x.issue, x.qty, x.note) for x in r.differences} == {
        (MILK, "short", 1, "one missing from the crate"), (TOFU, "damaged", 1, "")}
    assert {(ln.item, ln.expected, ln.accepted) for ln in r.lines} == {(MILK, 2, 1),
                                                                       (TOFU, 3, 2)}
    # The good pieces came in as ordinary deliveries with the manifest's lots, exactly once.
    moves = [parse_movement(d) for d in env.events("stock")[before:]]
    assert sorted((x.kind, x.item, x.batch, x.qty) for x in moves) == sorted([
        ("delivery", MILK, "D20260528", 1), ("delivery", TOFU, "T1", 2)])
    assert env.on_hand(TOFU) == 2 and env.on_hand(MILK) == 1
    # The receipt event and the movements were written in one transaction with the row.
    assert receiving.receipt_of(env.store.db, 7) == ("li", T0)
    assert env.retail.view()["receiving"] is None
    assert [m["received"] for m in env.retail.view()["incoming"]] == [True]
    # Never twice: opened again, or signed again, a clear refusal and nothing written.
    again = env.do("receiving", {"op": "open", "manifest": 7})
    assert not again["ok"] and "received already" in again["message"] and "li" in \
        again["message"]
    assert env.do("receiving", {"op": "sign", "manifest": 7, "clerk": "li",
                                "pin": PIN})["ok"] is False
    assert len(env.events("receipt")) == 1 and env.on_hand(TOFU) == 2


def test_sign_off_needs_the_clerks_pin_and_every_line_counted(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.retail.downlink(manifest())
    env.do("receiving", {"op": "open", "manifest": 7})
    env.do("scan", {"code": f"]E0{MILK[1:]}"})
    env.do("scan", {"code": f"]E0{MILK[1:]}"})
    bad = env.do("receiving", {"op": "sign", "manifest": 7, "clerk": "li", "pin": "0000"})
    assert not bad["ok"] and bad["reason"] == "bad_pin"
    nobody = env.do("receiving", {"op": "sign", "manifest": 7, "clerk": "wang", "pin": PIN})
    assert nobody["reason"] == "bad_pin"
    for _ in range(3):  # five wrong within a minute: sign-off pauses, even the right PIN
        env.do("receiving", {"op": "sign", "manifest": 7, "clerk": "li", "pin": "9999"})
    paused = env.do("receiving", {"op": "sign", "manifest": 7, "clerk": "li", "pin": PIN})
    assert paused["reason"] == "pin_paused" and "30 s" in paused["message"]
    env.t[0] += 31
    half = env.do("receiving", {"op": "sign", "manifest": 7, "clerk": "li", "pin": PIN})
    assert half["reason"] == "uncounted" and "豆腐" in half["message"]
    assert env.events("receipt") == [] and env.on_hand(MILK) == 0  # nothing moved yet
    # A product that is not on the manifest is not counted anywhere.
    other = env.do("scan", {"code": f"]E0{BREAD[1:]}"})
    assert not other["ok"] and "not on manifest 7" in other["title"]
    # The count survives an agent restart on the same file.
    env.store.close()
    env.open()
    view = env.retail.view()["receiving"]
    assert view["manifest"] == 7
    assert [(ln["item"], ln["good"], ln["counted"]) for ln in view["lines"]] == [
        (MILK, 2, True), (TOFU, 0, False)]
    env.do("receiving", {"op": "set", "manifest": 7, "item": TOFU, "field": "good", "value": 0})
    done = env.do("receiving", {"op": "sign", "manifest": 7, "clerk": "li", "pin": PIN})
    assert done["ok"]
    (data,) = env.events("receipt")
    assert [(x["item"], x["issue"], x["qty"]) for x in data["differences"]] == [
        (TOFU, "short", 3)]


def test_a_piece_whose_label_has_expired_is_counted_as_expired_on_arrival(
        tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.retail.downlink(manifest())
    env.do("receiving", {"op": "open", "manifest": 7})
    v = env.do("scan", {"code": f"]d201{MILK}17260520"})  # expired 20 May
    assert not v["ok"] and "expired on arrival" in v["title"]
    line = env.retail.view()["receiving"]["lines"][0]
    assert (line["good"], line["expired"]) == (0, 1)


def test_no_clerk_accounts_no_sign_off(tmp_path: Path) -> None:
    env = Env(tmp_path, clerks=())
    env.retail.downlink(manifest())
    env.do("receiving", {"op": "open", "manifest": 7})
    v = env.do("receiving", {"op": "sign", "manifest": 7, "clerk": "li", "pin": PIN})
    assert not v["ok"] and "No clerk accounts" in v["message"]


def test_a_bad_pin_hash_stops_the_configuration() -> None:
    with pytest.raises(ValueError, match="pin_hash"):
        Clerk("li", "plain-1234")


# ---------------------------------------------------------------- the hold


def test_stock_netted_for_a_pre_order_is_held_from_the_cutoff(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.shelf(MILK, 9)
    env.retail.downlink(manifest())  # at the cutoff: 8 of the 9 milk are the pre-order's
    assert holds.held(env.store.db, MILK, T0) == 8
    assert env.sell(MILK)["ok"]  # the one not held
    refused = env.sell(MILK)
    assert not refused["ok"] and refused["reason"] == "held", refused
    assert env.on_hand(MILK) == 8
    # The pre-order arrives at dispatch; the delivery is received in full.
    preorder(env)
    env.do("receiving", {"op": "open", "manifest": 7})
    for item, n in ((MILK, 2), (TOFU, 3)):
        env.do("receiving", {"op": "set", "manifest": 7, "item": item, "field": "good",
                             "value": n})
    assert env.do("receiving", {"op": "sign", "manifest": 7, "clerk": "li", "pin": PIN})["ok"]
    assert holds.held(env.store.db, MILK, T0) == 10  # the bag's 2 as well
    assert not env.sell(MILK)["ok"]
    assert env.sell(TOFU)["ok"]  # 3 came, 1 is the pre-order's
    # The customer collects: the held pieces are what the pickup takes.
    v = env.do("scan", {"code": env.codec.issue(41, T0 + 86400)})
    assert v["ok"], v
    assert env.do("confirm", {"order": 41})["ok"]
    assert env.on_hand(MILK) == 0 and env.on_hand(TOFU) == 1
    assert holds.held(env.store.db, MILK, T0) == 0
    below = [parse_movement(d) for d in env.events("stock")
             if (d.get("note") or "").startswith("sold below zero")]
    assert below == []


def test_a_pre_order_the_stores_stock_covers_in_full_is_held_and_not_counted(
        tmp_path: Path) -> None:
    """The milk line brings 0 pieces: the store's 10 cover the pre-order in full. Its
    pieces are held from the manifest's arrival, receiving has nothing to count for it
    (the receipt says expected 0, accepted 0), and the pickup takes them."""
    env = Env(tmp_path)
    env.shelf(MILK, 11)
    m = Manifest(7, STORE, "north", "2026-05-27", "2026-05-28", (
        ManifestLine(MILK, "鲜牛奶", 0, (), (Serves(41, 0, 10),)),
        ManifestLine(TOFU, "豆腐", 3, (ManifestLot("T1", "2026-05-30", 3),),
                     (Serves(41, 1, 0),))))
    env.retail.downlink(m)
    assert holds.held(env.store.db, MILK, T0) == 10
    assert env.sell(MILK)["ok"]  # the one not held
    refused = env.sell(MILK)
    assert not refused["ok"] and refused["reason"] == "held", refused
    assert env.on_hand(MILK) == 10
    # Coming from the depot: only the tofu; receiving counts only the tofu.
    (incoming,) = env.retail.view()["incoming"]
    assert [ln["name"] for ln in incoming["lines"]] == ["豆腐"]
    preorder(env)
    env.do("receiving", {"op": "open", "manifest": 7})
    assert [ln["item"] for ln in env.retail.view()["receiving"]["lines"]] == [TOFU]
    scanned = env.do("scan", {"code": f"]E0{MILK[1:]}"})
    assert not scanned["ok"] and "not on manifest 7" in scanned["title"]
    nope = env.do("receiving", {"op": "set", "manifest": 7, "item": MILK, "field": "good",
                                "value": 1})
    assert not nope["ok"]
    env.do("receiving", {"op": "set", "manifest": 7, "item": TOFU, "field": "good",
                         "value": 3})
    assert env.do("receiving", {"op": "sign", "manifest": 7, "clerk": "li", "pin": PIN})["ok"]
    (data,) = env.events("receipt")
    r = parse_receipt(data)
    assert {(ln.item, ln.expected, ln.accepted) for ln in r.lines} == {(MILK, 0, 0),
                                                                       (TOFU, 3, 3)}
    assert r.differences == ()
    assert env.on_hand(MILK) == 10  # nothing came in for it
    assert holds.held(env.store.db, MILK, T0) == 10 and holds.held(env.store.db, TOFU, T0) == 1
    assert not env.sell(MILK)["ok"]
    v = env.do("scan", {"code": env.codec.issue(41, T0 + 86400)})
    assert v["ok"], v
    assert env.do("confirm", {"order": 41})["ok"]
    assert env.on_hand(MILK) == 0 and holds.held(env.store.db, MILK, T0) == 0
    assert not [d for d in env.events("stock")
                if (d.get("note") or "").startswith("sold below zero")]


# ---------------------------------------------------------------- uncollected


def test_an_uncollected_pre_order_goes_back_to_stock_or_to_waste(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.shelf(MILK, 8, expiry="2026-05-28")  # its last day is the pickup day
    env.retail.downlink(manifest())
    preorder(env, expires=T0 + 3600)
    env.do("receiving", {"op": "open", "manifest": 7})
    for item, n in ((MILK, 2), (TOFU, 3)):
        env.do("receiving", {"op": "set", "manifest": 7, "item": item, "field": "good",
                             "value": n})
    env.do("receiving", {"op": "sign", "manifest": 7, "clerk": "li", "pin": PIN})
    # Not collected; the hold ends the next day: the 8 milk of the 28th are past their
    # date (waste), the 2 delivered and the tofu go back to stock.
    env.t[0] = T0 + 86400
    env.day[0] = date(2026, 5, 29)
    env.retail.tick()
    (expired,) = [parse_progress(p) for p in env.events("order") if p["state"] == "expired"]
    assert expired.order == 41 and expired.note == \
        "uncollected: 3 back to stock, 8 to waste"
    wasted = [parse_movement(d) for d in env.events("stock") if d["kind"] == "waste"]
    assert [(m.item, m.qty, m.batch, m.order) for m in wasted] == [(MILK, -8, "S1", 41)]
    assert wasted[0].note == "uncollected pre-order 41: past its date"
    assert env.on_hand(MILK) == 2 and env.on_hand(TOFU) == 3
    assert holds.held(env.store.db, MILK, env.t[0]) == 0
    assert env.sell(TOFU)["ok"]  # back on the shelf for walk-ins


def test_a_hold_ends_with_its_order_or_when_its_order_never_comes(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.shelf(MILK, 8)
    env.retail.downlink(manifest(7, order=41))
    env.retail.downlink(manifest(8, order=42))  # a second wave's pre-order, same milk
    assert holds.held(env.store.db, MILK, T0) == 16
    # 41 arrives and is cancelled by the cloud: its hold ends at once.
    preorder(env, 41)
    env.retail.downlink(Cancel(41, STORE, "refunded"))
    assert holds.held(env.store.db, MILK, T0) == 8
    # 42 never arrives: held until two days after its delivery day began, then free.
    assert holds.held(env.store.db, MILK, T0 + 2 * 86400 - 60) == 8
    assert holds.held(env.store.db, MILK, T0 + 2 * 86400 + 60) == 0
