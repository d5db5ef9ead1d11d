"""A store's receipt of a manifest (the `receipt` event), applied in the ingest transaction.

The store signs a delivery off once per manifest (xiaodian.wire.retail.Receipt); its stock
came in as ordinary `delivery` movements already. Here the cloud keeps what differed per
line and turns a shortage into the pre-orders it hits:

- a line's shortfall is what was expected and not accepted (short + damaged + expired +
  wrong item - over; never below 0);
- the delivered pieces go to the line's pre-orders first come first served (by order
  time), the shelf's pieces (walk-in stock) last, so a shortfall takes the shelf's pieces
  first and then the pre-orders placed last (`allocate`, pure);
- each hit pre-order line is recorded short with its pieces (`preorder_shortages`), one
  refund per pre-order and manifest is written with its amount in fen (the resident's
  price of the item at the store x pieces) through a `RefundProvider`, and the resident is
  told (`resident_notices`); every pre-order still served is told it arrived;
- when every manifest of a dispatched wave is received, the wave is `delivered`.

Exactly once: the event is applied once (the batch's dedupe), and a manifest takes one
receipt (the same receipt again under another event changes nothing; a different one is
refused). A receipt for an unknown manifest, another store's, or one that does not match
it raises PayloadError before anything is written: the caller parks it in dead_letters.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from xiaodian.wire import retail as contract
from xiaodian.wire.payloads import PayloadError

from .. import resident_notices, retail, sql
from . import settings, waves

SCHEMA = """
-- A store's receipt of a manifest, one per manifest (supply/receiving.py); digest: of the
-- receipt's data, so the same receipt again is recognised and a different one refused.
CREATE TABLE IF NOT EXISTS manifest_receipts (
    manifest BIGINT PRIMARY KEY,
    store TEXT NOT NULL,
    zone TEXT NOT NULL,
    wave TEXT NOT NULL,
    signed_by TEXT NOT NULL,
    signed_at DOUBLE PRECISION NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    digest TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS manifest_receipts_by_wave ON manifest_receipts (zone, wave);
-- Each line as received: the shortfall (expected - accepted, at least 0) and the
-- differences the clerk recorded, as JSON [{"issue", "qty", "note"}].
CREATE TABLE IF NOT EXISTS receipt_lines (
    manifest BIGINT NOT NULL,
    item TEXT NOT NULL,
    expected INTEGER NOT NULL,
    accepted INTEGER NOT NULL,
    shortfall INTEGER NOT NULL,
    differences TEXT NOT NULL,
    PRIMARY KEY (manifest, item)
);
-- A pre-order line the shortfall hit: `qty` of the `served` pieces its bag should have had.
CREATE TABLE IF NOT EXISTS preorder_shortages (
    manifest BIGINT NOT NULL,
    order_id BIGINT NOT NULL,
    item TEXT NOT NULL,
    served INTEGER NOT NULL,
    qty INTEGER NOT NULL,
    price_fen BIGINT NOT NULL,
    refund_id BIGINT NOT NULL,
    PRIMARY KEY (manifest, order_id, item)
);
CREATE INDEX IF NOT EXISTS preorder_shortages_by_order ON preorder_shortages (order_id);
-- Money owed back to a resident: one row per pre-order and manifest; state and reference
-- as the RefundProvider left them (record-only: recorded, no reference).
CREATE TABLE IF NOT EXISTS refunds (
    id INTEGER PRIMARY KEY,
    order_id BIGINT NOT NULL,
    store TEXT NOT NULL,
    manifest BIGINT NOT NULL,
    amount_fen BIGINT NOT NULL,
    reason TEXT NOT NULL,
    provider TEXT NOT NULL,
    state TEXT NOT NULL,
    reference TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    UNIQUE (manifest, order_id)
);
CREATE INDEX IF NOT EXISTS refunds_by_order ON refunds (order_id);
"""
TABLES = ("manifest_receipts", "receipt_lines", "preorder_shortages", "refunds")
NOT_ACCEPTED = ("short", "damaged", "expired", "wrong_item")
REASON = "short_on_delivery"


# ---------------------------------------------------------------- refunds


@dataclass(frozen=True)
class RefundRequest:
    order_id: int
    store: str
    amount_fen: int
    reason: str
    key: str  # unique per refund: a provider must do nothing for a key it has seen


@dataclass(frozen=True)
class RefundOutcome:
    provider: str
    state: str  # recorded, requested, done, failed
    reference: str | None = None


class RefundProvider(Protocol):
    """Pays a resident back. Called inside the ingest transaction, so it must not wait on
    the network: a real payment provider records the request in its own outbox (by `key`)
    and pays from there."""

    def refund(self, req: RefundRequest) -> RefundOutcome: ...


class RecordOnly:
    """No payment provider: the refund is a record. With pay at pickup nothing was paid,
    so the store takes the refunds off the amount due (`refunded_fen`)."""

    def refund(self, req: RefundRequest) -> RefundOutcome:
        return RefundOutcome("record", "recorded")


RECORD_ONLY = RecordOnly()


# ---------------------------------------------------------------- the pure core


@dataclass(frozen=True)
class Served:
    order: int
    qty: int  # pieces of the line in the order's bag


def allocate(line_qty: int, served: Sequence[Served], shortfall: int) -> list[tuple[int, int]]:
    """(order, pieces short) for each pre-order a line's shortfall hits. `served` in order
    time, first come first; the shelf's pieces (line_qty - served) go short first, then
    the pre-orders from the last placed backwards."""
    shelf = line_qty - sum(s.qty for s in served)
    left = max(0, shortfall - max(0, shelf))
    out: list[tuple[int, int]] = []
    for s in reversed(served):
        if left <= 0:
            break
        take = min(left, s.qty)
        if take > 0:
            out.append((s.order, take))
            left -= take
    return out[::-1]


def shortfalls(r: contract.Receipt) -> dict[str, int]:
    """Pieces of each line expected and not accepted (0 for a line that came in full or
    over)."""
    return {ln.item: max(0, ln.expected - ln.accepted) for ln in r.lines}


# ---------------------------------------------------------------- applying a receipt


def _digest(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


def apply_receipt(conn: sql.Connection, store: str, data: dict[str, Any], received_at: float,
                  refunds: RefundProvider = RECORD_ONLY) -> bool:
    """Apply one `receipt` event's data from `store` (in the ingest transaction); whether
    it changed anything. PayloadError (nothing written) for a receipt to refuse."""
    r = contract.parse_receipt(data)
    row = conn.execute("SELECT store, zone, wave, payload FROM manifests WHERE id = ?",
                       (r.manifest,)).fetchone()
    if row is None:
        raise PayloadError(f"data.manifest: no manifest {r.manifest}")
    if row[0] != store:
        raise PayloadError(f"data.manifest: manifest {r.manifest} is not {store}'s")
    zone, wave = str(row[1]), str(row[2])
    if r.wave != wave:
        raise PayloadError(f"data.wave: manifest {r.manifest} is of the wave {wave},"
                           f" not {r.wave}")
    sent = contract.parse_downlink(f"xd/v1/{store}/orders", bytes(row[3]))
    assert isinstance(sent, contract.Manifest)
    lines = {ln.item: ln for ln in sent.lines}
    for ln in r.lines:
        want = lines[ln.item].qty if ln.item in lines else 0
        if ln.expected != want:
            raise PayloadError(f"data.lines: {ln.item} expected {ln.expected}, but manifest"
                               f" {r.manifest} brings {want}")
    digest = _digest(contract.receipt_data(r))
    had = conn.execute("SELECT digest FROM manifest_receipts WHERE manifest = ?",
                       (r.manifest,)).fetchone()
    if had is not None:
        if had[0] != digest:
            raise PayloadError(f"data.manifest: manifest {r.manifest} was received already,"
                               " with other figures")
        return False  # the same receipt under another event: it counts once
    conn.execute("INSERT INTO manifest_receipts (manifest, store, zone, wave, signed_by,"
                 " signed_at, received_at, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                 (r.manifest, store, zone, wave, r.signed_by, r.signed_at, received_at,
                  digest))
    diffs: dict[str, list[dict[str, Any]]] = {}
    for d in r.differences:
        diffs.setdefault(d.item, []).append({"issue": d.issue, "qty": d.qty, "note": d.note})
    short = shortfalls(r)
    conn.executemany(
        "INSERT INTO receipt_lines (manifest, item, expected, accepted, shortfall,"
        " differences) VALUES (?, ?, ?, ?, ?, ?)",
        [(r.manifest, ln.item, ln.expected, ln.accepted, short[ln.item],
          json.dumps(diffs.get(ln.item, []), ensure_ascii=False)) for ln in r.lines])
    _shortages(conn, store, zone, date.fromisoformat(wave), r, lines, short, diffs,
               received_at, refunds)
    _delivered(conn, zone, date.fromisoformat(wave), received_at)
    return True


def _riding(conn: sql.Connection, orders: set[int]) -> dict[int, tuple[float, str]]:
    """The pre-orders of `orders` still riding the wave: their order time and state."""
    if not orders:
        return {}
    marks = ", ".join("?" for _ in orders)
    return {int(o): (float(c), str(st)) for o, c, st in conn.execute(
        "SELECT w.order_id, o.created, o.state FROM wave_orders w JOIN orders o"
        f" ON o.id = w.order_id WHERE w.order_id IN ({marks})"
        " AND w.outcome IN ('held', 'moved') AND o.state NOT IN ('cancelled', 'expired')",
        tuple(sorted(orders)))}


def _price(conn: sql.Connection, store: str, item: str) -> int:
    """What the resident pays for a piece at the store (its catalogue's price), else the
    depot's price."""
    fen = retail.prices(conn, store).get(item)
    if fen is not None:
        return fen
    row = conn.execute("SELECT price FROM supply_items WHERE item = ?", (item,)).fetchone()
    return int(row[0]) if row is not None else 0


def _shortages(conn: sql.Connection, store: str, zone: str, wave: date,
               r: contract.Receipt, lines: dict[str, contract.ManifestLine],
               short: dict[str, int], diffs: dict[str, list[dict[str, Any]]],
               now: float, refunds: RefundProvider) -> None:
    riding = _riding(conn, {s.order for ln in lines.values() for s in ln.serves})
    hit: dict[int, list[tuple[str, int, int, int]]] = {}  # order -> (item, served, short, price)
    for item, ln in lines.items():
        if short.get(item, 0) <= 0:
            continue
        served = sorted((Served(s.order, s.qty) for s in ln.serves if s.order in riding),
                        key=lambda s: (riding[s.order][0], s.order))
        for order, qty in allocate(ln.qty, served, short[item]):
            bag = next(s.qty for s in served if s.order == order)
            hit.setdefault(order, []).append((item, bag, qty, _price(conn, store, item)))
    schedule = settings.get_zone(conn, zone)
    names = {i.item.id: i.name for i in settings.items(conn)}
    for order in sorted(riding):
        params = resident_notices.order_params(conn, store, wave, schedule)
        hits = hit.get(order, [])
        for item, bag, qty, _price_fen in hits:
            issues = [d["issue"] for d in diffs.get(item, []) if d["issue"] in NOT_ACCEPTED]
            resident_notices.add(conn, order, resident_notices.SHORT, f"{r.manifest}:{item}",
                                 params | {"item": item, "name": names.get(item, item),
                                           "qty": qty, "served": bag,
                                           "issues": issues or ["short"]}, now)
        if hits:
            amount = sum(qty * price for _, _, qty, price in hits)
            key = f"{r.manifest}:{order}"
            out = refunds.refund(RefundRequest(order, store, amount, REASON, key))
            rid = int(conn.execute(
                "INSERT INTO refunds (order_id, store, manifest, amount_fen, reason, provider,"
                " state, reference, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " RETURNING id", (order, store, r.manifest, amount, REASON, out.provider,
                                   out.state, out.reference, now)).fetchone()[0])
            conn.executemany(
                "INSERT INTO preorder_shortages (manifest, order_id, item, served, qty,"
                " price_fen, refund_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(r.manifest, order, item, bag, qty, price, rid)
                 for item, bag, qty, price in hits])
            resident_notices.add(conn, order, resident_notices.REFUND, str(rid),
                                 params | {"amount_fen": amount, "refund": rid}, now)
        waiting = riding[order][1] in ("open", "received")  # not handed over already
        if waiting and _still_brings(order, lines, hit.get(order, [])):
            resident_notices.add(conn, order, resident_notices.ARRIVED, wave.isoformat(),
                                 params, now)


