"""Retail at the edge, pure cores and the service on a real SQLite file (no network)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from retail_env import BREAD, EGGS, KEY, MILK, STORE, T0, Env, en

from edge.retail import ledger
from edge.retail.handover import Handover, LaneReading, LaneWatch, PickLine, parse_lanes
from edge.retail.verify import Accepted, OrderState, RateLimiter, Refused, check_code
from edge.store import EdgeStore, NewEvent
from xiaodian.wire.pickup import PickupCodec
from xiaodian.wire.retail import (
    Cancel,
    Catalogue,
    CatalogueItem,
    Location,
    Movement,
    Order,
    OrderLine,
    movement_data,
    parse_movement,
    parse_progress,
)


def mv(kind: str, item: str, qty: int, batch: str | None = None,
       expiry: str | None = None) -> Movement:
    return Movement(ledger.new_id(), kind, item, qty, None, batch, expiry,
                    1 if kind in ("pickup", "dispatch") else None)


# ---------------------------------------------------------------- ledger


def test_ledger_sums_fefo_and_expiry_window(tmp_path: Path) -> None:
    moves = [mv("delivery", MILK, 5, "B2", "2026-06-03"), mv("delivery", MILK, 3, "B1",
             "2026-05-30"), mv("delivery", MILK, 2), mv("sale", MILK, -1, "B1", "2026-05-30"),
             mv("waste", MILK, -2, "B1", "2026-05-30"), mv("delivery", EGGS, 4, "E", "2026-05-29"),
             mv("adjust", EGGS, -1, "E", "2026-05-29")]
    lots = ledger.lots_from(moves)
    # B1 is used up and left out; dateless stock comes last (FEFO).
    assert [(lot.item, lot.batch, lot.qty) for lot in lots] == [
        (EGGS, "E", 3), (MILK, "B2", 5), (MILK, None, 2)]
    # The SQL sums agree with the pure ones.
    store = EdgeStore(tmp_path / "edge.sqlite3")
    ledger.create(store.db)
    with store._tx():
        for m in moves:
            ledger.write_movement(store.db, m, T0)
    assert ledger.lots(store.db) == lots
    # 7 pieces of milk: 5 from the earliest lot, 2 from the dateless one, 1 from no lot.
    alloc = ledger.allocate(lots, MILK, 8)
    assert [(a.batch if a else "-", n) for a, n in alloc] == [("B2", 5), (None, 2), ("-", 1)]
    out = ledger.outgoing("pickup", lots, MILK, 6, order=7)
    assert [m.qty for m in out] == [-5, -1] and all(m.order == 7 for m in out)
    for m in out:
        assert parse_movement(movement_data(m)) == m  # what the cloud would accept
    assert ledger.expiring(lots, date(2026, 5, 28), 2) == [lots[0]]
    assert ledger.expiring(lots, date(2026, 5, 28), 6) == lots[:2]
    store.close()


# ---------------------------------------------------------------- pickup verdicts


def _orders(**states: OrderState) -> Any:
    by_id = {s.id: s for s in states.values()}
    return lambda oid: by_id.get(oid)


def test_verification_verdicts() -> None:
    codec = PickupCodec(STORE, KEY)
    good = codec.issue(1, T0 + 3600)
    orders = _orders(a=OrderState(1, "pickup", "received", T0 + 3600),
                     b=OrderState(2, "pickup", "cancelled", T0 + 3600, "out of stock"),
                     c=OrderState(3, "delivery", "received", T0 + 3600),
                     d=OrderState(4, "pickup", "picked_up", T0 + 3600),
                     e=OrderState(5, "pickup", "received", T0 - 1))
    never = lambda store, oid: None  # noqa: E731

    def reason(code: str, *, c: Any = codec, redeemed: Any = never) -> str:
        v = check_code(c, code, T0, orders, redeemed)
        return "ok" if isinstance(v, Accepted) else v.reason

    assert reason(good) == "ok"
    assert reason(good, c=None) == "no_key"
    assert reason(PickupCodec("store-002", KEY).issue(1, T0 + 3600)) == "wrong_store"
    assert reason(PickupCodec(STORE, bytes(32)).issue(1, T0 + 3600)) == "bad_mac"
    assert reason(good[:-1] + ("A" if good[-1] != "A" else "B")) == "bad_mac"
    assert reason(codec.issue(1, T0 - 60)) == "expired"
    assert reason("PK1:HELLO") == "malformed"
    assert reason(codec.issue(9, T0 + 3600)) == "unknown_order"
    assert reason(codec.issue(2, T0 + 3600)) == "cancelled"
    assert reason(codec.issue(3, T0 + 3600)) == "not_pickup"
    assert reason(codec.issue(4, T0 + 3600)) == "already_redeemed"
    assert reason(codec.issue(5, T0 + 3600)) == "order_expired"
    assert reason(good, redeemed=lambda s, o: T0 - 5) == "already_redeemed"
    refused = check_code(codec, codec.issue(2, T0 + 3600), T0, orders, never)
    assert isinstance(refused, Refused) and "out of stock" in en(refused.message)


def test_rate_limiting_pauses_grow_and_a_success_clears_them() -> None:
    rl = RateLimiter(limit=5, window_s=60, pause_s=30, max_pause_s=100)
    for i in range(4):
        assert rl.failure(T0 + i) == 0
    assert rl.failure(T0 + 4) == 30
    assert rl.blocked(T0 + 10) == pytest.approx(24)
    assert rl.blocked(T0 + 40) == 0
    # Failures spread over more than a minute do not lock.
    rl2 = RateLimiter()
    assert all(rl2.failure(T0 + i * 20) == 0 for i in range(10))
    for i in range(5):
        pause = rl.failure(T0 + 50 + i)
    assert pause == 60  # the second lockout is twice as long
    for i in range(5):
        pause = rl.failure(T0 + 200 + i)
    assert pause == 100  # capped
    rl.success()
    assert rl.blocked(T0 + 205) == 0
    for i in range(5):
        pause = rl.failure(T0 + 300 + i)
    assert pause == 30


# ---------------------------------------------------------------- handover and lanes


def lanes(*grams: int, stable: bool = True) -> list[LaneReading]:
    return [LaneReading(i, g, stable) for i, g in enumerate(grams)]


def test_handover_measures_what_was_taken_and_shows_differences() -> None:
    lines = [PickLine(MILK, "Milk", 2, Location("fridge-1", 0, 250)),
             PickLine(EGGS, "Eggs", 1, Location("fridge-1", 1, 600)),
             PickLine(BREAD, "Bread", 1, None)]
    h = Handover(7, "Wang L.", lines, {})
    assert en(h.waiting_for()) == "Unlocking fridge-1"
    h.unlocking("fridge-1")
    h.lanes("fridge-1", lanes(2500, 3000))  # baseline before the door opens
    h.unlocked("fridge-1", True)
    h.door("fridge-1", True)
    h.lanes("fridge-1", lanes(2000, 3000, stable=False))  # both lanes moving
    h.lanes("fridge-1", [LaneReading(0, 1990, True)])  # milk settles while still open
    assert h.taken()[MILK] is None  # the door is open: nothing is final
    h.door("fridge-1", False)
    assert en(h.waiting_for()) == "fridge-1 closed: weighing"  # eggs not settled yet
    h.lanes("fridge-1", [LaneReading(1, 1790, True)])
    assert h.waiting_for() is None
    checks = h.checks()
    assert [(c.lane, c.verdict) for c in checks] == [(0, "ok"), (1, "mismatch")]
    assert checks[1].expected_grams == 2400 and checks[1].measured_grams == 1790
    assert h.taken() == {MILK: 2, EGGS: 2, BREAD: 1}
    assert h.differences() == [(EGGS, 1)]
    # Opened again (the clerk puts one box back): a lane nobody touches keeps its weight.
    h.door("fridge-1", True)
    h.lanes("fridge-1", [LaneReading(1, 2400, True)])
    h.door("fridge-1", False)
    assert h.differences() == [] and h.taken()[MILK] == 2


def test_lane_drop_without_a_sale_is_a_mismatch_and_a_sale_explains_one() -> None:
    watch = LaneWatch()
    item_at = {("f", 0): ("Milk", 250)}.get
    assert watch.feed("f", lanes(2500), item_at) == []
    assert watch.feed("f", lanes(2490), item_at) == []  # noise
    [check] = watch.feed("f", lanes(2000), item_at)
    assert check.verdict == "mismatch" and "2 gone without a sale" in check.note
    watch.explain(("f", 0), 1)
    [check] = watch.feed("f", lanes(1750), item_at)
    assert check.verdict == "ok"
    assert watch.feed("f", lanes(1500, stable=False), item_at) == []
    assert watch.feed("f", lanes(3000), item_at) == []  # restocked
    # A lane a handover is weighing is its business; another lane of the fridge is not.
    watch.feed("f", lanes(3000, 1000), {("f", 0): ("Milk", 250), ("f", 1): ("Egg", 100)}.get)
    [check] = watch.feed("f", lanes(2500, 700), {("f", 0): ("Milk", 250),
                                                 ("f", 1): ("Egg", 100)}.get,
                         covered={("f", 0)})
    assert (check.lane, check.verdict, check.note) == (1, "mismatch", "Egg: 3 gone without a sale")
    assert watch.settled[("f", 0)] == 2500  # re-baselined, unchecked
    assert parse_lanes({"lanes": [{"lane": 0, "grams": 12.4, "stable": True}, "x",
                                  {"lane": "1"}]}) == [LaneReading(0, 12, True)]


# ---------------------------------------------------------------- the service, real SQLite


def test_pickup_from_scan_to_confirmation_moves_stock_in_one_transaction(tmp_path: Path) -> None:
    env = Env(tmp_path)
    r = env.retail
    r.handle("mode", {"mode": "receive"})
    for line in [f"]C101{MILK}1726053010B1", f"]C101{MILK}1726060110B2", "]E06901234567816"]:
        assert r.handle("scan", {"code": line})["ok"], r.verdict
    r.handle("mode", {"mode": "sale"})
    env.order(41)
    env.order(41)  # redelivered: ignored
    assert [p["state"] for p in env.events("order")] == ["received"]
    env.fridge_event("lanes", {"lanes": [{"lane": 0, "grams": 500, "stable": True}]})
    v = r.handle("scan", {"code": "]Q1" + env.codec.issue(41, T0 + 3600)})
    assert v["ok"] and v["order"] == 41 and "Wang L." in v["title"]
    assert env.fridge.sent and env.fridge.sent[0][0] == 0x32  # UNLOCK to the lane's fridge
    r.tick()
    env.fridge_event("door", {"open": True})
    env.fridge_event("door", {"open": False})
    env.fridge_event("lanes", {"lanes": [{"lane": 0, "grams": 0, "stable": True}]})
    assert r.handover is not None and r.handover.differences() == []
    done = r.handle("confirm", {"order": 41})
    assert done["ok"] and "picked up" in done["title"]
    # Stock: 2 milk from the FEFO lot B1, bread from its (dateless-receipt) lot.
    moves = [parse_movement(d) for d in env.events("stock")]
    pickups = [m for m in moves if m.kind == "pickup"]
    assert sorted((m.item, m.batch or "", m.qty, m.order) for m in pickups) == [
        (BREAD, "", -1, 41), (MILK, "B1", -1, 41), (MILK, "B2", -1, 41)]
    # Every ledger row has exactly its outbox event and vice versa.
    rows = {r_[0] for r_ in env.store.db.execute("SELECT id FROM stock_movements")}
    assert rows == {m.id for m in moves}
    assert [parse_progress(p).state for p in env.events("order")] == ["received", "picked_up"]
    assert [c["verdict"] for c in env.events("lane_check")] == ["ok"]
    # The same code again, and a reissued code for the same order: refused.
    again = r.handle("scan", {"code": env.codec.issue(41, T0 + 3600)})
    assert not again["ok"] and again["reason"] == "already_redeemed"
    assert env.events("pickup") == [{"result": "refused", "reason": "already_redeemed"}]
    pending = env.store.db.execute(
        "SELECT count(*) FROM outbox o JOIN events e USING (device, boot, seq) "
        "WHERE e.type IN ('stock', 'order', 'lane_check', 'expiry', 'pickup')").fetchone()[0]
    assert pending == len(moves) + 2 + 1 + len(env.events("expiry")) + 1


def test_milk_received_by_gs1_lists_fefo_expiry_and_reports_changes(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.retail.handle("mode", {"mode": "receive"})
    env.retail.handle("scan", {"code": f"]C101{MILK}1726052910LATE"})
    env.retail.handle("scan", {"code": f"]C101{MILK}1726052810EARLY"})
    env.retail.handle("scan", {"code": f"]C101{MILK}1726070110FAR"})
    items = env.retail.view()["expiring"]
    assert [(x["batch"], x["expiry"]) for x in items] == [("EARLY", "2026-05-28"),
                                                         ("LATE", "2026-05-29")]
    reports = env.events("expiry")
    assert reports[-1]["items"][0] == {"item": MILK, "batch": "EARLY", "expiry": "2026-05-28",
                                       "qty": 1}
    n = len(reports)
    env.retail.check_expiry()  # unchanged: not reported again
    assert len(env.events("expiry")) == n
    env.retail.handle("mode", {"mode": "sale"})
    env.retail.handle("scan", {"code": "]E06901234567892"})  # FEFO: EARLY goes first
    assert env.retail.view()["expiring"][0]["batch"] == "LATE"
    assert len(env.events("expiry")) == n + 1


def test_refusals_are_rate_limited_and_reported_once_per_pause(tmp_path: Path) -> None:
    env = Env(tmp_path)
    forged = PickupCodec(STORE, bytes(32))
    for i in range(5):
        v = env.retail.handle("scan", {"code": forged.issue(100 + i, T0 + 600)})
        assert v["reason"] == "bad_mac" and "NOT a genuine" in v["message"]
    assert "paused for 30 s" in v["message"]
    env.order(42)
    good = env.codec.issue(42, T0 + 3600)
    for _ in range(3):
        v = env.retail.handle("scan", {"code": good})
        assert v["reason"] == "rate_limited" and "try again in" in v["message"]
    reasons = [e["reason"] for e in env.events("pickup")]
    assert reasons == ["bad_mac"] * 5 + ["rate_limited"]
    env.t[0] += 31
    assert env.retail.handle("scan", {"code": good})["ok"]


def test_no_key_refuses_and_cancel_and_expiry_change_the_order(tmp_path: Path) -> None:
    env = Env(tmp_path, pickup=False)
    env.order(43)
    v = env.retail.handle("scan", {"code": env.codec.issue(43, T0 + 3600)})
    assert v["reason"] == "no_key" and "no pickup key" in v["message"]
    env.retail.downlink(Cancel(43, STORE, "customer cancelled"))
    env.order(44)
    env.t[0] += 3601
    env.retail.tick()
    assert [(p["order"], p["state"]) for p in env.events("order")] == [
        (43, "received"), (43, "cancelled"), (44, "received"), (44, "expired")]


def test_delivery_orders_pack_dispatch_and_deliver(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.order(50, mode="delivery")
    assert [d["state"] for d in env.retail.view()["deliveries"]] == ["received"]
    for want in ("packed", "out_for_delivery", "delivered"):
        assert env.retail.handle("delivery", {"order": 50})["ok"]
        assert env.retail.view()["deliveries"][0]["state"] == want
    assert not env.retail.handle("delivery", {"order": 50})["ok"]
    dispatch = [m for m in map(parse_movement, env.events("stock")) if m.kind == "dispatch"]
    assert sorted((m.item, m.qty, m.order) for m in dispatch) == [(BREAD, -1, 50),
                                                                   (MILK, -2, 50)]


def test_a_failing_ledger_write_stores_nothing(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "edge.sqlite3")

    def boom(db: Any) -> None:
        db.execute("CREATE TABLE t (x)")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        store.add([NewEvent("ledger", "stock", None, None, T0, True, {})], extra=boom)
    assert store.db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    assert store.db.execute("SELECT name FROM sqlite_master WHERE name='t'").fetchone() is None
    added = store.add([NewEvent("ledger", "stock", None, None, T0, True, {})])
    assert added.stored == 1  # sequence numbers did not move on the rollback
    assert store.db.execute("SELECT seq FROM events").fetchone()[0] == 1
    store.close()


def test_config_pickup_and_retail_tables(tmp_path: Path) -> None:
    from edge.config import load
    from xiaodian.config import ConfigError

    base = ('[edge]\nstore_id = "store-001"\ndata_dir = "d"\n'
            '[mqtt]\nhost = "127.0.0.1"\nport = 8883\n'
            '[mqtt.tls]\nca = "ca.crt"\ncert = "c.crt"\nkey = "c.key"\n')
    cfg = tmp_path / "edge.toml"
    cfg.write_text(base)
    plain = load(cfg)
    assert plain.pickup is None and plain.retail.expiry_window_days == 2
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "pickup.hex").write_text(KEY.hex() + "\n")
    (tmp_path / "keys" / "pickup.hex").chmod(0o600)
    cfg.write_text(base + '[pickup]\nkey_file = "keys/pickup.hex"\nkey_id = 3\n'
                   '[retail]\nexpiry_window_days = 5\n')
    full = load(cfg)
    assert full.pickup is not None and full.pickup.key() == KEY and full.pickup.key_id == 3
    assert full.pickup.key_file == tmp_path / "keys" / "pickup.hex"  # relative to the file
    assert full.retail.expiry_window_days == 5
    (tmp_path / "keys" / "pickup.hex").write_text("abcd")
    with pytest.raises(ConfigError, match=r"pickup.*pickup\.hex holds 2 bytes \(at least 16\)"):
        load(cfg)
    cfg.write_text(base + '[pickup]\nkey_file = "missing.hex"\n')
    with pytest.raises(ConfigError, match=r"pickup.*cannot read .*missing\.hex"):
        load(cfg)


def test_the_terminal_refuses_a_pickup_key_others_can_read(tmp_path: Path) -> None:
    from edge.config import load
    from xiaodian.config import ConfigError

    key = tmp_path / "pickup.hex"
    key.write_text(KEY.hex() + "\n")
    cfg = tmp_path / "edge.toml"
    cfg.write_text('[edge]\nstore_id = "store-001"\ndata_dir = "d"\n'
                   '[mqtt]\nhost = "127.0.0.1"\nport = 8883\n'
                   '[mqtt.tls]\nca = "ca.crt"\ncert = "c.crt"\nkey = "c.key"\n'
                   '[pickup]\nkey_file = "pickup.hex"\n')
    for mode in (0o644, 0o640, 0o604):
        key.chmod(mode)
        # Anyone who reads it can make pickup codes: say which file and how to fix it.
        with pytest.raises(ConfigError, match=rf"pickup.*{key}.*{mode:04o}.*chmod 600 {key}"):
            load(cfg)
    key.chmod(0o600)
    loaded = load(cfg)
    assert loaded.pickup is not None and loaded.pickup.key() == KEY
    key.chmod(0o400)  # read-only for its owner is fine too
    assert load(cfg).pickup is not None


def test_after_a_restart_orders_catalogue_and_redemptions_are_still_there(
        tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.order(60)
    env.order(61)
    assert env.retail.handle("scan", {"code": env.codec.issue(60, T0 + 3600)})["ok"]
    env.retail.tick()
    # (Nobody opened the fridge: handed over unweighed, saying why.)
    assert env.retail.handle("confirm", {"order": 60, "override": "taken_by_hand"})["ok"]
    env.store.close()
    again = Env(tmp_path)  # a new process on the same file (its catalogue version 3 is old)
    again.order(61)  # redelivered after the restart: still one order
    assert [p["order"] for p in again.events("order")].count(61) == 1
    assert again.retail.catalogue[MILK].name == "Milk 1L"
    v = again.retail.handle("scan", {"code": again.codec.issue(60, T0 + 3600)})
    assert v["reason"] == "already_redeemed"
    assert again.retail.handle("scan", {"code": again.codec.issue(61, T0 + 3600)})["ok"]
    assert [o["order"] for o in again.retail.view()["orders"]] == [61]


def test_in_store_weighed_items_and_unknown_barcodes(tmp_path: Path) -> None:
    env = Env(tmp_path)
    assert "ignored" in env.retail.downlink(Catalogue(STORE, 2, ()))  # older: not applied
    env.retail.downlink(Catalogue(STORE, 4, (
        CatalogueItem("in:42", "Pork belly", "weight", 2, "chilled"),)))
    assert list(env.retail.catalogue) == ["in:42"]
    env.retail.handle("mode", {"mode": "receive"})
    v = env.retail.handle("scan", {"code": "]E02200042206981"})  # GB/T 18283, price 206.98
    assert v["ok"] and v["title"] == "Received: Pork belly"
    assert v["price"] == "CN¥206.98" and v["weight"] is None  # what the label says
    env.retail.handle("mode", {"mode": "waste"})
    assert env.retail.handle("scan", {"code": "2200042206981"})["ok"]  # typed, no AIM
    moves = [parse_movement(d) for d in env.events("stock")]
    assert [(m.kind, m.item, m.qty, m.expiry) for m in moves] == [
        ("delivery", "in:42", 1, "2026-05-30"), ("waste", "in:42", -1, "2026-05-30")]
    bad = env.retail.handle("scan", {"code": "]E06901234567891"})
    assert not bad["ok"] and "check digit" in bad["message"]
    unknown = env.retail.handle("scan", {"code": "]E06901234567892"})  # milk left the catalogue
    assert not unknown["ok"] and unknown["title"] == "Item not in the catalogue"
    assert not env.retail.handle("mode", {"mode": "steal"})["ok"]
    assert not env.retail.handle("confirm", {"order": "x"})["ok"]
    assert len(env.events("stock")) == 2  # nothing else was recorded


def test_manual_adjustments_need_a_reason(tmp_path: Path) -> None:
    env = Env(tmp_path)
    assert not env.retail.handle("adjust", {"item": MILK, "qty": 3})["ok"]
    assert not env.retail.handle("adjust", {"item": MILK, "qty": 0, "note": "count"})["ok"]
    assert not env.retail.handle("adjust", {"item": MILK, "qty": 1, "note": "x",
                                            "expiry": "tomorrow"})["ok"]
    v = env.retail.handle("adjust", {"item": MILK, "qty": -2, "note": "stock count",
                                     "batch": "B7", "expiry": "2026-05-29"})
    assert v["ok"] and v["title"] == "Adjusted Milk 1L by -2"
    [m] = [parse_movement(d) for d in env.events("stock")]
    assert (m.kind, m.qty, m.batch, m.note) == ("adjust", -2, "B7", "stock count")
    assert ledger.lots(env.store.db) == [ledger.Lot(MILK, "B7", "2026-05-29", -2)]


def test_a_cancellation_that_overtakes_its_order_keeps_the_order_out(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.retail.downlink(Cancel(60, STORE, "customer cancelled"))
    env.order(60)  # the order itself, arriving late
    v = env.retail.handle("scan", {"code": env.codec.issue(60, T0 + 3600)})
    assert not v["ok"] and v["reason"] == "cancelled"
    assert all(p["order"] != 60 for p in env.events("order"))  # nothing to report: never live
    assert all(o["order"] != 60 for o in env.retail.view()["orders"])


def test_a_handover_carries_on_after_a_restart_with_what_the_fridge_did_meanwhile(
        tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.order(70)

    def stored(e: Env, type_: str, data: dict[str, Any], apply: bool = True) -> None:
        added = e.store.add([NewEvent("fridge-1", type_, None, None, e.t[0], True, data)])
        if apply:
            e.retail.on_records(added.fresh)

    stored(env, "lanes", {"lanes": [{"lane": 0, "grams": 750, "stable": True}]})
    assert env.retail.handle("scan", {"code": env.codec.issue(70, T0 + 3600)})["ok"]
    env.retail.tick()  # unlocked
    stored(env, "door", {"open": True})
    stored(env, "lanes", {"lanes": [{"lane": 0, "grams": 500, "stable": True}]})
    (state,) = env.store.db.execute("SELECT state FROM handover").fetchone()
    assert json.loads(state)["fridges"] == {"fridge-1": ["open", ""]}
    assert json.loads(state)["baseline"] == [["fridge-1", 0, 750]]
    # The power goes: the door shut and the last milk taken were stored, never applied.
    stored(env, "lanes", {"lanes": [{"lane": 0, "grams": 250, "stable": True}]}, apply=False)
    stored(env, "door", {"open": False}, apply=False)
    env.store.close()

    again = Env(tmp_path)
    r = again.retail
    assert r.handover is not None and r.handover.order == 70
    assert r.verdict["ok"] and "resumed" in en(r.verdict["message"])
    assert r.handover.waiting_for() is None and r.handover.taken()[MILK] == 2
    r.tick()
    assert again.fridge.sent == []  # the door was opened: no new unlock
    assert r.handle("confirm", {"order": 70})["title"] == "Order 70 picked up"
    assert [c["verdict"] for c in again.events("lane_check")] == ["ok"]
    assert again.store.db.execute("SELECT count(*) FROM handover").fetchone()[0] == 0
    again.store.close()
    assert Env(tmp_path).retail.handover is None  # confirmed: not brought back


def test_a_handover_restored_before_the_door_opened_unlocks_again(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.order(71)
    env.order(72)
    assert env.retail.handle("scan", {"code": env.codec.issue(71, T0 + 3600)})["ok"]
    env.retail.tick()
    h = env.retail.handover
    assert h is not None and Handover.from_state(h.state()).view() == h.view()
    env.store.close()
    again = Env(tmp_path)
    assert again.retail.handover is not None and again.fridge.sent == []
    again.retail.tick()  # the readers run: the unlock goes again (it may have timed out)
    assert [m for m, _ in again.fridge.sent] == [0x32]
    # Cancelled by the cloud during the handover: gone from the table in the same commit.
    again.retail.downlink(Cancel(71, STORE, "customer cancelled"))
    assert again.retail.handover is None
    assert again.store.db.execute("SELECT count(*) FROM handover").fetchone()[0] == 0
    # Aborted by the clerk: gone once the loop has passed.
    assert again.retail.handle("scan", {"code": again.codec.issue(72, T0 + 3600)})["ok"]
    again.retail.tick()
    assert again.store.db.execute("SELECT count(*) FROM handover").fetchone()[0] == 1
    again.retail.handle("abort", {})
    again.retail.tick()
    assert again.store.db.execute("SELECT count(*) FROM handover").fetchone()[0] == 0


def test_stock_mode_names_the_item_and_waste_and_adjust_come_out_fefo(tmp_path: Path) -> None:
    env = Env(tmp_path)
    r = env.retail
    r.handle("mode", {"mode": "receive"})
    for line in [f"]C101{MILK}1726053010B1", f"]C101{MILK}1726053010B1",
                 f"]C101{MILK}1726060110B2"]:
        assert r.handle("scan", {"code": line})["ok"]
    r.handle("mode", {"mode": "stock"})
    v = r.handle("scan", {"code": f"]C101{MILK}1726060110B2"})
    assert v["ok"] and v["item"] == MILK and v["batch"] == "B2" and v["stock_item"]
    assert len(env.events("stock")) == 3  # naming the item moved nothing
    assert {"item": MILK, "name": "Milk 1L"} in r.view()["catalogue"]
    assert not r.handle("waste", {"item": MILK, "qty": 1})["ok"]  # no reason
    assert not r.handle("waste", {"item": MILK, "qty": -1, "note": "expired"})["ok"]
    assert r.handle("waste", {"item": MILK, "qty": 1, "note": "damaged",
                              "batch": "B2"})["title"] == "Waste: Milk 1L ×1"
    assert r.handle("adjust", {"item": MILK, "qty": -1, "note": "count correction"})["ok"]
    moves = [parse_movement(d) for d in env.events("stock")][3:]
    assert [(m.kind, m.qty, m.batch, m.note) for m in moves] == [
        ("waste", -1, "B2", "damaged"), ("adjust", -1, "B1", "count correction")]
    assert ledger.lots(env.store.db) == [ledger.Lot(MILK, "B1", "2026-05-30", 1)]
    # Pieces thrown out of a lane are no theft.
    r.on_records([NewEvent("fridge-1", "lanes", None, None, T0, True,
                           {"lanes": [{"lane": 0, "grams": 750, "stable": True}]})])
    assert r.handle("waste", {"item": MILK, "qty": 1, "note": "expired"})["ok"]
    r.on_records([NewEvent("fridge-1", "lanes", None, None, T0, True,
                           {"lanes": [{"lane": 0, "grams": 500, "stable": True}]})])
    assert [c["verdict"] for c in env.events("lane_check")] == ["ok"]


def test_the_door_as_reported_at_reconnect_moves_a_restored_handover_on(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.order(73)
    env.fridge_event("lanes", {"lanes": [{"lane": 0, "grams": 500, "stable": True}]})
    assert env.retail.handle("scan", {"code": env.codec.issue(73, T0 + 3600)})["ok"]
    env.retail.tick()
    env.fridge_event("door", {"open": True})
    env.retail.tick()
    env.store.close()
    again = Env(tmp_path)  # the fridge rebooted too: its log of the door shutting is gone
    h = again.retail.handover
    assert h is not None and h.fridges["fridge-1"].phase == "open"
    again.fridge_event("door", {"open": False, "state_report": True})
    again.fridge_event("lanes", {"lanes": [{"lane": 0, "grams": 0, "stable": True}]})
    assert h.waiting_for() is None and h.taken()[MILK] == 2
    assert again.retail.handle("confirm", {"order": 73})["title"] == "Order 73 picked up"


# ---------------------------------------------------------------- nothing leaves unseen

YOGURT = "06901234567823"


def test_a_cancelled_handover_reports_what_was_taken_and_the_code_stays_good(
        tmp_path: Path) -> None:
    env = Env(tmp_path)
    r = env.retail
    env.fridge_event("lanes", {"lanes": [{"lane": 0, "grams": 2500, "stable": True}]})
    env.order(41)
    code = env.codec.issue(41, T0 + 3600)
    # Cancelled before any door opened: nothing can have left, nothing to report.
    assert r.handle("scan", {"code": code})["ok"]
    r.tick()
    assert r.handle("abort", {})["missing"] == []
    assert env.events("lane_check") == []
    for round_ in (1, 2):  # twice: 2 milk out, Cancel
        assert r.handle("scan", {"code": code})["ok"]
        r.tick()
        env.fridge_event("door", {"open": True})
        env.fridge_event("door", {"open": False})
        env.fridge_event("lanes", {"lanes": [{"lane": 0, "grams": 2500 - 500 * round_,
                                              "stable": True}]})
        v = r.handle("abort", {})
        assert not v["ok"] and "Milk 1L: 2 taken" in v["message"]
        assert v["missing"] == ["Milk 1L: 2 taken"]
        assert env.store.db.execute("SELECT count(*) FROM handover").fetchone()[0] == 0
    assert env.events("lane_check") == [
        {"lane": 0, "order": 41, "expected_grams": 2500, "measured_grams": 2000,
         "verdict": "mismatch", "note": "Milk 1L: 2 taken during a cancelled handover of order 41"},
        {"lane": 0, "order": 41, "expected_grams": 2000, "measured_grams": 1500,
         "verdict": "mismatch", "note": "Milk 1L: 2 taken during a cancelled handover of order 41"}]
    # The order still waits and its code still works (the customer may come back).
    assert [s["state"] for s in env.events("order")] == ["received"]
    assert r.handle("scan", {"code": code})["ok"]


def test_a_handover_cancelled_with_the_door_open_hands_its_lane_back_to_the_watch(
        tmp_path: Path) -> None:
    env = Env(tmp_path)
    r = env.retail
    env.fridge_event("lanes", {"lanes": [{"lane": 0, "grams": 2500, "stable": True}]})
    env.order(42)
    env.order(43)
    assert r.handle("scan", {"code": env.codec.issue(42, T0 + 3600)})["ok"]
    r.tick()
    env.fridge_event("door", {"open": True})
    env.fridge_event("lanes", {"lanes": [{"lane": 0, "grams": 2400, "stable": False}]})
    r.handle("abort", {})  # the door still open, the lane moving: nothing to weigh yet
    assert env.events("lane_check") == []
    env.fridge_event("door", {"open": False})
    env.fridge_event("lanes", {"lanes": [{"lane": 0, "grams": 1750, "stable": True}]})
    [check] = env.events("lane_check")
    assert (check["order"], check["expected_grams"], check["measured_grams"],
            check["verdict"]) == (42, 2500, 1750, "mismatch")
    assert check["note"] == "Milk 1L: 3 taken during a cancelled handover of order 42"
    # Cancelled by the cloud after the door opened: reported all the same.
    assert r.handle("scan", {"code": env.codec.issue(43, T0 + 3600)})["ok"]
    r.tick()
    env.fridge_event("door", {"open": True})
    env.fridge_event("lanes", {"lanes": [{"lane": 0, "grams": 1500, "stable": True}]})
    r.downlink(Cancel(43, STORE, "customer cancelled"))
    assert r.handover is None
    last = env.events("lane_check")[-1]
    assert (last["order"], last["verdict"], last["note"]) == (
        43, "mismatch", "Milk 1L: 1 taken during the handover of order 43, cancelled by the cloud")


def test_other_lanes_are_still_checked_while_a_handover_is_open(tmp_path: Path) -> None:
    env = Env(tmp_path)
    r = env.retail
    r.downlink(Catalogue(STORE, 5, (
        CatalogueItem(MILK, "Milk 1L", "piece", 7, "chilled", Location("fridge-1", 0, 250)),
        CatalogueItem(YOGURT, "Yogurt", "piece", 7, "chilled", Location("fridge-1", 1, 150)))))
    env.fridge_event("lanes", {"lanes": [{"lane": 0, "grams": 1000, "stable": True},
                                         {"lane": 1, "grams": 1500, "stable": True}]})
    r.downlink(Order(60, STORE, "pickup", "Li", T0, T0 + 3600, (OrderLine(MILK, 2),)))
    assert r.handle("scan", {"code": env.codec.issue(60, T0 + 3600)})["ok"]
    r.tick()
    env.fridge_event("door", {"open": True})
    env.fridge_event("door", {"open": False})
    env.fridge_event("lanes", {"lanes": [{"lane": 0, "grams": 500, "stable": True},
                                         {"lane": 1, "grams": 1050, "stable": True}]})
    # During the handover, the yogurt lane (not in the order) is checked as usual.
    [check] = env.events("lane_check")
    assert (check["lane"], check["verdict"], check["note"]) == (
        1, "mismatch", "Yogurt: 3 gone without a sale")
    assert r.handle("confirm", {"order": 60})["title"] == "Order 60 picked up"
    assert [c["note"] for c in env.events("lane_check")] == [
        "Yogurt: 3 gone without a sale", "Milk 1L: 2 taken, 2 ordered"]


def test_lane_weights_survive_an_agent_restart(tmp_path: Path) -> None:
    env = Env(tmp_path)
    r = env.retail
    r.handle("mode", {"mode": "receive"})
    for _ in range(6):
        r.handle("scan", {"code": "]E06901234567892"})
    r.handle("mode", {"mode": "sale"})

    def stored(e: Env, data: dict[str, Any]) -> None:  # as the agent does: stored, then fed
        e.retail.on_records(e.store.add(
            [NewEvent("fridge-1", "lanes", None, None, e.t[0], True, data)]).fresh)

    stored(env, {"lanes": [{"lane": 0, "grams": 1500, "stable": True}]})
    stored(env, {"lanes": [{"lane": 0, "grams": 1250, "stable": True}]})  # 1 sold, unscanned
    stored(env, {"lanes": [{"lane": 0, "grams": 1100, "stable": False}]})  # moving: not kept
    env.t[0] += 1
    r.handle("scan", {"code": "]E06901234567892"})  # a sale, its piece not seen leaving yet
    assert [c["note"] for c in env.events("lane_check")] == ["Milk 1L: 1 gone without a sale"]
    env.store.close()

    # The agent restarts; the fridge does not (it reports its lanes only on a change).
    again = Env(tmp_path)
    assert again.retail.lanes.settled == {("fridge-1", 0): 1250}
    again.t[0] += 2
    stored(again, {"lanes": [{"lane": 0, "grams": 1000, "stable": True}]})
    assert again.events("lane_check")[-1]["note"] == "Milk 1L: 1 sold"  # the sale explains it
    again.store.close()

    third = Env(tmp_path)
    assert third.retail.lanes.settled == {("fridge-1", 0): 1000}
    assert third.retail.lanes.credit.get(("fridge-1", 0), 0) == 0  # that sale was seen leaving
    third.order(41)
    assert third.retail.handle("scan", {"code": third.codec.issue(41, T0 + 3600)})["ok"]
    third.retail.tick()
    third.fridge_event("door", {"open": True})
    third.fridge_event("door", {"open": False})
    third.fridge_event("lanes", {"lanes": [{"lane": 0, "grams": 0, "stable": True}]})
    h = third.retail.handover
    assert h is not None and h.baseline == {("fridge-1", 0): 1000}
    assert h.taken()[MILK] == 4 and h.differences() == [(MILK, 2)]
    done = third.retail.handle("confirm", {"order": 41})
    assert "with differences" in done["title"]
    assert third.events("lane_check")[-1]["note"] == "Milk 1L: 4 taken, 2 ordered"


def test_a_handover_confirmed_before_it_was_weighed_leaves_nothing_unchecked(
        tmp_path: Path) -> None:
    env = Env(tmp_path)
    r = env.retail
    phrase = "during the handover of order {}, confirmed before it was weighed"
    env.fridge_event("lanes", {"lanes": [{"lane": 0, "grams": 2500, "stable": True}]})
    env.order(44)
    env.order(45)
    assert r.handle("scan", {"code": env.codec.issue(44, T0 + 3600)})["ok"]
    r.tick()
    env.fridge_event("door", {"open": True})
    env.fridge_event("lanes", {"lanes": [{"lane": 0, "grams": 1500, "stable": True}]})
    # Confirmed with the door still open: refused until the clerk says why; then 4 gone,
    # 2 handed over (as ordered).
    refused = r.handle("confirm", {"order": 44})
    assert not refused["ok"] and refused["reason"] == "unweighed"
    assert r.handover is not None and env.events("lane_check") == []
    assert r.handle("confirm", {"order": 44, "override": "scale_not_settling"})["ok"]
    [check] = env.events("lane_check")
    assert (check["order"], check["expected_grams"], check["measured_grams"],
            check["verdict"]) == (44, 2000, 1500, "mismatch")
    assert check["note"] == "Milk 1L: 4 taken, 2 handed over " + phrase.format(44)
    env.fridge_event("lanes", {"lanes": [{"lane": 0, "grams": 1250, "stable": True}]})
    env.fridge_event("door", {"open": False})
    last = env.events("lane_check")[-1]
    assert (last["order"], last["verdict"], last["note"]) == (
        44, "mismatch", "Milk 1L: 1 taken " + phrase.format(44))
    # Confirmed while the lane was still moving: measured from what should be left.
    assert r.handle("scan", {"code": env.codec.issue(45, T0 + 3600)})["ok"]
    r.tick()
    env.fridge_event("door", {"open": True})
    env.fridge_event("lanes", {"lanes": [{"lane": 0, "grams": 800, "stable": False}]})
    assert r.handle("confirm", {"order": 45, "override": "scale_not_settling"})["ok"]
    assert len(env.events("lane_check")) == 2
    env.fridge_event("door", {"open": False})
    env.fridge_event("lanes", {"lanes": [{"lane": 0, "grams": 500, "stable": True}]})
    last = env.events("lane_check")[-1]
    assert (last["order"], last["expected_grams"], last["measured_grams"], last["note"]) == (
        45, 750, 500, "Milk 1L: 1 taken " + phrase.format(45))
