"""Receiving a delivery against its manifest at the counter (docs/retail.md, "Receiving").

The clerk opens a manifest that came from the cloud, scans the pieces in (or sets each
line's count), records what is wrong per line (damaged, wrong item, expired on arrival,
with a note), and signs off with their own account. Short and over are not entered: they
are what the count leaves (arrived = good + the pieces set aside, against the manifest).

Nothing moves while counting: the draft is kept (a restart carries on with it). The
sign-off writes, in one transaction: a `delivery` movement per lot for the good pieces
(the manifest's batch and expiry), the `receipt` event, the receipt row that makes a
second sign-off impossible, and the pre-orders' bags held (edge/retail/holds.py).

`build_receipt`, `delivery_moves` and `bag_pieces` are pure.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, fields
from typing import Any

import msgspec

from xiaodian.wire.retail import (
    Manifest,
    ManifestLine,
    Movement,
    Receipt,
    ReceiptDifference,
    ReceiptLine,
)

from . import ledger

SCHEMA = """
-- The count under way per manifest (JSON {item: LineCount}), until it is signed off.
CREATE TABLE IF NOT EXISTS receiving_drafts (
    manifest INTEGER PRIMARY KEY, counts TEXT NOT NULL, updated REAL NOT NULL
);
-- A manifest signed off: never received twice. body = the receipt event's data.
CREATE TABLE IF NOT EXISTS receipts (
    manifest INTEGER PRIMARY KEY, signed_by TEXT NOT NULL, signed_at REAL NOT NULL,
    body TEXT NOT NULL
);
"""

SET_ASIDE = ("damaged", "wrong_item", "expired")  # arrived, not sellable as this item
FIELDS = ("good", *SET_ASIDE)
MAX_NOTE = 200


@dataclass
class LineCount:
    good: int = 0  # pieces taken into stock
    damaged: int = 0
    wrong_item: int = 0  # something else came in its place
    expired: int = 0  # expired on arrival
    note: str = ""
    counted: bool = False  # scanned or set by the clerk (a line nobody counted is not 0)

    @property
    def arrived(self) -> int:
        return self.good + self.damaged + self.wrong_item + self.expired


Draft = dict[str, LineCount]


def draft_from_json(text: str) -> Draft:
    known = {f.name for f in fields(LineCount)}
    return {item: LineCount(**{k: v for k, v in c.items() if k in known})
            for item, c in json.loads(text).items()}


def draft_to_json(d: Draft) -> str:
    return json.dumps({item: asdict(c) for item, c in d.items()}, sort_keys=True)


def to_count(m: Manifest) -> list[ManifestLine]:
    """The lines that bring pieces. A line of 0 only names pre-orders the store serves from
    its own stock (held from the manifest's arrival): nothing comes, nothing to count; the
    receipt says it expected 0 and accepted 0."""
    return [ln for ln in m.lines if ln.qty > 0]


def uncounted(m: Manifest, d: Draft) -> list[str]:
    return [ln.item for ln in to_count(m) if not d.get(ln.item, LineCount()).counted]


def build_receipt(m: Manifest, d: Draft, signed_by: str, signed_at: float) -> Receipt:
    lines, diffs = [], []
    for ln in m.lines:
        c = d.get(ln.item, LineCount())
        lines.append(ReceiptLine(ln.item, ln.qty, c.good))
        note = c.note.strip()[:MAX_NOTE]
        if c.arrived < ln.qty:
            diffs.append(ReceiptDifference(ln.item, "short", ln.qty - c.arrived, note))
        elif c.arrived > ln.qty:
            diffs.append(ReceiptDifference(ln.item, "over", c.arrived - ln.qty, note))
        for issue in SET_ASIDE:
            n = getattr(c, issue)
            if n > 0:
                diffs.append(ReceiptDifference(ln.item, issue, n, note))  # type: ignore[arg-type]
    return Receipt(m.id, m.wave, tuple(lines), tuple(diffs), signed_by, signed_at)


def delivery_moves(m: Manifest, d: Draft) -> list[Movement]:
    """The good pieces into stock, lot by lot in the manifest's order (pieces over the
    manifest go to its last lot), each naming the manifest."""
    moves = []
    for ln in m.lines:
        left = d.get(ln.item, LineCount()).good
        for k, lot in enumerate(ln.lots):
            n = left if k == len(ln.lots) - 1 else min(lot.qty, left)
            if n > 0:
                moves.append(Movement(ledger.new_id(), "delivery", ln.item, n, None, lot.batch,
                                      lot.expiry, None, f"manifest {m.id}"))
            left -= n
    return moves


def bag_pieces(m: Manifest, d: Draft) -> dict[tuple[int, str], int]:
    """{(order, item): pieces in the pre-order's bag}: the good pieces go to the line's
    pre-orders first, oldest first (the manifest's order), as the depot packed them."""
    out = {}
    for ln in m.lines:
        left = d.get(ln.item, LineCount()).good
        for s in ln.serves:
            take = min(s.qty, left)
            left -= take
            out[(s.order, ln.item)] = take
    return out


# ---------------------------------------------------------------- SQLite


def create(db: sqlite3.Connection) -> None:
    db.executescript(SCHEMA)


def manifest(db: sqlite3.Connection, manifest_id: int) -> Manifest | None:
    row = db.execute("SELECT body FROM manifests WHERE id = ?", (manifest_id,)).fetchone()
    return None if row is None else msgspec.json.decode(row[0], type=Manifest)


def load_draft(db: sqlite3.Connection, manifest_id: int) -> Draft:
    row = db.execute("SELECT counts FROM receiving_drafts WHERE manifest = ?",
                     (manifest_id,)).fetchone()
    return {} if row is None else draft_from_json(row[0])


def save_draft(db: sqlite3.Connection, manifest_id: int, d: Draft, wall: float) -> None:
    db.execute("INSERT INTO receiving_drafts (manifest, counts, updated) VALUES (?, ?, ?)"
               " ON CONFLICT (manifest) DO UPDATE"
               " SET counts = excluded.counts, updated = excluded.updated",
               (manifest_id, draft_to_json(d), wall))


def receipt_of(db: sqlite3.Connection, manifest_id: int) -> tuple[str, float] | None:
    """(signed_by, signed_at) of a manifest received already."""
    row = db.execute("SELECT signed_by, signed_at FROM receipts WHERE manifest = ?",
                     (manifest_id,)).fetchone()
    return None if row is None else (str(row[0]), float(row[1]))


def write_receipt(db: sqlite3.Connection, r: Receipt, data: dict[str, Any]) -> None:
    """The receipt row (a second one for the manifest fails: its primary key) and the
    draft gone."""
    db.execute("INSERT INTO receipts (manifest, signed_by, signed_at, body) VALUES (?, ?, ?, ?)",
               (r.manifest, r.signed_by, r.signed_at, json.dumps(data, sort_keys=True)))
    db.execute("DELETE FROM receiving_drafts WHERE manifest = ?", (r.manifest,))


def received_ids(db: sqlite3.Connection) -> set[int]:
    return {int(r[0]) for r in db.execute("SELECT manifest FROM receipts")}
