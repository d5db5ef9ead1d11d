"""A wave from pre-order to the terminal, as real processes (StoreStack: Mosquitto, the
cloud's workers, the edge agent): the cutoff's manifest and the pre-order reach the
terminal through the downlink, and a broker that lost everything delivers the manifest
again, which the terminal recognises (kept once)."""

from __future__ import annotations

import json
from typing import Any

from supply_setup import north_zone

from devstack.stack import StoreStack
from devstack.testkit.cli import json_cli as cli
from devstack.testkit.edge import query
from devstack.testkit.wait import wait

MILK = "06901234567892"
TOFU = "06901234567823"  # none in stock: the pre-order brings it


def test_a_dispatched_wave_reaches_the_terminal_once_across_a_broker_loss(
        stack: StoreStack) -> None:
    assert stack.seed_retail()["problems"] == []
    db = north_zone(stack, {MILK: "鲜牛奶", TOFU: "豆腐"})
    # The shop has 8 milk that keep (seed_retail): 10 pre-ordered bring 2 more.
    placed = cli("supply", "preorder", "store-001", "--item", f"{MILK}:10", "--item",
                 f"{TOFU}:1", "--customer", "王芳", *db)
    wave = placed["wave"]
    zone = ("--zone", "north", "--wave", wave, *db)
    assert cli("supply", "cutoff", *zone)["changed"]  # closed early by the operator
    cli("supply", "advance", *zone, "--to", "picked")
    assert cli("supply", "advance", *zone, "--to", "dispatched")["changed"]
    (mid,) = [r[0] for r in query(stack.cloud_db, "SELECT id FROM manifests")]

    def at_terminal() -> list[dict[str, Any]]:
        return [json.loads(b) for (b,) in query(stack.edge_db, "SELECT body FROM manifests")]

    wait(lambda: len(at_terminal()) == 1, timeout=30, what="the manifest at the terminal")
    got = at_terminal()[0]
    assert got["id"] == mid and got["wave"] == wave
    lines = {ln["item"]: ln for ln in got["lines"]}
    assert lines[MILK]["qty"] == 2
    assert lines[MILK]["serves"] == [{"order": placed["order"], "qty": 2, "from_stock": 8}]
    assert lines[TOFU]["serves"] == [{"order": placed["order"], "qty": 1, "from_stock": 0}]
    assert lines[TOFU]["lots"][0]["qty"] == lines[TOFU]["qty"]
    # The pre-order itself became an order the terminal has and confirmed.
    wait(lambda: query(stack.edge_db, f"SELECT state FROM orders WHERE id = {placed['order']}")
         == [("received",)], timeout=30, what="the pre-order at the terminal")
    wait(lambda: query(stack.cloud_db, f"SELECT state FROM orders WHERE id ="
                                       f" {placed['order']}") == [("received",)],
         timeout=30, what="the pre-order confirmed to the cloud")

    # The broker loses every session and message: the manifest comes again (the cloud puts
    # a wave on its way back in line), and the terminal keeps it once.
    log = stack.logs / "edge.log"
    stack.restart_broker(lose_state=True)
    wait(lambda: f"manifest {mid} already stored (redelivery)" in log.read_text(
        errors="replace"), timeout=60, what="the manifest delivered again")
    assert len(at_terminal()) == 1
