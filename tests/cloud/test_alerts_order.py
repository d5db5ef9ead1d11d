"""Notices go out in the order the alerts were raised (raise time, then id), across fridges
and stores, whatever order their events reached the cloud in."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from webhook_receiver import SECRET, Receiver

from cloud_gateway.alerts import store
from cloud_gateway.alerts.model import parse_change
from cloud_gateway.alerts.notifier import AlertService
from cloud_gateway.alerts.policy import EscalationPolicy
from cloud_gateway.alerts.settings import AlertSettings, Contact, StoreAlerts
from cloud_gateway.db import Database
from cloud_gateway.ingest import ingest
from xiaodian.wire.payloads import batch_payload

T0 = 1_750_000_000.0


def change(fridge: str, at: float, rule: str = "hot") -> dict[str, Any]:
    return {"change": "raised", "id": f"{fridge}/{rule}/{round(at * 1000)}", "fridge": fridge,
            "rule": rule, "severity": "critical", "audience": "owner", "started_at": at,
            "at": at, "peak_c": 9.0, "message": "product 9.0 °C", "late": False, "data": {}}


# Arrival order is not raise order: fridge-2's alert arrives first, store-000's next (a
# store that sorts first), fridge-1's last (its link was down: a backfilled, older alert).
# Two alerts raised at the same moment are told in id order.
ARRIVALS = [
    ("store-001", change("fridge-2", T0 + 300)),
    ("store-000", change("fridge-9", T0 + 200)),
    ("store-001", change("fridge-1", T0 + 100, "warm")),
    ("store-001", change("fridge-1", T0 + 100, "hot")),
]
RAISE_ORDER = [
    "fridge-1/hot/1750000100000",
    "fridge-1/warm/1750000100000",
    "fridge-9/hot/1750000200000",
    "fridge-2/hot/1750000300000",
]


def test_escalate_plans_notices_in_raise_order(db_target: Path | str) -> None:
    with Database.open(db_target) as db:
        for st, ch in ARRIVALS:
            with db.transaction() as conn:
                store.apply_changes(conn, [parse_change(st, ch)], T0 + 400)
        with db.transaction() as conn:
            planned = store.escalate(conn, T0 + 400, lambda _s: EscalationPolicy())
    assert [(row["id"], n.kind) for row, n in planned] == [(i, "alert") for i in RAISE_ORDER]


def test_webhooks_reach_the_owner_in_raise_order(
        db_target: Path | str, receiver: Callable[..., Receiver]) -> None:
    rx = receiver()
    stores = tuple(
        StoreAlerts(s, (Contact(name="wang", webhook_url=rx.url,
                                webhook_secret_file=Path("/unused")),))
        for s in ("store-000", "store-001"))
    settings = AlertSettings(link_secret_file=Path("/unused"), stores=stores)
    svc = AlertService(settings, db_target, "w-1", link_secret=b"l" * 40,
                       webhook_secrets={f"{s.store}/wang": SECRET for s in stores},
                       public_url="http://127.0.0.1:1/", now=lambda: T0 + 400)
    with Database.open(db_target) as db:
        for seq, (st, ch) in enumerate(ARRIVALS, 1):
            record = {"seq": seq, "type": "alert", "fseq": None, "dev_ms": None,
                      "wall": ch["at"], "synced": True, "data": ch}
            payload = batch_payload("events", st, ch["fridge"], 1, [record])
            ingest(db, f"xd/v1/{st}/events", payload, "w-1", T0 + 400)
        assert svc.tick(db, T0 + 400) == len(ARRIVALS)  # one tick: all four in one go
        svc.start()
        try:
            # A bound for a hung test, not a timing assertion.
            assert [n["alert"]["id"] for n in rx.wait(len(ARRIVALS), 30.0)] == RAISE_ORDER
        finally:
            svc.stop()
    assert rx.bad_signatures == 0
