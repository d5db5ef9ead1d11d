"""A planned wave's manifests and pick list (CSV, printable HTML), its dispatch through
the downlink, and `xiaodian supply plan|cutoff|manifest|advance` on the real database."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from cloud_gateway import downlink, retail
from cloud_gateway.db import Database
from cloud_gateway.supply import cutoff, dispatch, manifest, transit, waves
from cloud_gateway.supply.cycles import CycleError
from devstack.cli import main
from devstack.testkit.browser import english_words
from devstack.testkit.supply_world import DURIAN, EGGS, MILK, RICE, S1, S2, ZONE, seed
from xiaodian.i18n import negotiate, translator
from xiaodian.wire import retail as contract

WAVE = date(2026, 12, 7)
BEFORE = datetime(2026, 12, 7, 10, 0, tzinfo=UTC).timestamp()  # 18:00 in Shanghai
AFTER = datetime(2026, 12, 7, 15, 5, tzinfo=UTC).timestamp()


@pytest.fixture
def db(db_target: Path | str) -> Iterator[Database]:
    with Database.open(db_target) as d, d.transaction() as conn:
        seed(conn, BEFORE)
    with Database.open(db_target) as d:
        yield d


def place(db: Database, store: str, customer: str, *lines: tuple[str, int]) -> int:
    req = retail.OrderRequest(tuple(contract.OrderLine(i, q) for i, q in lines), "pickup",
                              customer, 3600)
    with db.transaction() as conn:
        order, _ = waves.place_preorder(conn, store, req, BEFORE, "resident")
    return order.id


def planned(db: Database) -> tuple[int, int, int]:
    a = place(db, S1, "王芳", (MILK, 2), (RICE, 1))
    b = place(db, S1, "李雷", (MILK, 1))
    c = place(db, S2, "赵敏", (EGGS, 6))
    with db.transaction() as conn:  # S2 has 2 milk that stay sellable: netted
        conn.execute("INSERT INTO stock (store, item, batch, expiry, on_hand, grams,"
                     " movements, updated_at) VALUES (?, ?, 'B1', '2026-12-31', 2, 0, 1, ?)",
                     (S2, MILK, BEFORE))
        cutoff.cutoff(conn, ZONE, WAVE, AFTER, "operator")
    return a, b, c


def test_one_bag_per_pre_order_and_the_rest_for_the_shelf(db: Database) -> None:
    a, b, c = planned(db)
    ms = {m.store: m for m in manifest.manifests(db.conn, ZONE, WAVE)}
    assert set(ms) == {S1, S2}
    milk = {ln.item: ln for ln in ms[S1].lines}[MILK]
    assert [(p.order, p.qty, p.from_stock) for p in milk.preorders] == [(a, 2, 0), (b, 1, 0)]
    assert milk.shelf == milk.qty - 3 and milk.batch == "D20261208"
    bags = manifest.bags(ms[S1])
    assert [bg.name for bg in bags][:2] == [str(a), str(b)]
    assert sorted((ln[0], ln[2]) for ln in bags[0].lines) == [(RICE, 1), (MILK, 2)]
    rows = list(csv.DictReader(io.StringIO(manifest.pick_list_csv(list(ms.values())))))
    assert {(r["store"], r["bag"], r["item"], r["qty"]) for r in rows if r["bag"] == str(c)} \
        == {(S2, str(c), EGGS, "6")}
    assert all(r["route"] == ZONE for r in rows)
    # Every delivered piece is in exactly one bag.
    for m in ms.values():
        for ln in m.lines:
            assert ln.qty == sum(int(r["qty"]) for r in rows
                                 if r["store"] == m.store and r["item"] == ln.item)
    lines = list(csv.DictReader(io.StringIO(manifest.manifest_csv(list(ms.values())))))
    got = {(r["store"], r["item"]): r for r in lines}
    assert got[(S1, MILK)]["preorders"] == f"{a}:2;{b}:1"


def test_the_printable_page_is_chinese_apart_from_data(db: Database) -> None:
    planned(db)
    ms = manifest.manifests(db.conn, ZONE, WAVE)
    page = manifest.html(ms, translator(negotiate(None)), ZONE, WAVE, date(2026, 12, 8),
                         "Asia/Shanghai")
    assert '<html lang="zh-CN">' in page and "拣货单" in page
    words = re.sub(r"<[^>]*>", " ", page.split("<body>")[1])
    assert english_words(words, allowed=[ZONE, "D20261208", "English"]) == []
    en = manifest.html(ms, translator(negotiate("en")), ZONE, WAVE, date(2026, 12, 8),
                       "Asia/Shanghai")
    assert "Pick list" in en


def test_dispatch_queues_manifests_and_pre_orders_once(db: Database) -> None:
    a, b, c = planned(db)
    with pytest.raises(CycleError, match="next is picked"), db.transaction() as conn:
        dispatch.dispatch(conn, ZONE, WAVE, AFTER)
    with db.transaction() as conn:
        waves.advance(conn, ZONE, WAVE, "picked", AFTER)
        assert dispatch.dispatch(conn, ZONE, WAVE, AFTER + 1)
    with db.transaction() as conn:
        assert not dispatch.dispatch(conn, ZONE, WAVE, AFTER + 2)
    rows = db.conn.execute("SELECT store, kind, ref, topic, payload FROM downlink"
                           " WHERE kind IN ('manifest', 'order') ORDER BY id").fetchall()
    kinds = [(r[0], r[1]) for r in rows]
    assert kinds.count((S1, "manifest")) == 1 and kinds.count((S2, "manifest")) == 1
    assert sorted(r[2] for r in rows if r[1] == "order") == sorted([a, b, c])
    for r in rows:
        msg = contract.parse_downlink(r[3], bytes(r[4]))
        if r[1] == "manifest":
            assert isinstance(msg, contract.Manifest) and msg.store == r[0]
            assert msg.wave == "2026-12-07" and msg.delivery == "2026-12-08"
        else:
            assert isinstance(msg, contract.Order) and msg.mode == "pickup"
    order = retail.get_order(db.conn, S1, a)
    assert order is not None and order["state"] == "open"
    # A broker that lost them: the manifests of a wave on its way are sent again.
    with db.transaction() as conn:
        conn.execute("UPDATE downlink SET published_at = ?", (AFTER,))
        assert downlink.resync(conn, AFTER + 3) >= 2
        waves.advance(conn, ZONE, WAVE, "delivered", AFTER + 4)
        conn.execute("UPDATE downlink SET published_at = ?", (AFTER,))
        assert transit.requeue_in_transit(conn) == 0  # delivered: no longer


def test_the_cutoff_sends_the_manifests_so_the_stores_hold_netted_stock(db: Database) -> None:
    """The manifest leaves at the cutoff (its `from_stock` is what the store holds from
    then on); dispatch sends the same manifests again, never a second number."""
    _, _, c = planned(db)
    queued = db.conn.execute("SELECT store, ref, payload FROM downlink WHERE kind ="
                             " 'manifest' AND published_at IS NULL ORDER BY id").fetchall()
    assert sorted(r[0] for r in queued) == [S1, S2]
    s2 = contract.parse_downlink(f"xd/v1/{S2}/orders",
                                 bytes(next(r[2] for r in queued if r[0] == S2)))
    assert isinstance(s2, contract.Manifest)
    assert [s.order for ln in s2.lines for s in ln.serves] == [c]
    with db.transaction() as conn:
        conn.execute("UPDATE downlink SET published_at = ?", (AFTER,))  # the broker has them
        waves.advance(conn, ZONE, WAVE, "picked", AFTER)
        assert dispatch.dispatch(conn, ZONE, WAVE, AFTER + 1)
    again = db.conn.execute("SELECT store, ref FROM downlink WHERE kind = 'manifest'"
                            " AND published_at IS NULL ORDER BY id").fetchall()
    # The same numbers, again.
    assert sorted((r[0], r[1]) for r in again) == sorted((r[0], r[1]) for r in queued)
    assert db.conn.execute("SELECT COUNT(*) FROM manifests").fetchone()[0] == 2


def test_a_pre_order_the_stores_stock_covers_in_full_still_has_its_line(
        db: Database) -> None:
    """S2's sellable milk covers its pre-order of 2: the plan brings no milk, yet the
    manifest carries a line of 0 pieces whose `from_stock` the store holds from the
    cutoff (without it a walk-in could buy them before the pickup)."""
    e = place(db, S2, "赵敏", (MILK, 2), (EGGS, 6))
    with db.transaction() as conn:
        conn.execute("INSERT INTO stock (store, item, batch, expiry, on_hand, grams,"
                     " movements, updated_at) VALUES (?, ?, 'B1', '2026-12-31', 9, 0, 1, ?)",
                     (S2, MILK, BEFORE))
        cutoff.cutoff(conn, ZONE, WAVE, AFTER, "operator")
    rows = {(r["store"], r["item"]): r for r in cutoff.plan_rows(db.conn, ZONE, WAVE)}
    milk = rows[(S2, MILK)]
    assert milk["qty"] == 0 and milk["why"]["preorders"] == 2
    assert milk["why"]["netted_stock"] == 9
    (payload,) = [bytes(r[0]) for r in db.conn.execute(
        "SELECT payload FROM downlink WHERE kind = 'manifest' AND store = ?", (S2,))]
    m = contract.parse_downlink(f"xd/v1/{S2}/orders", payload)
    assert isinstance(m, contract.Manifest)
    by_item = {ln.item: ln for ln in m.lines}
    assert (by_item[MILK].qty, by_item[MILK].lots) == (0, ())
    assert [(s.order, s.qty, s.from_stock) for s in by_item[MILK].serves] == [(e, 0, 2)]
    assert [(s.order, s.qty, s.from_stock) for s in by_item[EGGS].serves] == [(e, 6, 0)]
    # Nothing to pack for it: the pick list has no milk; the eggs are in the order's bag.
    ms = manifest.manifests(db.conn, ZONE, WAVE, S2)
    picked = list(csv.DictReader(io.StringIO(manifest.pick_list_csv(ms))))
    assert {(r["bag"], r["item"]) for r in picked} == {(str(e), EGGS)} | {
        ("shelf", r["item"]) for r in picked if r["bag"] == "shelf"}
    assert all(r["item"] != MILK for r in picked)


def test_a_manifest_lost_between_the_cutoff_and_dispatch_is_sent_again(
        db: Database) -> None:
    """A broker that lost its sessions after the cutoff: the manifests (which the stores
    hold pre-ordered stock by) are put back in line at once, not only at dispatch."""
    planned(db)

    def lost() -> int:
        with db.transaction() as conn:
            conn.execute("UPDATE downlink SET published_at = ? WHERE kind = 'manifest'",
                         (AFTER,))
            return transit.requeue_in_transit(conn)

    def unsent() -> list[str]:
        return sorted(r[0] for r in db.conn.execute(
            "SELECT store FROM downlink WHERE kind = 'manifest' AND published_at IS NULL"))

    assert waves.get_cycle(db.conn, ZONE, WAVE)["state"] == "planned"  # type: ignore[index]
    assert lost() == 2 and unsent() == [S1, S2]
    with db.transaction() as conn:  # one terminal comes back: only its manifest
        conn.execute("UPDATE downlink SET published_at = ? WHERE kind = 'manifest'", (AFTER,))
        assert transit.requeue_in_transit(conn, S2) == 1
    assert unsent() == [S2]
    with db.transaction() as conn:
        waves.advance(conn, ZONE, WAVE, "picked", AFTER)
    assert lost() == 2
    with db.transaction() as conn:
        waves.advance(conn, ZONE, WAVE, "dispatched", AFTER)
    assert lost() == 2
    with db.transaction() as conn:
        waves.advance(conn, ZONE, WAVE, "delivered", AFTER)
    assert lost() == 0 and unsent() == []  # delivered: no longer


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_commands(db: Database, db_target: Path | str,
                      capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = str(db_target)
    a = place(db, S1, "王芳", (MILK, 2))
    code, out, _ = run(capsys, "supply", "plan", "--zone", ZONE, "--wave", "2026-12-07",
                       "--db", target, "--json")
    assert code == 0
    plan = json.loads(out)
    line = next(x for x in plan["lines"] if x["store"] == S1 and x["item"] == MILK)
    assert line["why"]["preorders"] == 2
    code, out, _ = run(capsys, "supply", "plan", "--zone", ZONE, "--wave", "2026-12-07",
                       "--db", target)
    assert code == 0 and "预订 2" in out and "鲜牛奶" in out
    code, _, err = run(capsys, "supply", "cutoff", "--zone", "nroth", "--db", target)
    assert code == 1 and "no delivery zone 'nroth'" in err
    assert db.conn.execute("SELECT COUNT(*) FROM supply_cycles WHERE zone = 'nroth'"
                           ).fetchone()[0] == 0
    code, out, err = run(capsys, "supply", "manifest", "--zone", ZONE, "--wave",
                         "2026-12-07", "--db", target)
    assert code == 1 and "no plan yet" in err
    code, out, _ = run(capsys, "supply", "cutoff", "--zone", ZONE, "--wave", "2026-12-07",
                       "--db", target)
    first = json.loads(out)
    assert code == 0 and first["changed"] and first["cycle"]["state"] == "planned"
    code, out, _ = run(capsys, "supply", "cutoff", "--zone", ZONE, "--wave", "2026-12-07",
                       "--db", target)
    assert code == 0 and json.loads(out) == {**first, "changed": False}
    code, out, _ = run(capsys, "supply", "manifest", "--zone", ZONE, "--wave", "2026-12-07",
                       "--db", target, "--format", "pick-csv")
    assert code == 0 and f"{ZONE},{S1},{a},王芳,{MILK},鲜牛奶,2," in out
    page = tmp_path / "pick.html"
    code, _, _ = run(capsys, "supply", "manifest", "--zone", ZONE, "--wave", "2026-12-07",
                     "--db", target, "--format", "html", "--out", str(page))
    assert code == 0 and "王芳" in page.read_text(encoding="utf-8")
    code, _, err = run(capsys, "supply", "advance", "--zone", ZONE, "--wave", "2026-12-07",
                       "--to", "dispatched", "--db", target)
    assert code == 2 and "next is picked" in err
    for step in ("picked", "dispatched"):
        code, out, _ = run(capsys, "supply", "advance", "--zone", ZONE, "--wave",
                           "2026-12-07", "--to", step, "--db", target)
        assert code == 0 and json.loads(out)["cycle"]["state"] == step


def test_settings_commands(db_target: Path | str, capsys: pytest.CaptureFixture[str]) -> None:
    target = str(db_target)
    code, _, err = run(capsys, "supply", "store", "set", S1, "--zone", ZONE, "--db", target)
    assert code == 2 and "--fridge" in err
    code, out, _ = run(capsys, "supply", "store", "set", S1, "--zone", ZONE, "--fridge", "80",
                       "--pickup", "30", "--db", target)
    assert code == 0 and json.loads(out)["pickup_capacity"] == 30
    code, out, _ = run(capsys, "supply", "zone", "set", ZONE, "--cutoff", "22:30", "--db",
                       target)
    assert code == 0 and json.loads(out)["cutoff"] == "22:30"
    code, _, err = run(capsys, "supply", "zone", "set", ZONE, "--cutoff", "late", "--db",
                       target)
    assert code == 2 and "HH:MM" in err
    code, out, _ = run(capsys, "supply", "item", "set", MILK, "--name", "鲜牛奶",
                       "--shelf-life", "5", "--case-pack", "12", "--volume", "1", "--cost",
                       "500", "--price", "800", "--db", target)
    assert code == 0 and json.loads(out)["chilled"] is True


def test_plan_says_what_the_cutoff_will_cancel_move_or_refund(
        db: Database, db_target: Path | str, capsys: pytest.CaptureFixture[str]) -> None:
    a = place(db, S1, "王芳", (MILK, 2), (DURIAN, 1))
    with db.transaction() as conn:
        conn.execute("UPDATE store_state SET online = FALSE WHERE store = ?", (S1,))
    code, out, _ = run(capsys, "supply", "plan", "--zone", ZONE, "--wave", "2026-12-07",
                       "--db", str(db_target))
    assert code == 0
    assert "榴莲：预订总量未达到预售最低量 3" in out
    assert f"预订单 {a} 号从 {S1} 转到 {S2}：不送冷藏商品：门店终端离线" in out
    assert waves.wave_of_order(db.conn, a)["store"] == S1  # plan changed nothing
