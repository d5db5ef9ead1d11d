"""The cutoff runs by itself: two `xiaodian cloud run` workers (real processes, the real
broker and terminal) tick every second; the zone's cutoff is set a minute ahead, and when
it passes the wave is cut off and planned exactly once, by one of them."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from supply_setup import north_zone

from devstack.stack import StoreStack
from devstack.testkit.cli import json_cli as cli
from devstack.testkit.edge import query
from devstack.testkit.wait import wait

MILK = "06901234567892"
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def stack(store_stack: Callable[..., StoreStack]) -> StoreStack:
    return store_stack(speed=60, retail=True, cloud_workers=2,
                       cloud_alerts_toml="[supply]\ntick_interval_s = 1\n")


def test_two_workers_cut_the_wave_off_once_when_its_cutoff_passes(stack: StoreStack) -> None:
    assert stack.seed_retail()["problems"] == []
    db = north_zone(stack, {MILK: "鲜牛奶"})
    # The cutoff at the next whole minute at least 25 s away (its own local time).
    now = datetime.now(SHANGHAI)
    at = (now + timedelta(seconds=85)).replace(second=0, microsecond=0)
    cli("supply", "zone", "set", "north", "--cutoff", f"{at:%H:%M}", *db)
    placed = cli("supply", "preorder", "store-001", "--item", f"{MILK}:3", "--customer",
                 "王芳", *db)
    wave = placed["wave"]
    assert wave == at.date().isoformat()

    def state() -> str | None:
        rows = query(stack.cloud_db, "SELECT state FROM supply_cycles WHERE zone = 'north'"
                                     f" AND wave = '{wave}'")
        return rows[0][0] if rows else None

    assert state() == "open"
    wait(lambda: state() == "planned", timeout=150, what="the wave cut off by a worker")
    done = query(stack.cloud_db, "SELECT cutoff_done_at FROM supply_cycles WHERE zone ="
                                 f" 'north' AND wave = '{wave}'")[0][0]
    assert done >= at.timestamp()  # not before its cutoff
    claims = query(stack.cloud_db, "SELECT worker, done_at FROM job_claims WHERE job ="
                                   f" 'cutoff' AND key = 'north/{wave}'")
    assert len(claims) == 1 and claims[0][0] in ("ingest-1", "ingest-2") and claims[0][1]
    lines = query(stack.cloud_db, "SELECT qty, why FROM plan_lines WHERE zone = 'north' AND"
                                  f" wave = '{wave}'")
    assert len(lines) == 1  # one item, planned once
    # The simulated fridge may be alarming by now: then the chilled pre-order could not
    # ride (refunded, its resident told once); otherwise it is in the plan.
    (outcome,) = query(stack.cloud_db, "SELECT outcome FROM wave_orders WHERE order_id ="
                                       f" {placed['order']}")[0]
    why = json.loads(lines[0][1])
    if outcome == "held":
        assert why["preorders"] == 3
    else:
        assert outcome == "refunded" and why["refused"] in ("fridge_alarm", "fridge_offline")
        assert query(stack.cloud_db, "SELECT kind FROM resident_notices WHERE order_id ="
                                     f" {placed['order']}") == [("cancelled",)]
