"""The whole store as real processes (StoreStack): the cloud's catalogue and orders reach the
terminal's SQLite, and the cloud's stock is exactly the terminal's ledger."""

from __future__ import annotations

import time

from devstack.stack import StoreStack
from devstack.testkit.edge import query
from devstack.testkit.http_client import post
from devstack.testkit.wait import wait
from xiaodian.pki import load_pickup_key, pickup_key_path
from xiaodian.wire.pickup import PickupCodec


def test_orders_reach_the_terminal_and_cloud_stock_is_its_ledger(stack: StoreStack) -> None:
    seeded = stack.seed_retail()
    assert seeded["problems"] == [] and len(seeded["orders"]) == 2, seeded
    pickup, delivery = seeded["orders"]
    # Stored by the terminal and confirmed back to the cloud as "received".
    wait(lambda: {r[0] for r in query(stack.edge_db, "SELECT id FROM orders")}
         == {pickup["id"], delivery["id"]}, timeout=20, what="orders in the edge database")
    wait(lambda: all(o["state"] == "received" for o in
                     stack.api("api/stores/store-001/orders")["orders"]),
         timeout=20, what="orders confirmed as received")
    # The code the cloud returned verifies with the key the terminal was configured with.
    key = load_pickup_key(pickup_key_path(stack.workdir / "pki", "store-001"))
    assert PickupCodec("store-001", key).verify(pickup["pickup_code"], time.time()).order_id \
        == pickup["id"]

    # Cancelling in the cloud reaches the terminal too, and frees the reservation.
    token = stack.api_token_file.read_text().strip()
    resp = post(f"{stack.http_url}api/stores/store-001/orders/{delivery['id']}/cancel",
                {"reason": "changed mind"}, token=token)
    assert resp.status == 200, (resp.status, resp.body)
    assert resp.json()["state"] == "cancelled"
    wait(lambda: query(stack.edge_db, f"SELECT state FROM orders WHERE id ="
                                      f" {delivery['id']}") == [("cancelled",)],
         timeout=20, what="the cancellation at the terminal")

    # Stock: the cloud's table equals the terminal's ledger, lot by lot.
    def ledger() -> dict[tuple[str, str, str], int]:
        return {(i, b or "", e or ""): q for i, b, e, q in query(
            stack.edge_db, "SELECT item, batch, expiry, SUM(qty) FROM stock_movements"
                           " GROUP BY item, batch, expiry")}

    def cloud() -> dict[tuple[str, str, str], int]:
        return {(i, b, e): q for i, b, e, q in query(
            stack.cloud_db, "SELECT item, batch, expiry, on_hand FROM stock"
                            " WHERE store = 'store-001'")}

    wait(lambda: ledger() and ledger() == cloud(), timeout=20, what="cloud stock = edge ledger")
    stock = {i["item"]: i for i in stack.api("api/stores/store-001/stock")["items"]}
    milk = stock["06901234567892"]
    assert (milk["on_hand"], milk["reserved"], milk["available"]) == (8, 2, 6)
