"""A store's receipt of its manifest, through the real ingest path on SQLite and PostgreSQL:
the shortage hits the pre-orders placed last, each hit line is recorded short, refunded at
the resident's price, and the resident told; exactly once across redelivery; bad receipts
parked with their reason."""

from __future__ import annotations

import pytest
from receiving_world import SHOP_MILK_FEN, WAVE, db, dispatched, receipt, send

from cloud_gateway import resident_notices
from cloud_gateway.db import Database
from cloud_gateway.supply import receiving, waves
from devstack.testkit.supply_world import EGGS, MILK, S1, S2, ZONE
from xiaodian.i18n import translator

__all__ = ["db"]  # the fixture, from receiving_world

def count(db: Database, table: str) -> int:
    return int(db.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def test_the_allocation_takes_the_shelf_first_then_the_last_placed() -> None:
    served = [receiving.Served(1, 2), receiving.Served(2, 1), receiving.Served(3, 1)]
    assert receiving.allocate(6, served, 2) == []  # the shelf's 2 pieces
    assert receiving.allocate(6, served, 3) == [(3, 1)]
    assert receiving.allocate(6, served, 5) == [(1, 1), (2, 1), (3, 1)]
    assert receiving.allocate(4, served, 9) == [(1, 2), (2, 1), (3, 1)]  # never beyond a bag


def test_a_short_line_hits_the_last_pre_orders_refunds_and_tells_once(db: Database) -> None:
    w = dispatched(db)
    m1 = w["m"][S1]
    milk = next(ln for ln in m1.lines if ln.item == MILK)
    shelf = milk.qty - sum(s.qty for s in milk.serves)
    assert [s.order for s in milk.serves] == [w["a"], w["b"], w["c"]]
    # The shelf's pieces and two more are missing: one short, the rest damaged.
    data = receipt(m1, {MILK: [("short", 1), ("damaged", shelf + 1)]})
    out = send(db, S1, 1, data)
    assert out.action == "stored" and out.inserted == 1
    got = {(s["item"], s["qty"], s["price_fen"]) for s in
           receiving.order_shortages(db.conn, w["c"])}
    assert got == {(MILK, 1, SHOP_MILK_FEN)}
    assert receiving.order_shortages(db.conn, w["b"])[0]["qty"] == 1
    assert receiving.order_shortages(db.conn, w["a"]) == []  # first come, first served
    assert receiving.refunded_fen(db.conn, w["c"]) == SHOP_MILK_FEN
    refund = receiving.order_refunds(db.conn, w["b"])[0]
    assert (refund["amount_fen"], refund["provider"], refund["state"]) == (
        SHOP_MILK_FEN, "record", "recorded")
    kinds = {o: [n.kind for n in resident_notices.for_order(db.conn, w[o])] for o in "abc"}
    assert kinds == {"a": ["arrived"], "b": ["short", "refund"], "c": ["short", "refund"]}
    zh = translator("zh_CN")
    short_b, refund_b = resident_notices.for_order(db.conn, w["b"])
    assert "鲜牛奶" in short_b.text(zh) and "1" in short_b.text(zh)
    assert "¥12.90" in refund_b.text(zh) and "退款" in refund_b.text(zh)
    arrived = resident_notices.for_order(db.conn, w["a"])[0]
    assert "请于 08:00 至 21:00 取货" in arrived.text(zh), arrived.text(zh)
    assert "has arrived" in arrived.text(translator("en"))
    # Delivery: a resident's notices wait to be sent; an order nobody owns has none to send.
    assert short_b.state == "pending"
    assert {n.state for n in resident_notices.for_order(db.conn, w["c"])} == {"unsent"}
    rid = db.conn.execute("SELECT resident FROM resident_orders WHERE order_id = ?",
                          (w["b"],)).fetchone()[0]
    assert [n.kind for n in resident_notices.for_resident(db.conn, rid)] == ["refund", "short"]

    before = {t: count(db, t) for t in ("preorder_shortages", "refunds", "resident_notices",
                                        "receipt_lines", "manifest_receipts")}
    # The broker redelivers the batch; the store re-sends the receipt as a new event.
    assert send(db, S1, 1, data).duplicates == 1
    assert send(db, S1, 2, data).inserted == 1
    assert {t: count(db, t) for t in before} == before
    assert count(db, "dead_letters") == 0
    # A different receipt for the same manifest is refused, and changes nothing.
    send(db, S1, 3, receipt(m1, {MILK: [("short", 1)]}))
    reason = db.conn.execute("SELECT reason FROM dead_letters").fetchone()[0]
    assert "received already" in reason and "receipt event ledger/1/3" in reason
    assert {t: count(db, t) for t in before} == before
    assert waves.get_cycle(db.conn, ZONE, WAVE)["state"] == "dispatched"  # S2 still out
    # S2 gets everything: its resident is told the eggs arrived, and the wave is delivered.
    send(db, S2, 1, receipt(w["m"][S2]))
    assert [n.kind for n in resident_notices.for_order(db.conn, w["e"])] == ["arrived"]
    assert waves.get_cycle(db.conn, ZONE, WAVE)["state"] == "delivered"
    view = receiving.wave_receiving(db.conn, ZONE, WAVE)
    assert view[S2]["lines"] == [] and view[S2]["refunds"] == []
    (line,) = view[S1]["lines"]
    assert (line["item"], line["shortfall"]) == (MILK, shelf + 2)
    assert {d["issue"] for d in line["differences"]} == {"short", "damaged"}
    assert sorted(r["order"] for r in view[S1]["refunds"]) == [w["b"], w["c"]]


def test_an_over_delivery_nets_the_shortage(db: Database) -> None:
    w = dispatched(db)
    m1 = w["m"][S1]
    milk = next(ln for ln in m1.lines if ln.item == MILK)
    shelf = milk.qty - sum(s.qty for s in milk.serves)
    with db.transaction() as conn:  # a was handed over before the clerk signed off
        conn.execute("UPDATE orders SET state = 'picked_up' WHERE id = ?", (w["a"],))
    # shelf + 2 damaged but 1 extra came: one pre-order piece short.
    send(db, S1, 1, receipt(m1, {MILK: [("damaged", shelf + 2), ("over", 1)]}))
    assert count(db, "preorder_shortages") == 1
    assert receiving.order_shortages(db.conn, w["c"])[0]["qty"] == 1
    assert [n.kind for n in resident_notices.for_order(db.conn, w["a"])] == []  # not told
    assert [n.kind for n in resident_notices.for_order(db.conn, w["b"])] == ["arrived"]


@pytest.mark.parametrize("case, reason", [
    ("unknown", "no manifest 999"),
    ("other_store", "is not store-002's"),
    ("wrong_wave", "of the wave 2026-12-07"),
    ("wrong_expected", "but manifest"),
])
def test_a_receipt_that_does_not_fit_a_manifest_is_parked(db: Database, case: str,
                                                          reason: str) -> None:
    w = dispatched(db)
    m1 = w["m"][S1]
    data = receipt(m1)
    store = S1
    if case == "unknown":
        data["manifest"] = 999
    elif case == "other_store":
        store = S2
    elif case == "wrong_wave":
        data["wave"] = "2026-12-06"
    else:
        data["lines"][0]["expected"] += 1
        data["lines"][0]["accepted"] += 1
    out = send(db, store, 1, data)
    assert out.inserted == 1  # the event is kept, only its meaning is parked
    (got,) = [r[0] for r in db.conn.execute("SELECT reason FROM dead_letters")]
    assert reason in got
    assert count(db, "manifest_receipts") == 0 and count(db, "resident_notices") == 0


def test_the_cutoff_tells_residents_of_moved_cancelled_and_dropped_lines(
        db: Database) -> None:
    from receiving_world import AFTER, BEFORE, place

    from cloud_gateway.supply import cutoff
    from devstack.testkit.supply_world import DURIAN, RICE

    moved = place(db, S1, "王芳", BEFORE, (MILK, 2), resident="13800000001")
    durian = place(db, S2, "李雷", BEFORE, (DURIAN, 1), (RICE, 1))  # under its minimum of 3
    with db.transaction() as conn:
        conn.execute("UPDATE store_state SET online = FALSE WHERE store = ?", (S1,))
    for _ in range(2):  # the cutoff run twice tells once
        with db.transaction() as conn:
            cutoff.cutoff(conn, ZONE, WAVE, AFTER, "operator")
    zh = translator("zh_CN")
    (n,) = resident_notices.for_order(db.conn, moved)
    assert n.kind == "moved" and S2 in n.text(zh) and "离线" in n.text(zh), n.text(zh)
    (d,) = resident_notices.for_order(db.conn, durian)
    assert d.kind == "line_cancelled" and "榴莲" in d.text(zh) and "3" in d.text(zh)
    with db.transaction() as conn:  # no store of the zone can take chilled goods now
        conn.execute("UPDATE store_state SET online = FALSE")
    later = WAVE.replace(day=8)
    gone = place(db, S2, "韩梅", AFTER + 60, (MILK, 1))
    with db.transaction() as conn:
        cutoff.cutoff(conn, ZONE, later, AFTER + 86400, "operator")
    (c,) = resident_notices.for_order(db.conn, gone)
    assert c.kind == "cancelled" and "不收费" in c.text(zh), c.text(zh)


def test_a_line_the_stores_stock_covers_in_full_is_received_as_0_of_0(db: Database) -> None:
    """S2's shelf covers e's eggs: its manifest line brings 0 pieces; the receipt's 0 of 0
    is no shortage, e is told its goods are at the store, and the wave is delivered."""
    with db.transaction() as conn:
        conn.execute("INSERT INTO stock (store, item, batch, expiry, on_hand, grams,"
                     " movements, updated_at) VALUES (?, ?, 'B1', '2026-12-31', 12, 0, 1, 0)",
                     (S2, EGGS))
    w = dispatched(db)
    (eggs,) = [ln for ln in w["m"][S2].lines if ln.item == EGGS]
    assert (eggs.qty, eggs.lots, [(s.order, s.qty, s.from_stock) for s in eggs.serves]) == (
        0, (), [(w["e"], 0, 6)])
    send(db, S2, 1, receipt(w["m"][S2]))
    send(db, S1, 1, receipt(w["m"][S1]))
    assert count(db, "dead_letters") == 0 and count(db, "preorder_shortages") == 0
    assert [tuple(r) for r in db.conn.execute(
        "SELECT expected, accepted, shortfall FROM receipt_lines WHERE item = ?", (EGGS,))
    ] == [(0, 0, 0)]
    assert [n.kind for n in resident_notices.for_order(db.conn, w["e"])] == ["arrived"]
    assert waves.get_cycle(db.conn, ZONE, WAVE)["state"] == "delivered"  # type: ignore[index]
