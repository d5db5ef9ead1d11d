"""The retail service on a real SQLite store with no network, as the retail core tests drive
it: `Env` holds the store, a fake smart fridge that accepts every command, a pickup key and a
clock the test moves; answers read as the English page shows them (`en`)."""

from __future__ import annotations

import json
import threading
from datetime import date
from pathlib import Path
from typing import Any

from edge.config import PickupSettings, RetailSettings
from edge.retail.service import Retail
from edge.store import EdgeStore, NewEvent
from edge.wallclock import WallClock
from edge.words import localize
from xiaodian.i18n import translator
from xiaodian.wire.pickup import PickupCodec
from xiaodian.wire.retail import Catalogue, CatalogueItem, Location, Order, OrderLine

STORE = "store-001"
KEY = bytes(range(32))
T0 = 1_780_000_000.0  # 2026-05-28
MILK = "06901234567892"
EGGS = "06901234567809"
BREAD = "06901234567816"


def seed_milk_received(seed: Retail, expiry: str) -> None:
    """The shop as two counter tests start it: milk (fridge-1, lane 0) and bread in the
    catalogue, three milk of lot B1 received with `expiry` (YYMMDD); left in receive mode."""
    seed.downlink(Catalogue(STORE, 1, (
        CatalogueItem(MILK, "Milk 1L", "piece", 7, "chilled", Location("fridge-1", 0, 250)),
        CatalogueItem(BREAD, "Bread", "piece", 3, "ambient"))))
    seed.handle("mode", {"mode": "receive"})
    for _ in range(3):
        assert seed.handle("scan", {"code": f"]C101{MILK}17{expiry}10B1"})["ok"]


class FakeCommand:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.done.set()
        self.outcome = "ok"
        self.executed = True


class FakeFridge:
    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes]] = []

    def send_command(self, msg_type: int, payload: bytes) -> FakeCommand:
        self.sent.append((msg_type, payload))
        return FakeCommand()


def en(value: Any) -> Any:
    """What the page shows an English reader (the verdicts hold Messages until shown)."""
    return localize(value, translator("en"), "Asia/Shanghai")


class EnglishRetail(Retail):
    """The service, its answers read as the English page shows them."""

    def handle(self, action: str, body: Any) -> dict[str, Any]:
        return dict(en(super().handle(action, body)))


class Env:
    def __init__(self, tmp_path: Path, pickup: bool = True) -> None:
        self.t = [T0]
        key_file = tmp_path / "pickup.key"
        key_file.write_text(KEY.hex())
        key_file.chmod(0o600)
        self.store = EdgeStore(tmp_path / "edge.sqlite3")
        self.fridge = FakeFridge()
        self.retail = EnglishRetail(
            self.store, STORE, WallClock(now=lambda: self.t[0], synced=lambda: True),
            PickupSettings(key_file) if pickup else None, RetailSettings(2),
            {"fridge-1": self.fridge},  # type: ignore[dict-item]
            today=lambda wall: date(2026, 5, 28))
        self.codec = PickupCodec(STORE, KEY)
        self.retail.downlink(Catalogue(STORE, 3, (
            CatalogueItem(MILK, "Milk 1L", "piece", 7, "chilled", Location("fridge-1", 0, 250)),
            CatalogueItem(BREAD, "Bread", "piece", 3, "ambient"))))

    def events(self, type_: str) -> list[dict[str, Any]]:
        return [json.loads(d) for (d,) in self.store.db.execute(
            "SELECT data FROM events WHERE type=? ORDER BY device, boot, seq", (type_,))]

    def order(self, oid: int, mode: str = "pickup") -> None:
        self.retail.downlink(Order(oid, STORE, mode, "Wang L.", T0, T0 + 3600,
                                   (OrderLine(MILK, 2), OrderLine(BREAD, 1))))

    def fridge_event(self, type_: str, data: dict[str, Any]) -> None:
        self.retail.on_records([NewEvent("fridge-1", type_, None, None, self.t[0], True, data)])
