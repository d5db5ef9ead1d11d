"""The fridge side of a handover: unlocks, doors and lane weights, and the handover kept
in the database so a restarted agent carries on with it (a power cut with the door open).

Outside a handover the lane watch checks every settled drop against the sales and waste
that explain it; during one, the lanes it weighs are its own business.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from edge.retail import ledger
from edge.retail.desk import Desk, EventRow
from edge.retail.fridge_commands import FridgeCommands, Unlocks
from edge.retail.handover import Handover, LaneCheck, LaneReading, LaneWatch, parse_lanes
from xiaodian.i18n import N_, Message

log = logging.getLogger(__name__)


class SmartFridges:
    def __init__(self, desk: Desk, fridges: Mapping[str, FridgeCommands]) -> None:
        self.desk = desk
        self.fridges = fridges
        self.lanes = LaneWatch()
        self.unlocks = Unlocks(fridges)
        self.handover: Handover | None = None
        self.nonce = 0  # of the code that started the handover: kept with the redemption
        self.saved: str | None = None  # as last written to the `handover` table
        self._resume: list[str] = []  # fridges to unlock again after a restart

    # ------------------------------------------------------------ the handover

    def begin(self, h: Handover, nonce: int) -> None:
        """Weigh from the last settled weights we know, and unlock its fridges."""
        for ln in h.lines:
            if ln.location is not None:
                key = (ln.location.fridge, ln.location.lane)
                if key in self.lanes.settled:
                    h.baseline[key] = self.lanes.settled[key]
        self.handover = h
        self.nonce = nonce
        for fridge in sorted(h.fridges):
            self.unlocks.send(h, fridge)

    def end(self, cleared: bool = True) -> None:
        """The handover is over. `cleared`: its row was deleted in the same commit that
        ended it; if not, the next save deletes it."""
        self.handover = None
        if cleared:
            self.saved = None

    def release(self, h: Handover, phrase: str, handed: Mapping[str, int] | None = None
                ) -> tuple[list[EventRow], list[LaneCheck], Callable[[], None]]:
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

    # ------------------------------------------------------------ fridge events

    def event(self, device: str, type_: str, data: Mapping[str, Any]) -> None:
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
            self.desk.version += 1

    def door(self, fridge: str, is_open: bool) -> None:
        if self.handover is not None and fridge in self.handover.fridges:
            self.handover.door(fridge, is_open)
            self.desk.version += 1

    def lane_weights(self, fridge: str, readings: list[LaneReading]) -> None:
        h = self.handover
        busy = h is not None and fridge in h.fridges
        if h is not None and busy:
            h.lanes(fridge, readings)  # its lane checks go out when it ends
        # Only the lanes the handover is weighing are its business: any other lane (in
        # this fridge or elsewhere) is checked by the lane watch as usual.
        covered = h.covered() if h is not None else set()
        checks: list[LaneCheck] = self.lanes.feed(fridge, readings, self.item_at, covered)
        if checks:
            self.desk.commit([(c.fridge, "lane_check", c.data()) for c in checks])
        if busy:
            self.desk.version += 1

    def item_at(self, key: tuple[str, int]) -> tuple[str, int] | None:
        for c in self.desk.catalogue.values():
            if c.location and (c.location.fridge, c.location.lane) == key:
                return c.name, c.location.unit_grams
        return None

    def tick(self) -> None:
        """Unlocks due again after a restart (only now: the readers run), then answers."""
        h = self.handover
        for fridge in self._resume:
            if h is not None and fridge in h.fridges:
                self.unlocks.send(h, fridge)
                self.desk.version += 1
        self._resume = []
        self.desk.version += self.unlocks.answered(self.handover)

    # ------------------------------------------------------------ across a restart

    def save(self) -> None:
        """Write the handover to the `handover` table when it changed (the order, each
        fridge's phase, the lane weights at the unlock and since, with the last stored
        event of each fridge it has seen). Called after each batch of records and each
        loop pass, so a restart (a power cut with the door open) loses none of it."""
        h = self.handover
        text = None if h is None else json.dumps(h.state(), sort_keys=True)
        if text == self.saved:
            return
        if h is None or text is None:
            self.desk.store.add([], extra=ledger.clear_handover)
        else:
            # Every event stored so far has been applied: a restart replays only later ones.
            # (Events that changed nothing since the last save replay as no-ops from it.)
            through = {}
            for fridge in h.fridges:
                row = self.desk.db.execute(
                    "SELECT boot, seq FROM events WHERE device=? "
                    "ORDER BY boot DESC, seq DESC LIMIT 1", (fridge,)).fetchone()
                if row is not None:
                    through[fridge] = [int(row[0]), int(row[1])]
            wall, _ = self.desk.now()
            order, nonce, marks = h.order, self.nonce, json.dumps(through, sort_keys=True)
            self.desk.store.add([], extra=lambda db: ledger.save_handover(
                db, order, nonce, text, marks, wall))
        self.saved = text

    def load_lanes(self) -> None:
        """The lane watch starts from the last settled weight of each lane stored before
        this process started: a fridge that did not reboot reports a lane again only when
        it changes, so without this the next drop (and the next handover's baseline) would
        have nothing to be measured against. Sales and waste of a lane's item recorded
        after that weight was stored are credited again (they explain a drop to come)."""
        db = self.desk.db
        try:
            weights = ledger.last_lane_weights(db)
        except sqlite3.Error:
            log.exception("retail: could not read the last lane weights; starting without")
            return
        for key, (grams, wall) in weights.items():
            self.lanes.settled[key] = grams
            for c in self.desk.catalogue.values():
                if c.location is not None and (c.location.fridge, c.location.lane) == key:
                    n = ledger.pieces_out_since(db, c.item, wall)
                    if n:
                        self.lanes.explain(key, n)
        if weights:
            log.info("retail: lane weights of %d lanes restored from stored events",
                     len(weights))

    def restore(self) -> None:
        """Carry on with the handover the last run left on the counter. Fridge events it
        stored but may not have applied (killed in between) are applied from the database;
        what a fridge logged while no agent listened arrives as usual once it reconnects
        (door shut meanwhile: measured from the lanes as they are now against the weights
        at the unlock)."""
        desk = self.desk
        saved = ledger.load_handover(desk.db)
        if saved is None:
            return
        nonce, state, through = saved
        try:
            h = Handover.from_state(json.loads(state))
            marks = {str(k): (int(v[0]), int(v[1])) for k, v in json.loads(through).items()}
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            log.exception("retail: the saved handover is unreadable; dropped (its order still "
                          "waits for a scan)")
            desk.store.add([], extra=ledger.clear_handover)
            return
        st = desk.order_state(h.order)
        if st is None or st.state != "received":
            desk.store.add([], extra=ledger.clear_handover)
            return
        self.handover, self.nonce = h, nonce
        for fridge in sorted(h.fridges):
            boot, seq = marks.get(fridge, (0, 0))
            for type_, data in desk.db.execute(
                    "SELECT type, data FROM events WHERE device=? AND type IN "
                    "('door', 'lanes', 'lock') AND (boot > ? OR (boot = ? AND seq > ?)) "
                    "ORDER BY boot, seq", (fridge, boot, boot, seq)).fetchall():
                self.event(fridge, type_, json.loads(data))
        # An unlock that may never have reached the fridge, or that timed out while the
        # agent was down, is sent again; a door already seen open needs none.
        self._resume = [f for f, fs in sorted(h.fridges.items())
                        if fs.phase in ("locked", "unlocking", "unlocked")
                        and f in self.fridges]
        self.saved = ""  # written again at the first save, with its new marks
        log.info("retail: handover of order %d resumed after a restart (%s)", h.order,
                 ", ".join(f"{k} {f.phase}" for k, f in sorted(h.fridges.items())))
        desk.say(True, Message(N_("Order %(order)s: %(customer)s"),
                               {"order": h.order, "customer": h.customer}),
                 Message(N_("Handover resumed after the terminal restarted.")), order=h.order,
                 source="restart", handover=h.view())
