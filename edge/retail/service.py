"""Retail at the terminal, wired to the agent's database and fridges (owned by its thread).

Every change is one SQLite transaction on the agent's own connection: the ledger row,
the order's new state and the outbox events the cloud will get commit together, so with
the network down everything goes on and is sent later, exactly once. The counter page and
the serial scanner both arrive here through the agent's loop (see edge.kiosk for why).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from edge.config import PickupSettings, RetailSettings
from edge.retail import ledger
from edge.retail.handover import Handover, LaneCheck, LaneReading, LaneWatch, PickLine, parse_lanes
from edge.retail.verify import Accepted, OrderState, RateLimiter, Refused, check_code
from edge.scan.errors import PickupError, ScanError
from edge.scan.parse import Scan, parse_scan
from edge.scan.redeemed import RedeemedCodes
from edge.serial_link import DeviceCommand, FridgeReader
from edge.store import EdgeStore, NewEvent, NewReading
from edge.wallclock import WallClock
from firmware_bridge import codec
from xiaodian.wire.pickup import PickupCodec
from xiaodian.wire.retail import (
    MAX_QTY,
    Cancel,
    Catalogue,
    CatalogueItem,
    Downlink,
    ExpiryLine,
    Movement,
    Order,
    OrderLine,
    OrderProgress,
    expiry_data,
    movement_data,
    pickup_refusal_data,
    progress_data,
)

log = logging.getLogger(__name__)

# "stock": a product scan only names the item for the stock form (adjust, waste by count).
MODES = ("sale", "receive", "waste", "stock")
UNLOCK_S = 60  # the lane door stays unlocked this long for the clerk to take the items
DELIVERY_NEXT = {"received": "packed", "packed": "out_for_delivery",
                 "out_for_delivery": "delivered"}
RETAIL_DEVICES = ("ledger", "orders", "counter")
# Refusals that count towards the rate limit: the code itself is not genuine.
GUESSES = frozenset({"malformed", "oversize", "wrong_store", "unknown_key", "bad_mac"})


def local_date(wall: float) -> date:
    return datetime.fromtimestamp(wall).date()


@dataclass
class _Unlock:
    fridge: str
    command: DeviceCommand


class RetailError(Exception):
    """A request the clerk made that cannot be done; the message says why."""


class Retail:
    def __init__(
        self,
        store: EdgeStore,
        store_id: str,
        clock: WallClock,
        pickup: PickupSettings | None,
        settings: RetailSettings,
        fridges: Mapping[str, FridgeReader],
        *,
        today: Callable[[float], date] = local_date,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.store = store
        self.db = store.db
        self.store_id = store_id
        self.clock = clock
        self.settings = settings
        self.fridges = fridges
        self.today = today
        self.codec = (PickupCodec(store_id, pickup.key(), key_id=pickup.key_id)
                      if pickup is not None else None)
        self.limiter = limiter or RateLimiter()
        self.lanes = LaneWatch()
        ledger.create(self.db)
        self.redeemed = RedeemedCodes(self.db)
        self.catalogue = ledger.load_catalogue(self.db)
        self.mode = "sale"
        self.verdict: dict[str, Any] = {"seq": 0}
        self.handover: Handover | None = None
        self.nonce = 0  # of the code that started the handover: kept with the redemption
        self.unlocks: list[_Unlock] = []
        self.version = 0  # bumps on every change the counter page shows
        self.rate_limit_reported = 0.0
        self.rejected = 0
        self._expiry_day: date | None = None
        self._saved_handover: str | None = None  # as last written to the `handover` table
        self._resume: list[str] = []  # fridges to unlock again after a restart
        self._load_lanes()
        self._restore()

    # ------------------------------------------------------------ helpers

    def _now(self) -> tuple[float, bool]:
        return self.clock.read()

    def _commit(self, events: list[tuple[str, str, dict[str, Any]]],
                extra: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """Outbox events (device, type, data) and `extra` rows in one transaction."""
        wall, synced = self._now()
        self.store.add([NewEvent(d, t, None, None, wall, synced, data) for d, t, data in events],
                       extra=extra)
        self.version += 1

    def _moves(self, moves: list[Movement], wall: float) -> tuple[
            list[tuple[str, str, dict[str, Any]]], Callable[[sqlite3.Connection], None]]:
        events = [("ledger", "stock", movement_data(m)) for m in moves]

        def write(db: sqlite3.Connection) -> None:
            for m in moves:
                ledger.write_movement(db, m, wall)
        return events, write

    def _say(self, ok: bool, title: str, message: str = "", **extra: Any) -> dict[str, Any]:
        wall, _ = self._now()
        self.verdict = {"seq": self.verdict["seq"] + 1, "ok": ok, "title": title,
                        "message": message, "at": wall, **extra}
        self.version += 1
        return self.verdict

    def order_state(self, order_id: int) -> OrderState | None:
        row = self.db.execute("SELECT id, mode, state, expires, note FROM orders WHERE id=?",
                              (order_id,)).fetchone()
        return None if row is None else OrderState(row[0], row[1], row[2], row[3], row[4])

    def order(self, order_id: int) -> Order | None:
        row = self.db.execute("SELECT id, mode, customer, created, expires, lines FROM orders "
                              "WHERE id=?", (order_id,)).fetchone()
        if row is None:
            return None
        lines = tuple(OrderLine(i, q) for i, q in json.loads(row[5]))
        return Order(row[0], self.store_id, row[1], row[2], row[3], row[4], lines)

    def _set_state(self, db: sqlite3.Connection, order_id: int, state: str, wall: float,
                   note: str | None = None) -> None:
        db.execute("UPDATE orders SET state=?, updated=?, note=COALESCE(?, note) WHERE id=?",
                   (state, wall, note, order_id))

    def _state_writer(self, order_id: int, state: str,
                      wall: float) -> Callable[[sqlite3.Connection], None]:
        return lambda db: self._set_state(db, order_id, state, wall)

    def _name(self, item: str) -> str:
        c = self.catalogue.get(item)
        return c.name if c else item

    # ------------------------------------------------------------ from the cloud

    def downlink(self, msg: Downlink) -> str:
        """Store one catalogue, order or cancellation; returns what was done (for the log).
        A redelivered order or an older catalogue is recognised and ignored."""
        wall, _ = self._now()
        if isinstance(msg, Catalogue):
            current = ledger.catalogue_version(self.db)
            if current is not None and msg.version <= current:
                return f"catalogue version {msg.version} ignored (have {current})"
            self._commit([], lambda db: ledger.replace_catalogue(db, msg))
            self.catalogue = ledger.load_catalogue(self.db)
            return f"catalogue version {msg.version} ({len(msg.items)} items)"
        if isinstance(msg, Cancel):
            return self._cancel(msg, wall)
        if self.order_state(msg.id) is not None:
            return f"order {msg.id} already stored (redelivery)"
        lines = json.dumps([[ln.item, ln.qty] for ln in msg.lines])

        def insert(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO orders VALUES (?,?,?,?,?,?,'received',?,NULL)",
                       (msg.id, msg.mode, msg.customer, msg.created, msg.expires, lines, wall))
        self._commit([("orders", "order", progress_data(OrderProgress(msg.id, "received")))],
                     insert)
        return f"order {msg.id} ({msg.mode}, {len(msg.lines)} lines) stored"

    def _cancel(self, msg: Cancel, wall: float) -> str:
        st = self.order_state(msg.order)
        if st is None:
            # Remember it, so the order itself arriving late (out of order, or redelivered
            # after it was parked) is not taken for a live one.
            def tombstone(db: sqlite3.Connection) -> None:
                db.execute("INSERT INTO orders VALUES (?,'unknown','',?,?,'[]','cancelled',?,?)",
                           (msg.order, wall, wall, wall,
                            msg.reason or "cancelled before it arrived"))
            self._commit([], tombstone)
            return f"cancellation of unknown order {msg.order} kept: the order will be refused"
        if st.state not in ("received",):
            return f"cancellation of order {msg.order} ignored: it is {st.state}"
        h = self.handover
        ours = h is not None and h.order == msg.order
        checks: list[tuple[str, str, dict[str, Any]]] = []
        hand_back: Callable[[], None] = lambda: None  # noqa: E731
        if h is not None and ours:  # what left the fridge meanwhile is still reported
            checks, _, hand_back = self._release(
                h, f"during the handover of order {h.order}, cancelled by the cloud")

        def write(db: sqlite3.Connection) -> None:
            self._set_state(db, msg.order, "cancelled", wall, msg.reason)
            if ours:
                ledger.clear_handover(db)
        self._commit([*checks, ("orders", "order", progress_data(
            OrderProgress(msg.order, "cancelled", note=msg.reason or None)))], write)
        hand_back()
        if ours:
            self.handover, self._saved_handover = None, None
            self._say(False, f"Order {msg.order} was just cancelled", "Do not hand it over.")
        return f"order {msg.order} cancelled"

    def reject(self, topic: str, payload: bytes, reason: str) -> None:
        """A downlink message that does not parse: kept with its reason, never retried."""
        wall, _ = self._now()
        self.rejected += 1

        def park(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO retail_rejects VALUES (?,?,?,?)",
                       (wall, topic, reason[:500], payload[:65536]))
        self.store.add([], extra=park)

    # ------------------------------------------------------------ from the devices

    def on_records(self, records: list[NewReading | NewEvent]) -> None:
        """Fresh records the agent just stored: scans, doors, lanes, locks."""
        for r in records:
            if not isinstance(r, NewEvent):
                continue
            if r.type == "scan":
                self.scan(r.transient or str(r.data.get("line", "")), source=r.device)
            else:
                self._fridge_event(r.device, r.type, r.data)
        self.save_handover()

    def _fridge_event(self, device: str, type_: str, data: Mapping[str, Any]) -> None:
        if type_ == "lanes":
            self.lane_weights(device, parse_lanes(data))
        elif type_ == "door":
            # A state report (the door as it is when the link comes up) is no new opening
            # for the cold-chain rules, but for a handover it is the truth: after a restart
            # it may be all there is to say the door was shut meanwhile.
            self.door(device, bool(data.get("open")))
        elif (type_ == "lock" and data.get("locked") is False
              and self.handover is not None and device in self.handover.fridges):
            self.handover.unlocked(device, True)
            self.version += 1

    # ------------------------------------------------------------ across a restart

    def save_handover(self) -> None:
        """Write the handover to the `handover` table when it changed (the order, each
        fridge's phase, the lane weights at the unlock and since, with the last stored
        event of each fridge it has seen). Called after each batch of records and each
        loop pass, so a restart (a power cut with the door open) loses none of it."""
        h = self.handover
        text = None if h is None else json.dumps(h.state(), sort_keys=True)
        if text == self._saved_handover:
            return
        if h is None or text is None:
            self.store.add([], extra=ledger.clear_handover)
        else:
            # Every event stored so far has been applied: a restart replays only later ones.
            # (Events that changed nothing since the last save replay as no-ops from it.)
            through = {}
            for fridge in h.fridges:
                row = self.db.execute("SELECT boot, seq FROM events WHERE device=? "
                                      "ORDER BY boot DESC, seq DESC LIMIT 1", (fridge,)).fetchone()
                if row is not None:
                    through[fridge] = [int(row[0]), int(row[1])]
            wall, _ = self._now()
            order, nonce, marks = h.order, self.nonce, json.dumps(through, sort_keys=True)
            self.store.add([], extra=lambda db: ledger.save_handover(
                db, order, nonce, text, marks, wall))
        self._saved_handover = text

    def _load_lanes(self) -> None:
        """The lane watch starts from the last settled weight of each lane stored before
        this process started: a fridge that did not reboot reports a lane again only when
        it changes, so without this the next drop (and the next handover's baseline) would
        have nothing to be measured against. Sales and waste of a lane's item recorded
        after that weight was stored are credited again (they explain a drop to come)."""
        try:
            weights = ledger.last_lane_weights(self.db)
        except sqlite3.Error:
            log.exception("retail: could not read the last lane weights; starting without")
            return
        for key, (grams, wall) in weights.items():
            self.lanes.settled[key] = grams
            for c in self.catalogue.values():
                if c.location is not None and (c.location.fridge, c.location.lane) == key:
                    n = ledger.pieces_out_since(self.db, c.item, wall)
                    if n:
                        self.lanes.explain(key, n)
        if weights:
            log.info("retail: lane weights of %d lanes restored from stored events",
                     len(weights))

    def _restore(self) -> None:
        """Carry on with the handover the last run left on the counter. Fridge events it
        stored but may not have applied (killed in between) are applied from the database;
        what a fridge logged while no agent listened arrives as usual once it reconnects
        (door shut meanwhile: measured from the lanes as they are now against the weights
        at the unlock)."""
        saved = ledger.load_handover(self.db)
        if saved is None:
            return
        nonce, state, through = saved
        try:
            h = Handover.from_state(json.loads(state))
            marks = {str(k): (int(v[0]), int(v[1])) for k, v in json.loads(through).items()}
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            log.exception("retail: the saved handover is unreadable; dropped (its order still "
                          "waits for a scan)")
            self.store.add([], extra=ledger.clear_handover)
            return
        st = self.order_state(h.order)
        if st is None or st.state != "received":
            self.store.add([], extra=ledger.clear_handover)
            return
        self.handover, self.nonce = h, nonce
        for fridge in sorted(h.fridges):
            boot, seq = marks.get(fridge, (0, 0))
            for type_, data in self.db.execute(
                    "SELECT type, data FROM events WHERE device=? AND type IN "
                    "('door', 'lanes', 'lock') AND (boot > ? OR (boot = ? AND seq > ?)) "
                    "ORDER BY boot, seq", (fridge, boot, boot, seq)).fetchall():
                self._fridge_event(fridge, type_, json.loads(data))
        # An unlock that may never have reached the fridge, or that timed out while the
        # agent was down, is sent again; a door already seen open needs none.
        self._resume = [f for f, fs in sorted(h.fridges.items())
                        if fs.phase in ("locked", "unlocking", "unlocked")
                        and f in self.fridges]
        self._saved_handover = ""  # written again at the first save, with its new marks
        log.info("retail: handover of order %d resumed after a restart (%s)", h.order,
                 ", ".join(f"{k} {f.phase}" for k, f in sorted(h.fridges.items())))
        self._say(True, f"Order {h.order}: {h.customer}",
                  "Handover resumed after the terminal restarted.", order=h.order,
                  source="restart", handover=h.view())

    def _unlock(self, h: Handover, fridge: str) -> None:
        reader = self.fridges.get(fridge)
        if reader is None:
            h.unlocked(fridge, False, f"{fridge} is not connected to this terminal")
            return
        h.unlocking(fridge)
        self.unlocks.append(_Unlock(fridge, reader.send_command(
            codec.UNLOCK, codec.pack_unlock(UNLOCK_S))))

    def door(self, fridge: str, is_open: bool) -> None:
        if self.handover is not None and fridge in self.handover.fridges:
            self.handover.door(fridge, is_open)
            self.version += 1

    def lane_weights(self, fridge: str, readings: list[LaneReading]) -> None:
        h = self.handover
        busy = h is not None and fridge in h.fridges
        if h is not None and busy:
            h.lanes(fridge, readings)  # its lane checks go out when it ends
        # Only the lanes the handover is weighing are its business: any other lane (in
        # this fridge or elsewhere) is checked by the lane watch as usual.
        covered = h.covered() if h is not None else set()
        checks: list[LaneCheck] = self.lanes.feed(fridge, readings, self._item_at, covered)
        if checks:
            self._commit([(c.fridge, "lane_check", c.data()) for c in checks])
        if busy:
            self.version += 1

    def _release(self, h: Handover, phrase: str, handed: Mapping[str, int] | None = None
                 ) -> tuple[list[tuple[str, str, dict[str, Any]]], list[LaneCheck],
                            Callable[[], None]]:
        """A handover ends before its weighing did: Cancel or the cloud's cancellation
        (`handed` None: nothing was handed over), or a confirmation with a door still open
        or a lane still moving. Once a door was opened nothing may vanish: each lane it
        weighed with a settled weight gets its `lane_check` now, and a lane not settled
        yet, or behind a door still open, goes back to the lane watch, to be measured from
        what should be left (or the weight just checked). Returns the events, the checks
        and what to call once they are committed (hands the lanes back)."""
        if not h.opened():
            return [], [], lambda: None
        checks, later = h.unweighed_checks(phrase, handed)

        def hand_back() -> None:
            for key, grams in later:
                self.lanes.released(key, grams, h.order, phrase)
        return [(c.fridge, "lane_check", c.data()) for c in checks], checks, hand_back

    def _item_at(self, key: tuple[str, int]) -> tuple[str, int] | None:
        for c in self.catalogue.values():
            if c.location and (c.location.fridge, c.location.lane) == key:
                return c.name, c.location.unit_grams
        return None

    # ------------------------------------------------------------ scans

    def scan(self, line: str, source: str = "counter") -> dict[str, Any]:
        """One scan (serial scanner or the page): the verdict the counter page shows."""
        try:
            scan = parse_scan(line)
        except PickupError:
            return self._pickup(line.strip(" \t\r\n"), source)  # refused, and counted
        except ScanError as exc:
            return self._say(False, "Cannot read this barcode", exc.message, source=source)
        if scan.kind == "pickup":
            return self._pickup(scan.data, source)
        if scan.kind in ("product", "variable_measure", "gs1"):
            return self._product(scan, source)
        return self._say(False, "Not a product or pickup code",
                         f"{scan.symbology_name or 'unknown'} barcode: {scan.data[:40]}",
                         source=source)

    def _pickup(self, code: str, source: str) -> dict[str, Any]:
        wall, _ = self._now()
        wait = self.limiter.blocked(wall)
        if wait > 0:
            # One refusal event per lockout, not one per scan of a bot at the scanner.
            if self.rate_limit_reported != self.limiter.locked_until:
                self.rate_limit_reported = self.limiter.locked_until
                self._commit([("counter", "pickup",
                               pickup_refusal_data("rate_limited"))])
            return self._say(False, "Too many failed pickup scans",
                             f"Scanning paused: try again in {int(wait) + 1} s. If a customer "
                             "keeps showing bad codes, call support.", reason="rate_limited",
                             source=source)
        verdict = check_code(self.codec, code, wall, self.order_state, self.redeemed.redeemed_at)
        if isinstance(verdict, Refused):
            # Only what could be someone guessing counts: a genuine code for an order
            # that is cancelled or not yet here is no attack, and must not lock the clerk out.
            pause = self.limiter.failure(wall) if verdict.reason in GUESSES else 0.0
            self._commit([("counter", "pickup", pickup_refusal_data(verdict.reason))])
            msg = verdict.message
            if pause:
                msg += f" Too many failed scans: scanning paused for {int(pause)} s."
            return self._say(False, "Do not hand over", msg, reason=verdict.reason,
                             source=source)
        self.limiter.success()
        return self._start_handover(verdict, source)

    def _start_handover(self, ok: Accepted, source: str) -> dict[str, Any]:
        order = self.order(ok.order.id)
        assert order is not None
        h = self.handover
        if h is not None and h.order != order.id:
            return self._say(False, f"Finish order {h.order} first",
                             f"Confirm or cancel the handover of order {h.order} ({h.customer})"
                             f" before starting order {order.id}.", reason="busy", source=source,
                             order=h.order)
        if h is None:
            lines = [PickLine(ln.item, self._name(ln.item), ln.qty,
                              self.catalogue[ln.item].location
                              if ln.item in self.catalogue else None) for ln in order.lines]
            h = Handover(order.id, order.customer, lines, {})
            for ln in lines:  # weights before the unlock: the last settled ones we know
                if ln.location is not None:
                    key = (ln.location.fridge, ln.location.lane)
                    if key in self.lanes.settled:
                        h.baseline[key] = self.lanes.settled[key]
            self.handover = h
            self.nonce = ok.ticket.nonce
            for fridge in sorted(h.fridges):
                self._unlock(h, fridge)
        return self._say(True, f"Order {order.id}: {order.customer}", "Hand over:",
                         order=order.id, source=source, handover=h.view())

    def _product(self, scan: Scan, source: str) -> dict[str, Any]:
        h = self.handover
        if h is not None:
            # During a handover a product scan is the clerk checking an item: no stock moves.
            checked = self._item_key(scan) or ""
            ordered = {ln.item: ln.qty for ln in h.lines}.get(checked)
            return self._say(ordered is not None, self._name(checked),
                             f"In order {h.order}: {ordered} ordered." if ordered is not None
                             else f"NOT in order {h.order}.", source=source, order=h.order)
        item = self._item_key(scan)
        cat = self.catalogue.get(item or "")
        if item is None or cat is None:
            return self._say(False, "Item not in the catalogue",
                             f"{item or scan.data}: not sold here yet; nothing recorded.",
                             source=source)
        wall, _ = self._now()
        if self.mode == "stock":
            return self._say(True, cat.name, "Set the pieces and the reason, then Record.",
                             source=source, item=item, batch=scan.batch,
                             expiry=scan.expiry.isoformat() if scan.expiry else None,
                             stock_item=True)
        if self.mode == "receive":
            expiry = (scan.expiry.isoformat() if scan.expiry else
                      (self.today(wall) + timedelta(days=cat.shelf_life_days)).isoformat())
            moves = [Movement(ledger.new_id(), "delivery", item, 1, scan.weight_g, scan.batch,
                              expiry, None, None)]
        else:
            lots = ledger.lots(self.db, item)
            if scan.batch is not None:  # the label names its lot: take it from that one
                lots = [lot for lot in lots if lot.batch == scan.batch] or lots
            moves = ledger.outgoing(self.mode, lots, item, 1, grams=scan.weight_g)
            if cat.location is not None:
                self.lanes.explain((cat.location.fridge, cat.location.lane), 1)
        self._record(moves)
        m = moves[0]
        detail = ", ".join(p for p in (
            f"batch {m.batch}" if m.batch else "", f"expires {m.expiry}" if m.expiry else "",
            f"{m.grams} g" if m.grams else "") if p)
        return self._say(True, f"{self.mode.capitalize()}: {cat.name}", detail, source=source,
                         item=item)

    @staticmethod
    def _item_key(scan: Scan) -> str | None:
        if scan.kind == "variable_measure" and scan.item is not None:
            return f"in:{int(scan.item)}"
        return scan.gtin

    def _record(self, moves: list[Movement]) -> None:
        wall, _ = self._now()
        events, write = self._moves(moves, wall)
        self._commit(events, write)
        self.check_expiry()

    # ------------------------------------------------------------ clerk actions

    def handle(self, action: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """A request from the counter page; RetailError becomes a red verdict."""
        try:
            if action == "scan":
                code = body.get("code")
                if not isinstance(code, str) or not code.strip():
                    raise RetailError("Nothing was scanned.")
                return self.scan(code[:600], source="page")
            if action == "mode":
                if body.get("mode") not in MODES:
                    raise RetailError(f"mode must be one of {', '.join(MODES)}")
                self.mode = str(body["mode"])
                self.version += 1
                return {"ok": True, "mode": self.mode}
            if action == "confirm":
                return self.confirm(_int(body, "order"), _quantities(body.get("quantities")))
            if action == "abort":
                return self.abort()
            if action == "delivery":
                return self.advance_delivery(_int(body, "order"))
            if action == "adjust":
                return self.adjust(body)
            if action == "waste":
                return self.waste(body)
            raise RetailError(f"unknown action {action!r}")
        except RetailError as exc:
            return self._say(False, "Not done", str(exc))

    def confirm(self, order_id: int, handed: dict[str, int] | None) -> dict[str, Any]:
        """The clerk confirms the handover: stock moves, the order is picked up, the code
        is spent, the cloud hears it (all one transaction)."""
        h = self.handover
        if h is None or h.order != order_id:
            raise RetailError(f"Order {order_id} is not being handed over.")
        taken = h.taken()
        qty: dict[str, int] = {}
        for ln in h.lines:  # what the clerk says, else what the lanes measured, else ordered
            measured = taken[ln.item]
            qty[ln.item] = (handed or {}).get(ln.item, ln.qty if measured is None else measured)
        diffs = tuple((ln.item, qty[ln.item] - ln.qty) for ln in h.lines
                      if qty[ln.item] != ln.qty)
        wall, _ = self._now()
        moves: list[Movement] = []
        for ln in h.lines:
            n = qty[ln.item]
            if n > 0:
                moves += ledger.outgoing("pickup", ledger.lots(self.db, ln.item), ln.item, n,
                                         order=order_id)
        note = "handed over with differences" if diffs else None
        events, write = self._moves(moves, wall)
        events += [(c.fridge, "lane_check", c.data()) for c in h.checks()]
        unweighed, _, hand_back = self._release(  # a door still open, a lane still moving
            h, f"during the handover of order {order_id}, confirmed before it was weighed", qty)
        events += unweighed
        events.append(("orders", "order", progress_data(
            OrderProgress(order_id, "picked_up", diffs, note))))
        st = self.order_state(order_id)

        def write_all(db: sqlite3.Connection) -> None:
            write(db)
            self._set_state(db, order_id, "picked_up", wall)
            db.execute("INSERT INTO pickup_redeemed (store, order_id, nonce, redeemed_at) "
                       "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                       (self.store_id, order_id, self.nonce, wall))
            ledger.clear_handover(db)  # done with: a restart must not bring it back
        if st is None or st.state != "received":
            self.handover = None
            raise RetailError(f"Order {order_id} can no longer be handed over "
                              f"({st.state if st else 'unknown'}).")
        self._commit(events, write_all)
        hand_back()
        self.handover, self._saved_handover = None, None
        self.check_expiry()
        if diffs:
            text = "; ".join(f"{self._name(i)} {d:+d}" for i, d in diffs)
            return self._say(True, f"Order {order_id} picked up, with differences", text,
                             order=order_id, differences=[list(d) for d in diffs])
        return self._say(True, f"Order {order_id} picked up", "Stock updated.", order=order_id)

    def abort(self) -> dict[str, Any]:
        """The clerk cancels the handover: the order stays `received` and its code stays
        good (the customer may come back), but what left the fridge meanwhile is reported
        (lane checks, order named) in the same commit that forgets the handover."""
        h = self.handover
        if h is None:
            return self._say(False, "No handover to cancel")
        events, checks, hand_back = self._release(
            h, f"during a cancelled handover of order {h.order}")
        if events:
            self._commit(events, ledger.clear_handover)
            self._saved_handover = None
        hand_back()
        self.handover = None
        gone = [c.note.split(" during ")[0] for c in checks if c.verdict == "mismatch"]
        message = "The order still waits for pickup."
        if gone:
            message += (" Taken from the fridge and not handed over: " + "; ".join(gone)
                        + ". Reported to the owner as missing; put it back or count it.")
        return self._say(False, f"Handover of order {h.order} cancelled", message,
                         order=h.order, missing=gone)

    def advance_delivery(self, order_id: int) -> dict[str, Any]:
        order, st = self.order(order_id), self.order_state(order_id)
        if order is None or st is None or order.mode != "delivery":
            raise RetailError(f"No delivery order {order_id}.")
        nxt = DELIVERY_NEXT.get(st.state)
        if nxt is None:
            raise RetailError(f"Order {order_id} is {st.state}: nothing more to do.")
        wall, _ = self._now()
        moves: list[Movement] = []
        if nxt == "packed":
            for ln in order.lines:
                moves += ledger.outgoing("dispatch", ledger.lots(self.db, ln.item), ln.item,
                                         ln.qty, order=order_id)
        events, write = self._moves(moves, wall)
        events.append(("orders", "order", progress_data(OrderProgress(order_id, nxt))))

        def write_all(db: sqlite3.Connection) -> None:
            write(db)
            self._set_state(db, order_id, nxt, wall)
        self._commit(events, write_all)
        self.check_expiry()
        return self._say(True, f"Delivery {order_id}: {nxt.replace('_', ' ')}",
                         order.customer, order=order_id)

    def adjust(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A manual correction (a count, a broken pack): signed pieces, with a reason."""
        item = body.get("item")
        if not isinstance(item, str) or item not in self.catalogue:
            raise RetailError(f"Unknown item {item!r}.")
        qty = _int(body, "qty", signed=True)
        note = body.get("note")
        if qty == 0 or not isinstance(note, str) or not note.strip():
            raise RetailError("An adjustment needs a non-zero quantity and a reason.")
        batch, expiry = body.get("batch"), body.get("expiry")
        batch = batch if isinstance(batch, str) and batch else None
        expiry = expiry if isinstance(expiry, str) and expiry else None
        if qty < 0 and batch is None and expiry is None:
            # Fewer than the ledger says, lot not named: out of the lots on hand, FEFO, so
            # the expiry list does not go on showing pieces that are not there.
            moves = ledger.outgoing("adjust", ledger.lots(self.db, item), item, -qty,
                                    note=note.strip()[:200])
        else:
            moves = [Movement(ledger.new_id(), "adjust", item, qty, None, batch, expiry, None,
                              note.strip()[:200])]
        try:
            for m in moves:
                movement_data(m)
        except ValueError as exc:
            raise RetailError(str(exc)) from None
        self._record(moves)
        return self._say(True, f"Adjusted {self._name(item)} by {qty:+d}", note.strip())

    def waste(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Pieces thrown away, counted rather than scanned one by one: FEFO (from the
        label's lot if one was scanned), with the reason (expired, damaged, ...)."""
        item = body.get("item")
        if not isinstance(item, str) or item not in self.catalogue:
            raise RetailError(f"Unknown item {item!r}.")
        qty = _int(body, "qty")
        note = body.get("note")
        if not 0 < qty <= MAX_QTY or not isinstance(note, str) or not note.strip():
            raise RetailError(f"Waste needs 1 to {MAX_QTY} pieces and a reason.")
        lots = ledger.lots(self.db, item)
        batch = body.get("batch")
        if isinstance(batch, str) and batch:
            lots = [lot for lot in lots if lot.batch == batch] or lots
        moves = ledger.outgoing("waste", lots, item, qty, note=note.strip()[:200])
        cat = self.catalogue[item]
        if cat.location is not None:  # leaving its lane is explained, as a scanned waste
            self.lanes.explain((cat.location.fridge, cat.location.lane), qty)
        self._record(moves)
        return self._say(True, f"Waste: {cat.name} ×{qty}", note.strip(), item=item)

    # ------------------------------------------------------------ time

    def tick(self) -> None:
        """Called from the agent's loop: unlock answers, expired orders, the expiry list."""
        h = self.handover
        for fridge in self._resume:  # (only now: the readers run)
            if h is not None and fridge in h.fridges:
                self._unlock(h, fridge)
                self.version += 1
        self._resume = []
        for u in list(self.unlocks):
            if not u.command.done.is_set():
                continue
            self.unlocks.remove(u)
            h = self.handover
            if h is not None and u.fridge in h.fridges:
                h.unlocked(u.fridge, u.command.executed,
                           f"{u.fridge} did not unlock ({u.command.outcome})")
                self.version += 1
        wall, _ = self._now()
        due = [r[0] for r in self.db.execute(
            "SELECT id FROM orders WHERE state='received' AND expires <= ?", (wall,))]
        for order_id in due:
            if self.handover is not None and self.handover.order == order_id:
                continue  # the customer is at the counter: let the clerk finish
            self._commit([("orders", "order", progress_data(OrderProgress(order_id, "expired")))],
                         self._state_writer(order_id, "expired", wall))
        if self._expiry_day != self.today(wall):
            self.check_expiry()
        self.save_handover()

    def expiry_list(self) -> list[ledger.Lot]:
        wall, _ = self._now()
        return ledger.expiring(ledger.lots(self.db), self.today(wall),
                               self.settings.expiry_window_days)

    def check_expiry(self) -> None:
        """Report the expiry list to the cloud when it changed (an `expiry` event)."""
        wall, _ = self._now()
        self._expiry_day = self.today(wall)
        data = expiry_data(self.settings.expiry_window_days,
                           [ExpiryLine(lot.item, lot.batch, lot.expiry, lot.qty)
                            for lot in self.expiry_list() if lot.expiry is not None])
        text = json.dumps(data, sort_keys=True)
        if ledger.meta(self.db, "expiry_reported") == text:
            return
        self._commit([("ledger", "expiry", data)],
                     lambda db: ledger.set_meta(db, "expiry_reported", text))

    # ------------------------------------------------------------ the page

    def view(self) -> dict[str, Any]:
        wall, _ = self._now()
        orders: list[dict[str, Any]] = []
        deliveries: list[dict[str, Any]] = []
        for oid, mode, customer, expires, lines, state in self.db.execute(
                "SELECT id, mode, customer, expires, lines, state FROM orders WHERE state IN "
                "('received', 'packed', 'out_for_delivery') OR (state='delivered' AND "
                "updated > ?) ORDER BY expires", (wall - 86400,)):
            row = {"order": oid, "customer": customer, "expires": expires, "state": state,
                   "items": [{"item": i, "name": self._name(i), "qty": q,
                              "where": self._where(i)} for i, q in json.loads(lines)]}
            (orders if mode == "pickup" else deliveries).append(row)
        expiring = [{"item": lot.item, "name": self._name(lot.item), "batch": lot.batch,
                     "expiry": lot.expiry, "qty": lot.qty} for lot in self.expiry_list()]
        unsent = self.db.execute(
            "SELECT count(*) FROM outbox WHERE kind='events' AND device IN (?,?,?)",
            RETAIL_DEVICES).fetchone()[0]
        return {"mode": self.mode, "verdict": self.verdict,
                "handover": None if self.handover is None else self.handover.view(),
                "orders": orders, "deliveries": deliveries, "expiring": expiring,
                "window_days": self.settings.expiry_window_days, "unsent": unsent,
                "pickup_key": self.codec is not None,
                "catalogue": [{"item": c.item, "name": c.name} for c in
                              sorted(self.catalogue.values(), key=lambda c: (c.name, c.item))],
                "scan_paused_s": round(self.limiter.blocked(wall))}

    def _where(self, item: str) -> str:
        c: CatalogueItem | None = self.catalogue.get(item)
        if c is None or c.location is None:
            return "shelf"
        return f"{c.location.fridge} lane {c.location.lane}"


def _int(body: Mapping[str, Any], key: str, signed: bool = False) -> int:
    v = body.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or (v < 0 and not signed):
        raise RetailError(f"{key}: expected a whole number")
    return v


def _quantities(v: Any) -> dict[str, int] | None:
    if v is None:
        return None
    if not isinstance(v, dict) or not all(
            isinstance(k, str) and isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 1000
            for k, n in v.items()):
        raise RetailError("quantities: expected {item: pieces handed over}")
    return dict(v)

