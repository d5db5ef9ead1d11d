"""Residents told about orders from the shelf (not riding a wave): ready for pickup when
the store holds the goods, on its way for a delivery, a reminder before the pickup ends;
each once, whatever is redelivered or re-run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import resident_world as rw

from cloud_gateway import resident_notices, shop, stores
from cloud_gateway.db import Database
from cloud_gateway.ingest import ingest
from xiaodian.i18n import translator
from xiaodian.wire import retail as contract
from xiaodian.wire.payloads import batch_payload, event_record

STORE = "store-002"


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> rw.World:
    target = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    return rw.build(tmp_path, db_target=target)


def order(db: Database, world: rw.World, mode: str, resident: int = 7) -> int:
    with db.transaction() as conn:
        start = shop.windows(stores.get(conn, STORE), world.clock()).pop(0).start
        placed = shop.place(conn, shop.Request(
            STORE, resident, "****0007", shop.Cart(((rw.BREAD, 1),)), mode, start,
            address="黄浦区人民路1号" if mode == "delivery" else "", here=rw.north(800)),
            world.clock(), shop.NoWaves(), shop.PayAtPickup())
    return placed.order.id


def progress(db: Database, seq: int, oid: int, state: str, at: float) -> None:
    data: Any = contract.progress_data(contract.OrderProgress(oid, state))  # type: ignore[arg-type]
    ingest(db, f"xd/v1/{STORE}/events", batch_payload(
        "events", STORE, "orders", 1, [event_record(seq, "order", None, None, at, True, data)]),
        "w-1", at)


def kinds(db: Database, oid: int) -> list[str]:
    return [n.kind for n in resident_notices.for_order(db.conn, oid)]


def test_a_pickup_order_is_ready_once_and_reminded_once_before_it_ends(
        world: rw.World) -> None:
    with Database.open(world.db_path) as db:
        oid = order(db, world, "pickup")
        assert kinds(db, oid) == []
        progress(db, 1, oid, "received", rw.NOW + 5)
        progress(db, 1, oid, "received", rw.NOW + 6)  # the same event redelivered
        assert kinds(db, oid) == ["ready"]
        (ready,) = resident_notices.for_order(db.conn, oid)
        text = ready.text(translator("zh_CN"))
        assert "人民路店" in text and f"{oid}" in text, text
        expires = db.conn.execute("SELECT expires FROM orders WHERE id = ?",
                                  (oid,)).fetchone()[0]
        with db.transaction() as conn:  # long before the end: nothing
            assert resident_notices.remind(conn, expires - 7200, 3600) == 0
        for _ in range(2):  # inside the last hour: once, however often the job runs
            with db.transaction() as conn:
                resident_notices.remind(conn, expires - 1800, 3600)
        assert kinds(db, oid) == ["ready", "reminder"]
        progress(db, 2, oid, "picked_up", rw.NOW + 60)
        with db.transaction() as conn:
            assert resident_notices.remind(conn, expires - 60, 3600) == 0


def test_a_delivery_is_told_on_its_way_not_ready(world: rw.World) -> None:
    with Database.open(world.db_path) as db:
        oid = order(db, world, "delivery")
        progress(db, 1, oid, "received", rw.NOW + 5)
        progress(db, 2, oid, "packed", rw.NOW + 10)
        progress(db, 3, oid, "out_for_delivery", rw.NOW + 20)
        assert kinds(db, oid) == ["on_its_way"]
        (n,) = resident_notices.for_order(db.conn, oid)
        assert "on its way" in n.text(translator("en"))


def test_an_order_without_a_resident_tells_nobody(world: rw.World) -> None:
    with Database.open(world.db_path) as db:
        oid = order(db, world, "pickup")
        with db.transaction() as conn:
            conn.execute("DELETE FROM resident_orders WHERE order_id = ?", (oid,))
        progress(db, 1, oid, "received", rw.NOW + 5)
        assert kinds(db, oid) == []
