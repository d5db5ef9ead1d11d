"""A dispatched wave for the receiving tests: pre-orders at two stores (some with a
resident), cut off, picked and dispatched through the real code, and the receipt a clerk
signs, sent through the real ingest path."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from cloud_gateway import retail, shop
from cloud_gateway.db import Database
from cloud_gateway.ingest import ingest
from cloud_gateway.supply import cutoff, dispatch, waves
from devstack.testkit.supply_world import EGGS, MILK, RICE, S1, S2, ZONE, seed
from xiaodian.wire import retail as contract
from xiaodian.wire.payloads import batch_payload, event_record

WAVE = date(2026, 12, 7)
BEFORE = datetime(2026, 12, 7, 10, 0, tzinfo=UTC).timestamp()  # 18:00 in Shanghai
AFTER = datetime(2026, 12, 7, 15, 5, tzinfo=UTC).timestamp()
ARRIVAL = datetime(2026, 12, 7, 23, 30, tzinfo=UTC).timestamp()  # 07:30 on the 8th
SHOP_MILK_FEN = 1290  # the resident's price at S1, not the depot's 800


@pytest.fixture
def db(db_target: Path | str) -> Iterator[Database]:
    with Database.open(db_target) as d, d.transaction() as conn:
        seed(conn, BEFORE)
        shop.set_price(conn, S1, MILK, SHOP_MILK_FEN, BEFORE)
    with Database.open(db_target) as d:
        yield d


def place(db: Database, store: str, customer: str, at: float, *lines: tuple[str, int],
          resident: str | None = None) -> int:
    req = retail.OrderRequest(tuple(contract.OrderLine(i, q) for i, q in lines), "pickup",
                              customer, 3600)
    with db.transaction() as conn:
        order, _ = waves.place_preorder(conn, store, req, at, "resident")
        if resident is not None:  # what the resident app writes beside its order
            conn.execute("INSERT INTO residents (phone, created_at) VALUES (?, ?)",
                         (resident, at))
            rid = conn.execute("SELECT id FROM residents WHERE phone = ?",
                               (resident,)).fetchone()[0]
            conn.execute("INSERT INTO resident_orders (order_id, resident, store, mode,"
                         " window_start, window_end, address, amount_fen, payment, created_at)"
                         " VALUES (?, ?, ?, 'pickup', 0, 0, '', 0, '{}', ?)",
                         (order.id, rid, store, at))
    return order.id


def dispatched(db: Database) -> dict[str, Any]:
    """Three pre-orders of milk at S1 (a first, then b, c), eggs at S2; the wave sent."""
    a = place(db, S1, "王芳", BEFORE, (MILK, 2), (RICE, 1), resident="13800000001")
    b = place(db, S1, "李雷", BEFORE + 60, (MILK, 1), resident="13800000002")
    c = place(db, S1, "韩梅", BEFORE + 120, (MILK, 1))
    e = place(db, S2, "赵敏", BEFORE, (EGGS, 6), resident="13800000003")
    with db.transaction() as conn:
        cutoff.cutoff(conn, ZONE, WAVE, AFTER, "operator")
        waves.advance(conn, ZONE, WAVE, "picked", AFTER)
        dispatch.dispatch(conn, ZONE, WAVE, AFTER)
    ms = {}
    for store, payload in db.conn.execute("SELECT store, payload FROM manifests"):
        m = contract.parse_downlink(f"xd/v1/{store}/orders", bytes(payload))
        assert isinstance(m, contract.Manifest)
        ms[store] = m
    return {"a": a, "b": b, "c": c, "e": e, "m": ms}


def receipt(m: contract.Manifest, short: dict[str, list[tuple[str, int]]] | None = None,
            **over: Any) -> dict[str, Any]:
    """The receipt a clerk signs for `m`, with `short` {item: [(issue, qty)]}."""
    short = short or {}
    lines, diffs = [], []
    for ln in m.lines:
        missing = sum(-q if i == "over" else q for i, q in short.get(ln.item, []))
        lines.append(contract.ReceiptLine(ln.item, ln.qty, ln.qty - missing))
        diffs += [contract.ReceiptDifference(ln.item, i, q) for i, q in short.get(ln.item, [])]
    r = contract.Receipt(m.id, m.wave, tuple(lines), tuple(diffs), "clerk-li", ARRIVAL)
    return contract.receipt_data(r) | over


def send(db: Database, store: str, seq: int, data: dict[str, Any], boot: int = 1) -> Any:
    payload = batch_payload("events", store, "ledger", boot,
                            [event_record(seq, "receipt", None, None, ARRIVAL, True, data)])
    return ingest(db, f"xd/v1/{store}/events", payload, "w-1", ARRIVAL + 5)
