"""Notices go out in the order the alerts were raised (raise time, then id), across fridges
and stores, whatever order their events reached the cloud in."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cloud_gateway.alerts import channels, store
from cloud_gateway.alerts.model import parse_change
from cloud_gateway.alerts.notifier import AlertService
from cloud_gateway.alerts.policy import EscalationPolicy
from cloud_gateway.alerts.settings import AlertSettings, Contact, StoreAlerts
from cloud_gateway.db import Database
from cloud_gateway.ingest import ingest
from xiaodian.wire.payloads import batch_payload

T0 = 1_750_000_000.0
SECRET = b"s" * 40


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


class Receiver:
    """A loopback webhook endpoint that keeps the alert ids in the order they arrived."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.cond = threading.Condition()
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                assert channels.verify(SECRET, body, self.headers[channels.SIGNATURE_HEADER])
                with outer.cond:
                    outer.ids.append(json.loads(body)["alert"]["id"])
                    outer.cond.notify_all()
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def wait(self, n: int) -> list[str]:
        with self.cond:  # a bound for a hung test, not a timing assertion
            assert self.cond.wait_for(lambda: len(self.ids) >= n, 30.0), self.ids
            return list(self.ids)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver()
    yield rx
    rx.server.shutdown()
    rx.server.server_close()


def test_webhooks_reach_the_owner_in_raise_order(db_target: Path | str,
                                                 receiver: Receiver) -> None:
    stores = tuple(
        StoreAlerts(s, (Contact(name="wang", webhook_url=receiver.url,
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
            assert receiver.wait(len(ARRIVALS)) == RAISE_ORDER
        finally:
            svc.stop()
