"""`xiaodian edge status` (a real process, read-only on the agent's file) shows retail:
orders waiting, deliveries by state, expiring lots, last lane mismatches, pickup refusals in
the last hour, the catalogue version and a handover under way."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from edge.config import PickupSettings, RetailSettings
from edge.retail.service import Retail, local_date
from edge.retail.status import retail_status
from edge.store import EdgeStore, NewEvent
from edge.wallclock import WallClock
from xiaodian.wire.pickup import PickupCodec
from xiaodian.wire.retail import Catalogue, CatalogueItem, Location, Order, OrderLine

STORE = "store-001"
KEY = bytes(range(7, 39))
MILK = "06901234567892"
BREAD = "06901234567816"


class FakeCommand:
    def __init__(self) -> None:
        import threading

        self.done = threading.Event()
        self.done.set()
        self.outcome, self.executed = "ok", True


class FakeFridge:
    def send_command(self, msg_type: int, payload: bytes) -> FakeCommand:
        return FakeCommand()


def edge_status(config: Path) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "xiaodian", "edge", "status", "--config",
                           str(config), "--json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def test_edge_status_shows_retail(tmp_path: Path) -> None:
    key = tmp_path / "pickup.key"
    key.write_text(KEY.hex())
    key.chmod(0o600)
    config = tmp_path / "edge.toml"
    config.write_text(
        f'[edge]\nstore_id = "{STORE}"\ndata_dir = "edge"\n'
        '[mqtt]\nhost = "127.0.0.1"\nport = 8883\n'
        '[mqtt.tls]\nca = "ca.crt"\ncert = "c.crt"\nkey = "c.key"\n'
        '[retail]\nexpiry_window_days = 3\n')
    (tmp_path / "edge").mkdir()
    # Before any retail: the section says so rather than failing.
    EdgeStore(tmp_path / "edge" / "edge.sqlite3").close()
    assert edge_status(config)["retail"] is None

    store = EdgeStore(tmp_path / "edge" / "edge.sqlite3")
    r = Retail(store, STORE, WallClock(), PickupSettings(key), RetailSettings(3),
               {"fridge-1": FakeFridge()})  # type: ignore[dict-item]
    now = time.time()
    r.downlink(Catalogue(STORE, 4, (
        CatalogueItem(MILK, "Milk 1L", "piece", 7, "chilled", Location("fridge-1", 0, 250)),
        CatalogueItem(BREAD, "Bread", "piece", 3, "ambient"))))
    for oid, mode in ((80, "pickup"), (81, "pickup"), (90, "delivery"), (91, "delivery")):
        r.downlink(Order(oid, STORE, mode, f"customer {oid}", now, now + 3600,
                         (OrderLine(BREAD, 1),)))
    assert r.handle("delivery", {"order": 90})["ok"]  # packed
    r.handle("mode", {"mode": "receive"})
    soon = (local_date(now) + timedelta(days=1)).strftime("%y%m%d")
    later = (local_date(now) + timedelta(days=10)).strftime("%y%m%d")
    for line in (f"]C101{MILK}17{soon}10B1", f"]C101{MILK}17{soon}10B1",
                 f"]C101{MILK}17{later}10B2"):
        assert r.handle("scan", {"code": line})["ok"]
    codec = PickupCodec(STORE, KEY)
    forged = PickupCodec(STORE, bytes(32)).issue(80, now + 3600)
    assert r.handle("scan", {"code": forged})["reason"] == "bad_mac"
    assert r.handle("scan", {"code": "PK1:XXXX"})["ok"] is False
    for grams in (1000, 500):  # two milk gone without a sale
        r.on_records([NewEvent("fridge-1", "lanes", None, None, now, True,
                               {"lanes": [{"lane": 0, "grams": grams, "stable": True}]})])
    assert r.handle("scan", {"code": codec.issue(81, now + 3600)})["ok"]
    r.tick()  # the handover is saved
    # The agent still has the file open (WAL): status reads beside it.
    out = edge_status(config)
    store.close()

    s = out["retail"]
    assert s["catalogue_version"] == 4
    assert [o["order"] for o in s["orders_waiting"]] == [80, 81]
    assert s["deliveries"] == {"packed": 1, "received": 1}
    assert s["expiring"] == {"window_days": 3, "lots": [
        {"item": MILK, "batch": "B1", "qty": 2,
         "expiry": (local_date(now) + timedelta(days=1)).isoformat()}]}
    [m] = s["lane_mismatches"]
    assert m["fridge"] == "fridge-1" and m["lane"] == 0 and "2 gone without a sale" in m["note"]
    refused = s["pickup_refusals_last_hour"]
    assert refused["total"] == 2 and refused["by_reason"]["bad_mac"] == 1
    assert s["handover"] == {"order": 81, "fridges": {}}  # bread is on a shelf
    assert "counts" in out and "devices" in out  # what the command showed before


def test_refusals_older_than_an_hour_are_not_counted(tmp_path: Path) -> None:
    t = [1_800_000_000.0]
    store = EdgeStore(tmp_path / "edge.sqlite3")
    r = Retail(store, STORE, WallClock(now=lambda: t[0], synced=lambda: True), None,
               RetailSettings(2), {}, today=lambda wall: date(2027, 1, 15))
    r.handle("scan", {"code": "PK1:AAAA"})  # no key: refused
    t[0] += 3000
    r.handle("scan", {"code": "PK1:AAAA"})
    s = retail_status(store.db, t[0] + 1000, date(2027, 1, 15), 2)
    assert s is not None and s["pickup_refusals_last_hour"] == {
        "total": 1, "by_reason": {"no_key": 1}}
    assert s["catalogue_version"] is None and s["orders_waiting"] == []
    store.close()
