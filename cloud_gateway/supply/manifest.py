"""A wave's delivery manifests (per store) and the depot's pick list (per route and store),
built from the plan the cutoff stored.

The delivered pieces of a line go first to the line's pre-orders, oldest order first, one
bag per pre-order; the rest goes on the shelf. A pre-order the delivery does not cover in
full (the store had sellable stock, netted by the plan) is served from the store's stock
for the rest: `from_stock` says how many. When the store's stock covers an item's
pre-orders in full, the line brings 0 pieces and is kept for its `from_stock` alone (the
store holds them from the cutoff). Each route is a zone for now (one van a zone).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from xiaodian.i18n import Translator
from xiaodian.i18n.templates import render

from .. import sql
from . import cutoff, waves

SHELF = "shelf"  # the bag name of the pieces for walk-in sales


@dataclass
class Served:
    order: int
    customer: str
    qty: int  # pieces of this delivery in the order's bag
    from_stock: int  # pieces the store gives from its own stock


@dataclass
class ManifestLine:
    item: str
    name: str
    qty: int
    batch: str
    expiry: str  # YYYY-MM-DD, the last day it may be sold
    preorders: list[Served] = field(default_factory=list)

    @property
    def shelf(self) -> int:
        return self.qty - sum(p.qty for p in self.preorders)


@dataclass
class Manifest:
    zone: str
    wave: date
    delivery: date
    store: str
    lines: list[ManifestLine]


def manifests(conn: sql.Connection, zone: str, wave: date,
              store: str | None = None) -> list[Manifest]:
    """One manifest per store with something delivered (or only `store`'s)."""
    cyc = waves.get_cycle(conn, zone, wave)
    if cyc is None or not waves.reached(cyc["state"], "planned"):
        return []
    delivery = date.fromisoformat(cyc["delivery"])
    pre: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for ln in waves.preorder_lines(conn, zone, wave):
        pre.setdefault((str(ln["store"]), str(ln["item"])), []).append(ln)
    out: dict[str, Manifest] = {}
    for row in cutoff.plan_rows(conn, zone, wave, store):
        served = pre.get((row["store"], row["item"]), [])
        if row["qty"] <= 0 and not served:
            continue  # a line of 0 stays only to say which pre-orders the store's stock serves
        line = ManifestLine(row["item"], row["name"], row["qty"], row["batch"], row["expiry"])
        left = row["qty"]
        for p in served:
            want = int(p["qty"])
            take = min(want, left)
            left -= take
            line.preorders.append(Served(int(p["order"]),
                                         str(p["customer"]), take, want - take))
        out.setdefault(row["store"], Manifest(zone, wave, delivery, row["store"], []))
        out[row["store"]].lines.append(line)
    return [out[s] for s in sorted(out)]


@dataclass
class Bag:
    name: str  # the pre-order's number, or SHELF
    customer: str
    lines: list[tuple[str, str, int, str, str]]  # item, name, qty, batch, expiry


def bags(m: Manifest) -> list[Bag]:
    """The store's bags: one per pre-order (oldest first), then the shelf's."""
    by_order: dict[int, Bag] = {}
    shelf = Bag(SHELF, "", [])
    for ln in m.lines:
        for p in ln.preorders:
            if p.qty > 0:
                by_order.setdefault(p.order, Bag(str(p.order), p.customer, [])).lines.append(
                    (ln.item, ln.name, p.qty, ln.batch, ln.expiry))
        if ln.shelf > 0:
            shelf.lines.append((ln.item, ln.name, ln.shelf, ln.batch, ln.expiry))
    out = [by_order[k] for k in sorted(by_order)]
    return out + ([shelf] if shelf.lines else [])


CSV_HEADER = ("route", "store", "bag", "customer", "item", "name", "qty", "batch", "expiry")


def pick_list_csv(ms: list[Manifest]) -> str:
    """The depot's pick list: per route, per store, per bag, one row a line."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for m in ms:
        for b in bags(m):
            for item, name, qty, batch, expiry in b.lines:
                w.writerow((m.zone, m.store, b.name, b.customer, item, name, qty, batch,
                            expiry))
    return buf.getvalue()


MANIFEST_HEADER = ("store", "delivery", "item", "name", "qty", "batch", "expiry", "preorders",
                   "shelf")


def manifest_csv(ms: list[Manifest]) -> str:
    """The stores' manifests: one row a line; `preorders` as order:pieces;..."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(MANIFEST_HEADER)
    for m in ms:
        for ln in m.lines:
            served = ";".join(f"{p.order}:{p.qty}" for p in ln.preorders)
            w.writerow((m.store, m.delivery.isoformat(), ln.item, ln.name, ln.qty, ln.batch,
                        ln.expiry, served, ln.shelf))
    return buf.getvalue()


def html(ms: list[Manifest], t: Translator, zone: str, wave: date, delivery: date,
         tz: str) -> str:
    """The manifests and pick list as one printable page, in `t`'s language."""
    return render("cloud_gateway", "templates", "supply_manifest.html", t, switch=[],
                  manifests=ms, bags={m.store: bags(m) for m in ms}, zone=zone, wave=wave,
                  delivery=delivery, tz=tz)