def _still_brings(order: int, lines: dict[str, contract.ManifestLine],
                  hits: list[tuple[str, int, int, int]]) -> bool:
    """Whether anything of the order is at the store: a delivered piece not short, or a
    piece the store gives from its own stock."""
    lost = {item: qty for item, _, qty, _ in hits}
    return any(s.order == order and (s.qty - lost.get(item, 0) > 0 or s.from_stock > 0)
               for item, ln in lines.items() for s in ln.serves)


def _delivered(conn: sql.Connection, zone: str, wave: date, now: float) -> None:
    """A dispatched wave whose every manifest is received is delivered."""
    cyc = waves.get_cycle(conn, zone, wave)
    if cyc is None or cyc["state"] != "dispatched":
        return
    left = conn.execute(
        "SELECT COUNT(*) FROM manifests m WHERE m.zone = ? AND m.wave = ? AND NOT EXISTS"
        " (SELECT 1 FROM manifest_receipts r WHERE r.manifest = m.id)",
        (zone, wave.isoformat())).fetchone()[0]
    if int(left) == 0:
        waves.advance(conn, zone, wave, "delivered", now)


# ---------------------------------------------------------------- reads


def refunded_fen(conn: sql.Connection, order_id: int) -> int:
    """What the order's refunds add up to (the amount due at pickup less this)."""
    row = conn.execute("SELECT COALESCE(SUM(amount_fen), 0) FROM refunds WHERE order_id = ?",
                       (order_id,)).fetchone()
    return int(row[0])


