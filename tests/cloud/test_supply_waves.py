"""Order cycles in the real database (SQLite and PostgreSQL): pre-orders on a wave, early
closing at capacity, the cutoff's plan stored once, pre-sale minimums, fridges that
cannot take chilled goods."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from cloud_gateway import retail
from cloud_gateway.db import Database
from cloud_gateway.retail_tables import Refusal, RetailError
from cloud_gateway.supply import cutoff, settings, waves
from cloud_gateway.supply.model import SupplyError
from devstack.testkit.supply_world import DURIAN, EGGS, MILK, RICE, S1, S2, seed
from xiaodian.wire import retail as contract

WAVE = date(2026, 12, 7)
BEFORE = datetime(2026, 12, 7, 10, 0, tzinfo=UTC).timestamp()  # 18:00 in Shanghai
AFTER = datetime(2026, 12, 7, 15, 5, tzinfo=UTC).timestamp()  # 23:05: past the cutoff


@pytest.fixture
def db(db_target: Path | str) -> Iterator[Database]:
    with Database.open(db_target) as d, d.transaction() as conn:
        seed(conn, BEFORE)
    with Database.open(db_target) as d:
        yield d


def req(customer: str, *lines: tuple[str, int]) -> retail.OrderRequest:
    return retail.OrderRequest(tuple(contract.OrderLine(i, q) for i, q in lines), "pickup",
                               customer, 3600)


def place(db: Database, store: str, customer: str, *lines: tuple[str, int],
          now: float = BEFORE) -> int:
    with db.transaction() as conn:
        order, _ = waves.place_preorder(conn, store, req(customer, *lines), now, "resident")
    return order.id


def refusal(db: Database, store: str, *lines: tuple[str, int],
            now: float = BEFORE) -> RetailError:
    with pytest.raises(RetailError) as exc, db.transaction() as conn:
        waves.place_preorder(conn, store, req("X", *lines), now, "resident")
    return exc.value


def test_a_pre_order_rides_the_wave_of_its_local_cutoff(db: Database) -> None:
    early = place(db, S1, "王", (MILK, 2))
    late = place(db, S2, "李", (MILK, 1), now=AFTER)
    assert waves.wave_of_order(db.conn, early)["wave"] == "2026-12-07"
    assert waves.wave_of_order(db.conn, late)["wave"] == "2026-12-08"
    got = retail.get_order(db.conn, S1, early)
    assert got is not None and got["state"] == "preorder"
    # Collected on the delivery day by 21:00 Shanghai time.
    assert got["expires"] == datetime(2026, 12, 8, 13, 0, tzinfo=UTC).timestamp()
    # A pre-order holds no stock: the goods come with the wave.
    assert retail.availability(db.conn, S1, BEFORE, [MILK])[MILK]["reserved"] == 0
    cyc = waves.get_cycle(db.conn, "north", WAVE)
    assert cyc is not None and cyc["state"] == "open" and cyc["delivery"] == "2026-12-08"


def test_a_store_closes_early_when_its_pickups_or_fridge_share_are_full(db: Database) -> None:
    # S1: 3 pickups a wave, a 20 L fridge of which pre-orders may take half (10 L).
    place(db, S1, "A", (MILK, 6))
    full = refusal(db, S1, (MILK, 2), (EGGS, 6))  # 6 + 2 + 3 = 11 L: over the share
    assert full.reason is Refusal.CONFLICT and full.detail["closed"] == "fridge_full"
    place(db, S1, "C", (MILK, 4))  # exactly 10 L fits
    place(db, S1, "D", (RICE, 2))  # ambient: no fridge volume, but a pickup
    busy = refusal(db, S1, (RICE, 1))
    assert busy.detail == {"closed": "pickup_full", "wave": "2026-12-07"}
    count = db.conn.execute("SELECT COUNT(*) FROM orders WHERE store = ?", (S1,)).fetchone()
    assert count[0] == 3  # the refused ones left nothing behind
    place(db, S2, "E", (MILK, 6))  # the other store of the zone still takes orders
    # The next wave starts empty.
    place(db, S1, "F", (MILK, 6), now=AFTER)


def test_the_cutoff_stores_the_plan_once_and_closes_the_wave(db: Database) -> None:
    place(db, S1, "王", (MILK, 2), (RICE, 1))
    place(db, S2, "李", (EGGS, 6))
    with db.transaction() as conn:  # S1 has 3 milk that expire before the delivery
        conn.execute("INSERT INTO stock (store, item, batch, expiry, on_hand, grams,"
                     " movements, updated_at) VALUES (?, ?, 'B1', '2026-12-07', 3, 0, 1, ?)",
                     (S1, MILK, BEFORE))
    with db.transaction() as conn:
        preview = cutoff.propose(conn, "north", WAVE)
    assert waves.get_cycle(db.conn, "north", WAVE)["state"] == "open"  # plan changes nothing
    with db.transaction() as conn:
        cyc, changed = cutoff.cutoff(conn, "north", WAVE, AFTER, "operator")
    assert changed and cyc["state"] == "planned" and cyc["planned_at"] == AFTER
    rows = cutoff.plan_rows(db.conn, "north", WAVE)
    lines = {(r["store"], r["item"]): r for r in rows}
    milk = lines[(S1, MILK)]
    assert milk["qty"] >= 2 and milk["why"]["preorders"] == 2
    assert milk["why"]["expiring_excluded"] == 3 and milk["why"]["netted_stock"] == 0
    assert milk["batch"] == "D20261208" and milk["expiry"] == "2026-12-12"  # 5 days' life
    assert lines[(S2, EGGS)]["qty"] == 6 and lines[(S2, EGGS)]["why"]["lot"] == 6
    assert {(ln.store, ln.item): ln.qty for ln in preview.plan.lines()} == {
        k: r["qty"] for k, r in lines.items()}
    # Twice: nothing changes.
    with db.transaction() as conn:
        again, changed = cutoff.cutoff(conn, "north", WAVE, AFTER + 60, "operator")
    assert not changed and again == cyc
    assert cutoff.plan_rows(db.conn, "north", WAVE) == rows


def test_an_operator_may_close_a_wave_before_its_cutoff(db: Database) -> None:
    place(db, S1, "王", (MILK, 1))
    with db.transaction() as conn:
        cutoff.cutoff(conn, "north", WAVE, BEFORE + 60, "operator")
    closed = refusal(db, S2, (MILK, 1), now=BEFORE + 120)
    assert closed.detail == {"closed": "cutoff_passed", "wave": "2026-12-07"}


def test_pre_sale_lines_under_the_minimum_are_cancelled_and_marked(db: Database) -> None:
    both = place(db, S1, "王", (MILK, 1), (DURIAN, 1))
    only = place(db, S2, "李", (DURIAN, 1))  # 2 durians in the zone; at least 3 needed
    with db.transaction() as conn:
        cutoff.cutoff(conn, "north", WAVE, AFTER, "operator")
    states = dict(db.conn.execute("SELECT item, line_state FROM order_lines WHERE"
                                  " order_id = ?", (both,)).fetchall())
    assert states == {MILK: "", DURIAN: "cancelled_below_minimum"}
    assert retail.get_order(db.conn, S1, both)["state"] == "preorder"
    gone = retail.get_order(db.conn, S2, only)
    assert gone["state"] == "cancelled"
    assert gone["history"][-1]["detail"]["reason"] == "cancelled_below_minimum"
    assert waves.wave_of_order(db.conn, only)["outcome"] == "cancelled"
    assert DURIAN not in {r["item"] for r in cutoff.plan_rows(db.conn, "north", WAVE)}


def test_a_pre_order_at_a_store_without_a_working_fridge_moves_or_is_refunded(
        db: Database) -> None:
    moved = place(db, S1, "王", (MILK, 2))
    dry = place(db, S1, "赵", (RICE, 1))  # ambient only: stays
    with db.transaction() as conn:
        conn.execute("UPDATE store_state SET online = FALSE WHERE store = ?", (S1,))
    with db.transaction() as conn:
        cutoff.cutoff(conn, "north", WAVE, AFTER, "operator")
    w = waves.wave_of_order(db.conn, moved)
    assert w["store"] == S2 and w["moved_from"] == S1 and w["reason"] == "fridge_offline"
    assert retail.get_order(db.conn, S2, moved)["state"] == "preorder"
    assert waves.wave_of_order(db.conn, dry)["store"] == S1
    rows = {(r["store"], r["item"]): r for r in cutoff.plan_rows(db.conn, "north", WAVE)}
    assert rows[(S2, MILK)]["why"]["preorders"] == 2
    assert rows[(S1, MILK)]["qty"] == 0 and rows[(S1, MILK)]["why"]["refused"] == \
        "fridge_offline"
    assert rows[(S1, RICE)]["qty"] >= 1


def test_with_no_working_fridge_in_the_zone_the_pre_order_is_refunded(db: Database) -> None:
    oid = place(db, S1, "王", (MILK, 2))
    with db.transaction() as conn:
        conn.execute("UPDATE store_state SET online = FALSE")
        conn.execute(
            "INSERT INTO alerts (store, id, fridge, rule, severity, audience, state,"
            " started_at, raised_at, last_at, last_change, message, data, late,"
            " received_at, updated_at) VALUES (?, 'a1', 'fridge-1', 'too_warm', 'critical',"
            " 'owner', 'active', ?, ?, ?, 'raised', '', '{}', FALSE, ?, ?)",
            (S2, BEFORE, BEFORE, BEFORE, BEFORE, BEFORE))
        conn.execute("UPDATE store_state SET online = TRUE WHERE store = ?", (S2,))
    with db.transaction() as conn:
        states = cutoff.fridge_states(conn, [S1, S2])
        cutoff.cutoff(conn, "north", WAVE, AFTER, "operator")
    assert {k: v.value for k, v in states.items()} == {S1: "offline", S2: "alarm"}
    w = waves.wave_of_order(db.conn, oid)
    assert w["outcome"] == "refunded" and w["reason"] == "fridge_offline"
    order = retail.get_order(db.conn, S1, oid)
    assert order["state"] == "cancelled"
    assert json.loads(json.dumps(order["history"][-1]["detail"]))["outcome"] == "refunded"


def test_sales_history_feeds_the_forecast(db: Database) -> None:
    with db.transaction() as conn:
        for k in range(21):  # four milk a day at S2, at noon local
            day = WAVE - timedelta(days=k)
            wall = datetime(day.year, day.month, day.day, 4, 0, tzinfo=UTC).timestamp()
            conn.execute("INSERT INTO movements (store, id, kind, item, qty, device, boot,"
                         " seq, wall, received_at) VALUES (?, ?, 'sale', ?, -4, 'ledger', 1,"
                         " ?, ?, ?)", (S2, f"m{k}", MILK, k + 1, wall, wall))
        p = cutoff.propose(conn, "north", WAVE)
    line = {(ln.store, ln.item): ln for ln in p.plan.lines()}[(S2, MILK)]
    assert line.why.forecast == pytest.approx(4.0, abs=0.5)
    assert line.qty >= 4 and (S1, MILK) not in {(ln.store, ln.item) for ln in p.plan.lines()}


def test_unknown_stores_items_and_delivery_orders_are_refused_clearly(db: Database) -> None:
    assert refusal(db, "store-009", (MILK, 1)).reason is Refusal.NOT_FOUND
    bad = refusal(db, S1, ("06901234567830", 1))
    assert bad.reason is Refusal.INVALID and bad.detail == {"not_in_catalogue":
                                                            ["06901234567830"]}
    with pytest.raises(RetailError, match="pickup"), db.transaction() as conn:
        waves.place_preorder(conn, S1, retail.OrderRequest(
            (contract.OrderLine(MILK, 1),), "delivery", "X", 3600), BEFORE, "resident")
    with pytest.raises(SupplyError, match="--zone"), db.transaction() as conn:
        settings.set_store(conn, "store-003", BEFORE, zone="north")


def test_a_resident_may_cancel_a_pre_order_until_the_cutoff_and_frees_its_place(
        db: Database) -> None:
    first = place(db, S1, "A", (MILK, 6))
    place(db, S1, "B", (MILK, 4))  # the fridge share (10 L) is full now
    assert refusal(db, S1, (MILK, 1)).detail["closed"] == "fridge_full"
    with db.transaction() as conn:
        got = retail.cancel_order(conn, S1, first, "changed my mind", BEFORE + 1, "resident")
    assert got["state"] == "cancelled" and got["wave"]["outcome"] == "cancelled"
    assert db.conn.execute("SELECT COUNT(*) FROM downlink WHERE kind = 'cancel'"
                           ).fetchone()[0] == 0  # the store never had it
    late = place(db, S1, "C", (MILK, 6))  # its place is free again
    with db.transaction() as conn:
        cutoff.cutoff(conn, "north", WAVE, AFTER, "operator")
    with pytest.raises(RetailError, match="too late") as exc, db.transaction() as conn:
        retail.cancel_order(conn, S1, late, "too late", AFTER + 1, "resident")
    assert exc.value.reason is Refusal.CONFLICT


def test_the_order_says_which_wave_it_rides_and_which_lines_were_cancelled(
        db: Database) -> None:
    oid = place(db, S1, "王", (MILK, 1), (DURIAN, 1))
    with db.transaction() as conn:
        cutoff.cutoff(conn, "north", WAVE, AFTER, "operator")
    got = retail.get_order(db.conn, S1, oid)
    assert got is not None
    assert got["wave"] == {"zone": "north", "wave": "2026-12-07", "store": S1,
                           "outcome": "held", "moved_from": None, "reason": None}
    assert got["cancelled_lines"] == [{"item": DURIAN, "reason": "cancelled_below_minimum"}]
    ordinary = retail.list_orders(db.conn, S1)[0]
    assert "wave" not in ordinary  # the list stays as it was; the order's page has it


def test_a_database_from_before_the_supply_tables_is_brought_up_to_date(
        tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with Database.open(path) as d, d.transaction() as conn:
        seed(conn, BEFORE)
        conn.execute("INSERT INTO order_lines (order_id, store, item, qty)"
                     " VALUES (999, ?, ?, 2)", (S1, MILK))
        conn.execute("ALTER TABLE order_lines DROP COLUMN line_state")  # as it was
    with Database.open(path) as d:
        rows = d.conn.execute("SELECT item, line_state FROM order_lines").fetchall()
        assert [tuple(r) for r in rows] == [(MILK, "")]
        place(d, S1, "王", (MILK, 1))  # and pre-orders work on it
