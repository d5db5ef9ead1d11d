"""A wave received at the store, as real processes (StoreStack: Mosquitto with TLS, the
cloud's workers, the edge agent and its counter page's HTTP API): a resident pre-orders,
the wave is cut off, the manifest reaches the terminal at the cutoff and the stock it
netted is held there (a walk-in sale is refused; the eggs the shelf covers in full come
as a line of 0 pieces and are held too, and there is nothing to count for them), the
wave is dispatched, the clerk
receives it with a short line and signs off with their own account while the broker is
down, and the cloud stores exactly one receipt for that manifest once it is back.

Built so more can be asserted at the end: `Wave` keeps what each step learnt (order,
manifest, receipt); the last section checks what the cloud made of the receipt: the short
pre-order line, its refund and the resident's notices, each once."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from supply_setup import north_zone

from cloud_gateway import resident_notices, retail
from cloud_gateway.db import Database
from cloud_gateway.supply import receiving
from devstack.retail_seed import DEMO_CLERK, counter_request
from devstack.stack import StoreStack
from devstack.testkit.cli import json_cli as cli
from devstack.testkit.edge import query
from devstack.testkit.wait import wait
from xiaodian.i18n import translator

MILK = "06901234567892"  # 8 on the shelf that keep (seed_retail)
TOFU = "06901234567823"  # none in stock: the pre-order brings it
EGGS = "06901234567809"  # 6 on the shelf, no walk-in sales yet: they cover the pre-order


@dataclass
class Wave:
    """What the steps learnt, for the assertions at the end."""

    order: int = 0
    wave: str = ""
    manifest: dict[str, Any] = field(default_factory=dict)
    receipt: dict[str, Any] = field(default_factory=dict)


def cloud_receipts(stack: StoreStack, manifest: int) -> list[dict[str, Any]]:
    """The receipt events the cloud stored for the manifest."""
    rows = query(stack.cloud_db, "SELECT device, data FROM events WHERE store = 'store-001'"
                                 " AND type = 'receipt'")
    return [d for dev, d in ((r[0], json.loads(r[1])) for r in rows)
            if dev == "ledger" and d["manifest"] == manifest]


def test_a_wave_is_received_at_the_counter_and_the_cloud_gets_one_receipt(
        stack: StoreStack) -> None:
    assert stack.seed_retail()["problems"] == []
    w = Wave()
    db = north_zone(stack, {MILK: "鲜牛奶", TOFU: "豆腐", EGGS: "鸡蛋"})

    # 1. A pre-order on the wave, then the cutoff: the manifest reaches the terminal now.
    placed = cli("supply", "preorder", "store-001", "--item", f"{MILK}:10", "--item",
                 f"{TOFU}:1", "--item", f"{EGGS}:2", "--customer", "王芳", *db)
    w.order, w.wave = placed["order"], placed["wave"]
    zone = ("--zone", "north", "--wave", w.wave, *db)
    assert cli("supply", "cutoff", *zone)["changed"]
    (mid,) = [r[0] for r in query(stack.cloud_db, "SELECT id FROM manifests")]
    wait(lambda: query(stack.edge_db, f"SELECT body FROM manifests WHERE id = {mid}"),
         timeout=30, what="the manifest at the terminal at the cutoff")
    (body,) = query(stack.edge_db, f"SELECT body FROM manifests WHERE id = {mid}")[0]
    w.manifest = json.loads(body)
    lines = {ln["item"]: ln for ln in w.manifest["lines"]}
    from_stock = sum(s["from_stock"] for s in lines[MILK]["serves"])
    assert from_stock > 0  # the plan netted the shelf's milk against the pre-order
    # The shelf's eggs cover the pre-order in full: a line of 0 pieces, there to be held.
    assert (lines[EGGS]["qty"], lines[EGGS]["lots"]) == (0, [])
    assert [(s["order"], s["qty"], s["from_stock"]) for s in lines[EGGS]["serves"]] == [
        (w.order, 0, 2)]

    # 2. Held from the cutoff on: a walk-in cannot buy the netted milk.
    on_hand = query(stack.edge_db, f"SELECT SUM(qty) FROM stock_movements WHERE item = '{MILK}'"
                    )[0][0]
    counter_request(stack, "mode", {"mode": "sale"})
    for _ in range(on_hand - from_stock):  # what is not held sells as usual
        assert counter_request(stack, "scan", {"code": f"]E0{MILK[1:]}"})["ok"]
    refused = counter_request(stack, "scan", {"code": f"]E0{MILK[1:]}"})
    assert not refused["ok"] and refused["reason"] == "held", refused
    eggs = query(stack.edge_db, f"SELECT SUM(qty) FROM stock_movements WHERE item = '{EGGS}'"
                 )[0][0]
    for _ in range(eggs - 2):
        assert counter_request(stack, "scan", {"code": f"]E0{EGGS[1:]}"})["ok"]
    refused = counter_request(stack, "scan", {"code": f"]E0{EGGS[1:]}"})
    assert not refused["ok"] and refused["reason"] == "held", refused

    # 3. The wave leaves the depot: the pre-order reaches the terminal as an order.
    cli("supply", "advance", *zone, "--to", "picked")
    assert cli("supply", "advance", *zone, "--to", "dispatched")["changed"]
    wait(lambda: query(stack.edge_db, f"SELECT state FROM orders WHERE id = {w.order}")
         == [("received",)], timeout=30, what="the pre-order at the terminal")

    # 4. Receiving at the counter: the milk short by what the shelf's share of the line
    #    (the forecast's pieces for walk-ins, which a shortfall takes first) plus one, so
    #    exactly one piece of the pre-order's bag is missing; the tofu in full; the eggs'
    #    line brings nothing: nothing to count.
    bag = sum(s["qty"] for s in lines[MILK]["serves"])
    short = lines[MILK]["qty"] - bag + 1
    assert counter_request(stack, "receiving", {"op": "open", "manifest": mid})["ok"]
    counter_request(stack, "receiving", {"op": "set", "manifest": mid, "item": MILK,
                                  "field": "good", "value": lines[MILK]["qty"] - short})
    counter_request(stack, "receiving", {"op": "set", "manifest": mid, "item": MILK,
                                  "field": "note", "value": "箱里少一瓶"})
    counter_request(stack, "receiving", {"op": "set", "manifest": mid, "item": TOFU,
                                  "field": "good", "value": lines[TOFU]["qty"]})

    # 5. Signed off with the broker down; it comes back and the cloud stores the receipt
    #    once (the agent resends what the broker never acknowledged; the cloud dedupes).
    assert stack.broker is not None
    stack.broker.stop()
    signed = counter_request(stack, "receiving", {"op": "sign", "manifest": mid,
                                           "clerk": DEMO_CLERK[0], "pin": DEMO_CLERK[1]})
    assert signed["ok"], signed
    again = counter_request(stack, "receiving", {"op": "open", "manifest": mid})
    assert not again["ok"] and again["reason"] == "received_already"
    assert cloud_receipts(stack, mid) == []
    stack.broker.start()
    wait(lambda: cloud_receipts(stack, mid), timeout=60, what="the receipt in the cloud")
    # A second broker restart, losing every session: still exactly one.
    stack.restart_broker(lose_state=True)
    assert stack.settle(timeout=60), "the terminal's outbox reached the cloud"
    (receipt,) = cloud_receipts(stack, mid)
    w.receipt = receipt
    assert receipt["signed_by"] == DEMO_CLERK[0] and receipt["wave"] == w.wave
    assert [(d["item"], d["issue"], d["qty"], d["note"]) for d in receipt["differences"]] \
        == [(MILK, "short", short, "箱里少一瓶")]
    accepted = {ln["item"]: ln["accepted"] for ln in receipt["lines"]}
    assert accepted == {MILK: lines[MILK]["qty"] - short, TOFU: lines[TOFU]["qty"], EGGS: 0}
    assert {ln["item"]: ln["expected"] for ln in receipt["lines"]}[EGGS] == 0
    # The accepted pieces reached the cloud's stock as ordinary deliveries with the lots.
    moved = query(stack.cloud_db, "SELECT item, batch, SUM(qty) FROM movements WHERE store ="
                                  " 'store-001' AND kind = 'delivery' AND batch = ?"
                                  " GROUP BY item, batch", lines[TOFU]["lots"][0]["batch"])
    assert {(i, q) for i, _, q in moved} == {(MILK, lines[MILK]["qty"] - short),
                                             (TOFU, lines[TOFU]["qty"])}

    # 6. The cloud made of it, once across both restarts: the pre-order's milk one short,
    #    a refund of that piece at the store's price, and the resident told it arrived,
    #    what is short and what is refunded (each notice exactly once).
    with Database.open(stack.cloud_db) as cdb:
        (line,) = receiving.order_shortages(cdb.conn, w.order)
        assert (line["item"], line["qty"]) == (MILK, 1)
        assert line["price_fen"] == retail.prices(cdb.conn, "store-001").get(MILK, 800)
        (refund,) = receiving.order_refunds(cdb.conn, w.order)
        assert receiving.refunded_fen(cdb.conn, w.order) == line["price_fen"]
        assert refund["id"] == line["refund"] and refund["amount_fen"] == line["price_fen"]
        kinds = sorted(n.kind for n in resident_notices.for_order(cdb.conn, w.order))
        assert kinds == ["arrived", "refund", "short"]
        page = {n.kind: n.text(translator("zh_CN")) for n in
                resident_notices.for_order(cdb.conn, w.order)}
        assert "鲜牛奶" in page["short"] and "¥" in page["refund"], page