def order_shortages(conn: sql.Connection, order_id: int) -> list[dict[str, Any]]:
    """An order's short lines: item, pieces short of those its bag should have had, the
    price and the refund that pays them back."""
    return [{"manifest": int(r[0]), "item": r[1], "served": int(r[2]), "qty": int(r[3]),
             "price_fen": int(r[4]), "refund": int(r[5])} for r in conn.execute(
        "SELECT manifest, item, served, qty, price_fen, refund_id FROM preorder_shortages"
        " WHERE order_id = ? ORDER BY manifest, item", (order_id,))]


def order_refunds(conn: sql.Connection, order_id: int) -> list[dict[str, Any]]:
    return [{"id": int(r[0]), "manifest": int(r[1]), "amount_fen": int(r[2]),
             "reason": r[3], "provider": r[4], "state": r[5], "created_at": float(r[6])}
            for r in conn.execute(
        "SELECT id, manifest, amount_fen, reason, provider, state, created_at FROM refunds"
        " WHERE order_id = ? ORDER BY id", (order_id,))]


def wave_receiving(conn: sql.Connection, zone: str, wave: date) -> dict[str, Any]:
    """A wave's receipts for the operator: per store, who signed when, the lines that
    differed, and the refunds."""
    stores: dict[str, dict[str, Any]] = {}
    for m, store, by, at in conn.execute(
            "SELECT manifest, store, signed_by, signed_at FROM manifest_receipts"
            " WHERE zone = ? AND wave = ? ORDER BY store", (zone, wave.isoformat())):
        stores[str(store)] = {"manifest": int(m), "signed_by": by, "signed_at": float(at),
                              "lines": [], "refunds": []}
    by_manifest = {v["manifest"]: v for v in stores.values()}
    for m, item, expected, accepted, shortfall, differences, name in conn.execute(
            "SELECT l.manifest, l.item, l.expected, l.accepted, l.shortfall, l.differences,"
            " i.name FROM receipt_lines l JOIN manifest_receipts r ON r.manifest = l.manifest"
            " LEFT JOIN supply_items i ON i.item = l.item WHERE r.zone = ? AND r.wave = ?"
            " ORDER BY l.manifest, l.item", (zone, wave.isoformat())):
        diffs = json.loads(differences)
        if diffs or expected != accepted:
            by_manifest[int(m)]["lines"].append(
                {"item": item, "name": name or item, "expected": int(expected),
                 "accepted": int(accepted), "shortfall": int(shortfall),
                 "differences": diffs})
    for m, oid, amount, state, provider in conn.execute(
            "SELECT f.manifest, f.order_id, f.amount_fen, f.state, f.provider FROM refunds f"
            " JOIN manifest_receipts r ON r.manifest = f.manifest WHERE r.zone = ? AND"
            " r.wave = ? ORDER BY f.id", (zone, wave.isoformat())):
        by_manifest[int(m)]["refunds"].append(
            {"order": int(oid), "amount_fen": int(amount), "state": state,
             "provider": provider})
    return stores
