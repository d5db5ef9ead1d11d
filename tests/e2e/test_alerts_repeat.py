"""A repeated excursion on one fridge is two alerts end to end (issue #13): two notices,
two acknowledgements, two HACCP entries.

Real processes (StoreStack: simulator, edge agent, TLS Mosquitto, cloud worker) and a real
loopback webhook checking the signature, as in test_alerts_offline.py. The fridge is the
demo's fridge-2 made repeatable: switched on warm (product 10 °C, like `demo.toml`) and
regulated at 6 °C, so the product never gets below 5 °C (checked from the simulator's
ground truth). In simulated time:

    ~15 min   "hot" (> 8 °C for 15 min, sustained), started with the data
    ~1 h 2 min "hot" clears (< 7 °C for 10 min); the product stays above 5 °C
    ~4 h      the day's budget above 5 °C is spent: "hot" again (cumulative)

The edge used to raise the second one under the first one's id (both began with the
data); the cloud kept it cleared and told nobody. Now it is a new alert: the owner is told
twice, acknowledges each through the link in its notice, with what was done, and the HACCP
record has both, each with its own acknowledgement.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo

import pytest

from cloud_gateway import haccp
from cloud_gateway.db import Database
from devstack.stack import StoreStack
from devstack.testkit.http_client import request
from devstack.testkit.webhooks import Received, WebhookReceiver, alerts_toml
from xiaodian.i18n import translator
from xiaodian.wire.alert_text import describe

pytestmark = pytest.mark.e2e

SPEED = 600.0  # 4 simulated hours in 24 s
SCENARIO = f"""\
[sim]
seed = 7
speed = {SPEED}
link_dir = "run"
truth = "run/truth.jsonl"

[[fridges]]
id = "fridge-2"
set_point_c = 6.0
sample_interval_s = 10
heartbeat_interval_s = 10
ambient_c = 30.0
door_openings_per_hour = 0
defrost_every_h = 0
initial_air_c = 12.0
initial_product_c = 10.0
"""
STORE = "store-001"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _hot(got: list[Received], kind: str | None = None) -> list[Received]:
    return [r for r in sorted(got, key=lambda r: r.delivery)
            if r.body["alert"]["rule"] == "hot" and (kind is None or r.body["kind"] == kind)]


def _ack_by_link(notice: dict[str, Any], by: str, action: str) -> tuple[int, str]:
    """What the owner does on the phone: open the notice's link, send the form."""
    link = urlsplit(notice["ack_url"])
    token = parse_qs(link.query)["t"][0]
    page = request(notice["ack_url"], timeout=10)
    assert page.status == 200 and b"corrective_action" in page.body
    form = urlencode({"t": token, "by": by, "corrective_action": action}).encode()
    r = request(f"{link.scheme}://{link.netloc}{link.path}", "POST", data=form, timeout=10,
                headers={"Content-Type": "application/x-www-form-urlencoded"})
    return r.status, r.body.decode()


def _min_product_c(truth: Path) -> float:
    temps = []
    for line in truth.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("kind") == "temp":
            temps += [c for i, s, c in rec["probes"] if i == 1 and c is not None]
    assert temps
    return min(temps)


def test_two_excursions_give_two_notices_two_acks_two_haccp_entries(tmp_path: Path) -> None:
    scenario = tmp_path / "repeat.toml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    secret = os.urandom(32).hex().encode()
    with WebhookReceiver(secret) as hook:
        stack = StoreStack(
            tmp_path / "store", speed=SPEED, scenario=scenario, sim_flush_s=0.0,
            cloud_alerts_toml=alerts_toml(tmp_path / "secrets", STORE, hook.url, secret))
        stack.start()
        try:
            # A bound for a hang: start-up, then 4 simulated hours (24 s) and delivery.
            got = hook.wait(lambda g: len(_hot(g, "alert")) >= 2, 120)
            first, second = _hot(got, "alert")[:2]
            # A critical alert's link refuses an acknowledgement without an action (and
            # stays usable: nothing was recorded).
            refused = _ack_by_link(second.body, "li", "")
            acked = [_ack_by_link(first.body, "wang", "moved the stock to fridge-1"),
                     _ack_by_link(second.body, "wang", "called the technician")]
            got = hook.snapshot()
        finally:
            stack.stop()
        assert hook.refused == 0
    assert _min_product_c(stack.truth) > 5.0  # so the second "hot" is the cumulative one

    a1, a2 = first.body["alert"], second.body["alert"]
    assert a1["id"] != a2["id"] and a1["fridge"] == a2["fridge"] == "fridge-2"
    assert a1["data"]["reason"] == "hot_sustained" and a2["data"]["reason"] == "hot_cumulative"
    # The owner heard of each, in Chinese, in the order they happened, and of the first's end.
    assert "温度过高" in first.body["text"] and "严重" in first.body["text"]
    assert "最近 24 小时内累计高于 5 °C 达 4 小时" in second.body["text"], second.body["text"]
    clears = [r.body["alert"] for r in _hot(got, "all_clear")]
    assert [c["id"] for c in clears[:1]] == [a1["id"]] and a2["id"] not in {c["id"] for c in clears}
    # The new alert starts where the old one ended (in time and in the notices' order).
    assert a2["started_at"] >= clears[0]["cleared_at"]
    assert _hot(got, "all_clear")[0].delivery < second.delivery
    assert [r.body["alert"]["id"] for r in _hot(got, "alert")] == [a1["id"], a2["id"]]
    # Two acknowledgements, each taken once.
    assert [status for status, _ in acked] == [200, 200], acked
    assert refused[0] == 422 and "corrective_action" in refused[1], refused

    with Database.open_readonly(stack.cloud_db) as db:
        days = {datetime.fromtimestamp(a["started_at"], SHANGHAI).date() for a in (a1, a2)}
        entries = {a.id: a for day in days
                   for fd in haccp.report(db.conn, STORE, day, SHANGHAI, "fridge-2")
                   for a in fd.alerts if a.rule == "hot"}
        rows = {r["id"]: dict(r) for r in db.conn.execute(
            "SELECT id, state, acked_by, corrective_action FROM alerts WHERE rule = 'hot'")}
    assert set(entries) == {a1["id"], a2["id"]}
    assert entries[a1["id"]].cleared_at is not None
    assert entries[a1["id"]].corrective_action == "moved the stock to fridge-1"
    assert entries[a2["id"]].corrective_action == "called the technician"
    assert entries[a2["id"]].acked_by == "wang"
    # What the pages show of an entry, from its reason and numbers, in Chinese.
    said = translator("zh_CN").render(describe("hot", entries[a2["id"]].data))
    assert said.startswith("产品 ") and "累计高于 5 °C 达 4 小时" in said, said
    assert rows[a1["id"]]["state"] == "cleared" and rows[a2["id"]]["state"] == "active"
