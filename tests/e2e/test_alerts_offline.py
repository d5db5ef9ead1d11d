"""Alerts raised while the broker is down reach the owner soon after it is back, in order.

Real processes (StoreStack) and a real loopback webhook receiver checking the signature.
One fridge, two door openings (simulated time, x150):

    900-1320 s   door open 7 min: raised (3 min), owner (5 min), cleared: all while offline
    1500-4800 s  door open 55 min: raised, owner, critical (15 min) while offline; the broker
                 comes back after that, and the door closes online

The first alert was over before anyone could be told: the owner gets it once, `resolved`.
The second is still open: `alert` (critical), then `all_clear` when the door closes. The
edge's alert events reach the cloud in the order they happened.

The door must close well after the cloud has heard of the open alert, or the cloud gets
the whole alert at once and (by design) tells the owner one `resolved`. Reconnecting takes
up to a few seconds: each side's back-off (up to 2 s), and when the store reconnects before
the cloud worker has subscribed again, what it sent meanwhile is lost at the broker and
resent after the edge's confirm wait (3 s, checked every 1.5 s). So the door closes 16 s
(real) after the alert goes critical, beyond the 10 s the owner may wait for the alert.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from devstack.stack import StoreStack
from devstack.testkit.edge import query
from devstack.testkit.wait import wait
from devstack.testkit.webhooks import Received, WebhookReceiver, alerts_toml, truth_faults

pytestmark = pytest.mark.e2e

SPEED = 150.0
OPEN2_FOR_S = 3300.0  # the second opening (simulated s): 55 min, critical at 15 min
# After the door closes: the edge sees it (sampling), a copy lost at the broker is resent
# (confirm wait 3 s, doubled once at most here), the cloud ticks and sends. A bound for a
# hang, not a timing assertion.
CLEAR_SLACK_S = 30.0
SCENARIO = f"""\
[sim]
seed = 3
speed = 150.0
link_dir = "run"
truth = "run/truth.jsonl"

[[fridges]]
id = "fridge-1"
set_point_c = 3.0
door_openings_per_hour = 0
defrost_every_h = 0

[[fridges.faults]]
fault = "door_open"
at_s = 900
for_s = 420

[[fridges.faults]]
fault = "door_open"
at_s = 1500
for_s = {OPEN2_FOR_S:g}
"""


def _count(db: Path, sql: str) -> int:
    rows = query(db, sql)  # no database or tables yet: nothing counted
    return int(rows[0][0]) if rows else 0


def _door(got: list[Received]) -> list[tuple[str, str, str]]:
    """(alert id, notice kind, severity) of the door notices, in order of arrival."""
    return [(r.body["alert"]["id"], r.body["kind"], r.body["alert"]["severity"])
            for r in sorted(got, key=lambda r: r.at) if r.body["alert"]["rule"] == "door"]


def test_alerts_raised_offline_reach_the_owner_in_order(tmp_path: Path) -> None:
    scenario = tmp_path / "offline.toml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    secret = os.urandom(32).hex().encode()
    with WebhookReceiver(secret) as hook:
        stack = StoreStack(
            tmp_path / "store", speed=SPEED, scenario=scenario, sim_flush_s=0.0,
            reconnect_max_s=2.0,
            cloud_alerts_toml=alerts_toml(tmp_path / "secrets", "store-001", hook.url, secret))
        stack.start()
        try:
            assert stack.broker is not None
            # Online first: the cloud has the fridge's readings.
            wait(lambda: _count(stack.cloud_db, "SELECT count(*) FROM readings") > 0, 15,
                 "first readings in the cloud")
            stack.broker.stop()
            offline_at = time.time()
            critical = ("SELECT count(*) FROM events WHERE type = 'alert'"
                        " AND json_extract(data, '$.severity') = 'critical'"
                        " AND json_extract(data, '$.rule') = 'door'")
            # The second door alert goes critical at the edge (15 min into its opening).
            wait(lambda: _count(stack.edge_db, critical) > 0, 30, "critical door alert")
            assert hook.snapshot() == [], "notified while the broker was down"
            stack.broker.start()
            back_at = time.time()
            got = hook.wait(lambda g: len(_door(g)) >= 2, 10)
            door = _door(got)
            assert len(door) >= 2, f"within 10 s of reconnection: {door}"
            delays = [r.at - back_at for r in got if r.body["alert"]["rule"] == "door"]
            told_at = sorted(r.at for r in got if r.body["alert"]["rule"] == "door")[1]
            # Then the door closes (online) and the owner hears the all-clear: wait until
            # the scenario closes it (truth: when the second opening began) and then some.
            opened = truth_faults(stack.truth, "door_open")["fridge-1"][1][0]
            closes_at = opened + OPEN2_FOR_S / SPEED
            got = hook.wait(lambda g: len(_door(g)) >= 3,
                            max(0.0, closes_at - time.time()) + CLEAR_SLACK_S)
        finally:
            stack.stop()
        windows = truth_faults(stack.truth, "door_open")["fridge-1"]
        refused = hook.refused

    assert refused == 0
    # Both openings began after the broker went down (else this tests nothing).
    assert len(windows) == 2 and all(start > offline_at for start, _ in windows), windows
    first_end, second_end = windows[0][1], windows[1][1]
    assert first_end is not None and first_end < back_at
    # The owner heard of the open alert before the door closed (else one `resolved`).
    assert second_end is not None and second_end > told_at, (second_end - told_at, door)
    door = _door(got)
    (a1, k1, s1), (a2, k2, s2), (a3, k3, _) = door
    assert (k1, s1) == ("resolved", "warning")  # over before anyone was told: once
    assert (k2, s2) == ("alert", "critical") and a2 != a1  # the open one, at its severity now
    assert (a3, k3) == (a2, "all_clear")
    assert len(door) == 3, door  # nothing twice
    assert max(delays) < 10.0, delays
    # The edge's alert events, as the cloud stored them (seq order = the edge's order):
    # each alert's changes raised < updated < cleared, and the first alert before the second.
    con = sqlite3.connect(stack.cloud_db)
    try:
        rows = [json.loads(d) for (d,) in con.execute(
            "SELECT data FROM events WHERE type = 'alert' ORDER BY boot, seq")]
    finally:
        con.close()
    seen = [(d["id"], d["change"], d["audience"], d["severity"])
            for d in rows if d["rule"] == "door"]
    assert seen == [
        (a1, "raised", "terminal", "warning"), (a1, "updated", "owner", "warning"),
        (a1, "cleared", "owner", "warning"),
        (a2, "raised", "terminal", "warning"), (a2, "updated", "owner", "warning"),
        (a2, "updated", "owner", "critical"), (a2, "cleared", "owner", "critical"),
    ]
