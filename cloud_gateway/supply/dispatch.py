"""Each store's manifest queued at the cutoff, and the wave's pre-orders when a picked wave
leaves the depot, through the downlink (cloud_gateway/downlink.py).

The manifest (xiaodian.wire.retail.Manifest) goes on the store's orders leaf, like an
order, as soon as the cutoff stored the plan (`send_manifests`, called by cutoff.cutoff in
its transaction): the store holds each line's `from_stock` pieces for their pre-orders
from then on, so a walk-in sale cannot take them before the delivery (docs/supply.md,
"The hold"). Dispatch queues the manifests again (a broker may have lost them since the
cutoff) and turns each pre-order still riding the wave into an ordinary order (`open`,
without its cancelled lines) so the store can hand it over with a pickup code.
Dispatching twice changes nothing (the cycle is dispatched already). A broker that lost
a manifest, from the cutoff until the wave is delivered, gets it again when the publisher
reconnects or the terminal comes back (`transit.requeue_in_transit`): the store ignores a
manifest id and an order id it has.
"""

from __future__ import annotations

import json
from datetime import date

from xiaodian.wire import retail as contract

from .. import sql
from ..retail_tables import queue as queue_downlink
from ..retail_tables import set_state as set_order_state
from . import manifest, waves


def to_wire(m: manifest.Manifest, manifest_id: int) -> contract.Manifest:
    return contract.Manifest(
        manifest_id, m.store, m.zone, m.wave.isoformat(), m.delivery.isoformat(),
        tuple(contract.ManifestLine(
            ln.item, ln.name, ln.qty,
            (contract.ManifestLot(ln.batch, ln.expiry, ln.qty),) if ln.qty > 0 else (),
            tuple(contract.Serves(p.order, p.qty, p.from_stock) for p in ln.preorders))
            for ln in m.lines))


def send_manifests(conn: sql.Connection, zone: str, wave: date, now: float) -> int:
    """Queue each store's manifest of a planned wave, numbered once: when the wave has its
    manifests already, they are put back in line instead (the store ignores an id it has).
    How many."""
    numbered = conn.execute("SELECT COUNT(*) FROM manifests WHERE zone = ? AND wave = ?",
                            (zone, wave.isoformat())).fetchone()[0]
    if numbered:
        conn.execute(
            "UPDATE downlink SET published_at = NULL WHERE kind = 'manifest' AND ref IN"
            " (SELECT id FROM manifests WHERE zone = ? AND wave = ?)", (zone, wave.isoformat()))
        return int(numbered)
    sent = 0
    for m in manifest.manifests(conn, zone, wave):
        mid = int(conn.execute(
            "INSERT INTO manifests (zone, wave, store, payload, created_at)"
            " VALUES (?, ?, ?, ?, ?) RETURNING id",
            (zone, wave.isoformat(), m.store, b"", now)).fetchone()[0])
        payload = contract.manifest_payload(to_wire(m, mid))
        conn.execute("UPDATE manifests SET payload = ? WHERE id = ?", (payload, mid))
        queue_downlink(conn, m.store, "manifest", mid, f"xd/v1/{m.store}/orders", payload,
                       retain=False, expires=None, now=now)
        sent += 1
    return sent


def dispatch(conn: sql.Connection, zone: str, wave: date, now: float) -> bool:
    """Mark the wave dispatched and queue its manifests (again) and pre-orders; False if
    it was dispatched already. CycleError unless it was picked."""
    if not waves.advance(conn, zone, wave, "dispatched", now):
        return False
    send_manifests(conn, zone, wave, now)
    lines: dict[int, list[contract.OrderLine]] = {}
    for ln in waves.preorder_lines(conn, zone, wave):
        lines.setdefault(ln["order"], []).append(contract.OrderLine(ln["item"], ln["qty"]))
    for oid, order_lines in sorted(lines.items()):
        row = conn.execute("SELECT store, customer, created, expires, state FROM orders"
                           " WHERE id = ?", (oid,)).fetchone()
        if row[4] != "preorder" or row[3] <= now:
            continue
        set_order_state(conn, oid, "preorder", "open", now, "cloud",
                        json.dumps({"dispatched": wave.isoformat()}))
        order = contract.Order(oid, row[0], "pickup", row[1], float(row[2]), float(row[3]),
                               tuple(order_lines))
        queue_downlink(conn, row[0], "order", oid, f"xd/v1/{row[0]}/orders",
                       contract.order_payload(order), retain=False, expires=float(row[3]),
                       now=now)
    return True

