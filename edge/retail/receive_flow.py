"""The clerk receiving a delivery against its manifest: open it, count (scans and the
page's − / + per line), set pieces aside with a reason, sign off (edge/retail/receiving.py
holds the rules; this wires them to the counter and the one-transaction write).

The manifest open on the counter is kept in `retail_meta` and its count in
`receiving_drafts`, so a restarted agent shows the same count.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from edge.config import Clerk
from edge.retail import holds, ledger, receiving
from edge.retail.clerks import pin_matches
from edge.retail.desk import Desk, RetailError, whole_number
from edge.retail.verify import RateLimiter
from edge.words import Clock, Day
from xiaodian.i18n import N_, Message
from xiaodian.wire.retail import MAX_QTY, Manifest, receipt_data

OPEN_KEY = "receiving_open"


class ReceiveFlow:
    def __init__(self, desk: Desk, clerks: tuple[Clerk, ...]) -> None:
        self.desk = desk
        self.clerks = {c.account: c for c in clerks}
        # Wrong PINs: 5 within a minute pause sign-off, 30 s doubling (as pickup codes).
        self.pins = RateLimiter()

    @property
    def open_id(self) -> int | None:
        v = ledger.meta(self.desk.db, OPEN_KEY)
        return None if v is None else int(v)

    def _manifest(self, manifest_id: int) -> Manifest:
        m = receiving.manifest(self.desk.db, manifest_id)
        if m is None:
            raise RetailError(Message(N_("No manifest %(manifest)s at this terminal."),
                                      {"manifest": manifest_id}))
        done = receiving.receipt_of(self.desk.db, manifest_id)
        if done is not None:
            raise RetailError(Message(
                N_("Manifest %(manifest)s was received already, signed off by %(clerk)s at"
                   " %(time)s: it cannot be received again."),
                {"manifest": manifest_id, "clerk": done[0], "time": Clock(done[1])}),
                reason="received_already")
        return m

    # ------------------------------------------------------------ the page

    def handle(self, body: Mapping[str, Any]) -> dict[str, Any]:
        op = body.get("op")
        if op == "open":
            return self.open(whole_number(body, "manifest"))
        current = self.open_id
        if current is None or body.get("manifest") != current:
            raise RetailError(Message(N_("Open the manifest first.")))
        if op == "set":
            return self.set(current, body)
        if op == "close":
            self.desk.commit([], lambda db: ledger.del_meta(db, OPEN_KEY))
            return self.desk.say(True, Message(N_("Receiving paused")),
                                 Message(N_("The count is kept; open the manifest to go on.")))
        if op == "sign":
            return self.sign(current, body.get("clerk"), body.get("pin"))
        raise RetailError(Message(N_("Unknown request.")))

    def open(self, manifest_id: int) -> dict[str, Any]:
        m = self._manifest(manifest_id)
        self.desk.commit([], lambda db: ledger.set_meta(db, OPEN_KEY, str(m.id)))
        return self.desk.say(True, Message(N_("Receiving manifest %(manifest)s"),
                                           {"manifest": m.id}),
                             Message(N_("Scan each piece, or set the count per line.")),
                             manifest=m.id)

    def set(self, manifest_id: int, body: Mapping[str, Any]) -> dict[str, Any]:
        """One line's count, or pieces set aside, or its note, as the page shows them."""
        m = self._manifest(manifest_id)
        item = body.get("item")
        if not isinstance(item, str) or item not in {ln.item for ln in receiving.to_count(m)}:
            raise RetailError(Message(N_("Not a line of this manifest.")))
        d = receiving.load_draft(self.desk.db, m.id)
        c = d.setdefault(item, receiving.LineCount())
        field = body.get("field")
        if field == "note":
            note = body.get("value")
            if not isinstance(note, str) or not note.isprintable():
                raise RetailError(Message(N_("The note cannot be saved.")))
            c.note = note.strip()[:receiving.MAX_NOTE]
        elif field in receiving.FIELDS:
            value = whole_number(body, "value")
            if value > MAX_QTY:
                raise RetailError(Message(N_("Too many pieces.")))
            setattr(c, str(field), value)
        else:
            raise RetailError(Message(N_("Unknown request.")))
        c.counted = True
        self._save(m.id, d)
        return {"ok": True, "manifest": m.id}

    def _save(self, manifest_id: int, d: receiving.Draft) -> None:
        wall, _ = self.desk.now()
        self.desk.commit([], lambda db: receiving.save_draft(db, manifest_id, d, wall))

    # ------------------------------------------------------------ the scanner

    def scan(self, item: str, expiry: date | None, source: str) -> dict[str, Any] | None:
        """A product scanned while a manifest is open: one piece of its line counted (as
        expired on arrival if its label's date has passed); None when none is open."""
        current = self.open_id
        if current is None:
            return None
        desk = self.desk
        m = self._manifest(current)
        line = next((ln for ln in receiving.to_count(m) if ln.item == item), None)
        if line is None:
            return desk.say(False, Message(N_("%(name)s: not on manifest %(manifest)s"),
                                           {"name": desk.name(item), "manifest": m.id}),
                            Message(N_("Set it aside; if it came in place of a line, count it"
                                       " there as a wrong item.")), source=source, item=item)
        wall, _ = desk.now()
        d = receiving.load_draft(desk.db, m.id)
        c = d.setdefault(item, receiving.LineCount())
        c.counted = True
        late = expiry is not None and expiry < desk.today(wall)
        if late:
            c.expired += 1
        else:
            c.good += 1
        self._save(m.id, d)
        if late:
            return desk.say(False, Message(N_("%(name)s: expired on arrival"),
                                           {"name": line.name}),
                            Message(N_("Its label says %(date)s. Counted as expired, not taken"
                                       " into stock; set it aside."),
                                    {"date": Day(expiry.isoformat() if expiry else "")}),
                            source=source, item=item, manifest=m.id)
        return desk.say(True, Message(N_("%(name)s: %(n)s of %(expected)s"),
                                      {"name": line.name, "n": c.good, "expected": line.qty}),
                        None, source=source, item=item, manifest=m.id)

    # ------------------------------------------------------------ sign-off

    def sign(self, manifest_id: int, account: Any, pin: Any) -> dict[str, Any]:
        desk = self.desk
        m = self._manifest(manifest_id)
        clerk = self.clerks.get(account) if isinstance(account, str) else None
        if not self.clerks:
            raise RetailError(Message(N_("No clerk accounts on this terminal: ask the owner"
                                         " to add yours ([[retail.clerks]]).")))
        wall, _ = desk.now()
        wait = self.pins.blocked(wall)
        if wait > 0:
            raise RetailError(Message(N_("Too many wrong PINs: try again in %(s)s s."),
                                      {"s": round(wait)}), reason="pin_paused")
        if clerk is None or not isinstance(pin, str) or not pin_matches(clerk.pin_hash, pin):
            self.pins.failure(wall)
            raise RetailError(Message(N_("Choose your name and enter your PIN.")),
                              reason="bad_pin")
        self.pins.success()
        d = receiving.load_draft(desk.db, m.id)
        missing = receiving.uncounted(m, d)
        if missing:
            raise RetailError(Message(
                N_("Not counted yet: %(names)s. Scan them, or set their count (0 if none"
                   " came)."), {"names": "、".join(ln.name for ln in m.lines
                                                   if ln.item in missing)}),
                reason="uncounted")
        r = receiving.build_receipt(m, d, clerk.account, wall)
        data = receipt_data(r)  # checked as the cloud will check it
        events, write_moves = desk.moves(receiving.delivery_moves(m, d), wall)
        bags = receiving.bag_pieces(m, d)

        def write(db: Any) -> None:
            write_moves(db)
            receiving.write_receipt(db, r, data)
            holds.set_bags(db, m.id, bags)
            ledger.del_meta(db, OPEN_KEY)
        desk.commit([*events, ("ledger", "receipt", data)], write)
        desk.check_expiry()
        short = [x for x in r.differences if x.issue != "over"]
        return desk.say(True, Message(N_("Manifest %(manifest)s received"), {"manifest": m.id}),
                        Message(N_("%(n)s pieces into stock; %(d)s differences reported."),
                                {"n": sum(ln.accepted for ln in r.lines),
                                 "d": len(r.differences)}),
                        manifest=m.id, short=len(short))

    # ------------------------------------------------------------ what the page shows

    def view(self) -> dict[str, Any] | None:
        current = self.open_id
        if current is None:
            return None
        m = receiving.manifest(self.desk.db, current)
        if m is None:
            return None
        d = receiving.load_draft(self.desk.db, m.id)
        lines = []
        for ln in receiving.to_count(m):
            c = d.get(ln.item, receiving.LineCount())
            diff = c.arrived - ln.qty
            lines.append({"item": ln.item, "name": ln.name, "expected": ln.qty,
                          "good": c.good, "damaged": c.damaged, "wrong_item": c.wrong_item,
                          "expired": c.expired, "note": c.note, "counted": c.counted,
                          "preorders": sum(s.qty for s in ln.serves),
                          "gap": None if not c.counted or diff == 0 else
                          Message(N_("%(n)s short"), {"n": -diff}) if diff < 0 else
                          Message(N_("%(n)s over"), {"n": diff})})
        return {"manifest": m.id, "when": Day(m.delivery), "lines": lines,
                "clerks": sorted(self.clerks)}
