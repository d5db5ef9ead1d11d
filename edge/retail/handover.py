"""Handing an order over at the counter, and watching fridge lanes (pure, event-driven).

A smart fridge reports lane weights ("lanes" events: grams per lane and whether the load
cell has settled). Pieces taken from a lane = round(weight lost / grams per piece). During
a handover the weight lost between the unlock and the door closing again is compared with
the order; outside one, a settled drop that no sale explains is a mismatch ("item gone
without a sale"). Nothing here reads a clock or a port: the service feeds it events.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from xiaodian.i18n import N_, Message
from xiaodian.wire import retail
from xiaodian.wire.retail import Location

LaneKey = tuple[str, int]  # (fridge, lane)


@dataclass(frozen=True)
class LaneReading:
    lane: int
    grams: int
    stable: bool


def parse_lanes(data: Mapping[str, Any]) -> list[LaneReading]:
    """The `lanes` event's data; entries that are not well formed are skipped."""
    out = []
    raw = data.get("lanes")
    for r in raw if isinstance(raw, list) else []:
        if not isinstance(r, dict):
            continue
        lane, grams, stable = r.get("lane"), r.get("grams"), r.get("stable")
        if (isinstance(lane, int) and isinstance(grams, int | float)
                and not isinstance(grams, bool) and isinstance(stable, bool)):
            out.append(LaneReading(lane, round(grams), stable))
    return out


def pieces(grams_lost: int, unit_grams: int) -> int:
    return round(grams_lost / unit_grams)


@dataclass(frozen=True)
class LaneCheck:
    """A `lane_check` event's data, as xiaodian's contract names its fields."""

    fridge: str
    lane: int
    order: int | None
    expected_grams: int
    measured_grams: int
    verdict: retail.LaneVerdict
    note: str  # for the cloud's record (English, as the contract has it)
    words: Message | None = None  # for the clerk, when the counter shows it

    def data(self) -> dict[str, Any]:
        return retail.lane_check_data(retail.LaneCheck(
            self.lane, self.order, self.expected_grams, self.measured_grams, self.verdict,
            self.note))


@dataclass(frozen=True)
class PickLine:
    item: str
    name: str
    qty: int
    location: Location | None  # None: on a shelf, the clerk takes it by hand


@dataclass
class _Fridge:
    phase: str = "locked"  # -> unlocking -> unlocked -> open -> closed -> measured | failed
    note: str = ""


@dataclass
class Handover:
    """One order at the counter, from a verified code to the clerk's confirmation."""

    order: int
    customer: str
    lines: list[PickLine]
    baseline: dict[LaneKey, int]  # settled grams per lane before the unlock
    final: dict[LaneKey, int] = field(default_factory=dict)
    fridges: dict[str, _Fridge] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for ln in self.lines:
            if ln.location is not None:
                self.fridges.setdefault(ln.location.fridge, _Fridge())

    def lanes_of(self, fridge: str) -> list[PickLine]:
        return [ln for ln in self.lines if ln.location and ln.location.fridge == fridge]

    # ------------------------------------------------------------ events

    def unlocking(self, fridge: str) -> None:
        self.fridges[fridge].phase = "unlocking"

    def unlocked(self, fridge: str, ok: bool, note: str = "") -> None:
        f = self.fridges[fridge]
        if ok:
            f.phase = "unlocked" if f.phase in ("locked", "unlocking") else f.phase
        elif f.phase in ("locked", "unlocking", "unlocked"):
            # (A failed repeat of the unlock after a restart must not undo a door already
            # seen open: its weighing goes on.)
            f.phase, f.note = "failed", note

    def door(self, fridge: str, is_open: bool) -> None:
        f = self.fridges.get(fridge)
        if f is None:
            return
        # "failed": the unlock was not confirmed, but a door that opens anyway (no lock
        # fitted, already unlocked) is weighed all the same.
        if is_open and f.phase in ("unlocking", "unlocked", "failed", "closed", "measured"):
            f.phase = "open"  # (opened again: measured again once it closes)
            for ln in self.lanes_of(fridge):
                # The fridge reports a lane only when it changes: one nobody touches keeps
                # the weight it had before this opening.
                assert ln.location is not None
                key = (fridge, ln.location.lane)
                if key not in self.final and key in self.baseline:
                    self.final[key] = self.baseline[key]
        elif not is_open and f.phase == "open":
            f.phase = "closed"
            self._settled(fridge)

    def lanes(self, fridge: str, readings: Iterable[LaneReading]) -> None:
        """Weights before the unlock are the baseline; after the door opened, the latest
        settled weight per lane is what is left. Measured once the door is shut and every
        lane of ours has settled (a lane still moving makes it wait again)."""
        f = self.fridges.get(fridge)
        if f is None:
            return
        ours = {ln.location.lane for ln in self.lanes_of(fridge) if ln.location is not None}
        for r in readings:
            if r.lane not in ours:
                continue
            key = (fridge, r.lane)
            if f.phase in ("locked", "unlocking", "unlocked", "failed"):
                if r.stable:
                    self.baseline[key] = r.grams
            elif r.stable:
                self.final[key] = r.grams
            else:
                self.final.pop(key, None)
        if f.phase in ("closed", "measured"):
            self._settled(fridge)

    def opened(self) -> bool:
        """Whether any door of this handover has been seen open (goods may have left)."""
        return any(f.phase in ("open", "closed", "measured") for f in self.fridges.values())

    def covered(self) -> set[LaneKey]:
        """The lanes whose weights are this handover's business: the order's lanes in a
        fridge whose door has been opened. Every other lane (another item in the same
        fridge, or an order lane before its door opened) stays with the lane watch."""
        return {(ln.location.fridge, ln.location.lane) for ln in self.lines
                if ln.location is not None
                and self.fridges[ln.location.fridge].phase in ("open", "closed", "measured")}

    def unweighed_checks(self, phrase: str, handed: Mapping[str, int] | None = None) -> tuple[
            list[LaneCheck], list[tuple[LaneKey, int]]]:
        """The handover ends before its weighing did (or at all): the clerk's Cancel or the
        cloud's cancellation (`handed` None: nothing was handed over, every piece gone from
        an order lane is a loss), or a confirmation while a door was still open or a lane
        still moving (`handed`: the pieces confirmed per item; fridges already measured
        are left to `checks`). Only lanes behind a door seen open count; the others stayed
        with the lane watch all along.

        Returns the `lane_check` of each such lane with a settled weight now (expected: its
        weight before the unlock less what was handed over; `phrase` says when, e.g.
        "during a cancelled handover of order 41"), and the lanes the lane watch must go on
        measuring, with the weight to measure from: one still moving (from what should be
        left), one behind a door still open (from its weight now: more may go)."""
        checks: list[LaneCheck] = []
        later: list[tuple[LaneKey, int]] = []
        covered = self.covered()
        for ln in self.lines:
            if ln.location is None:
                continue
            key = (ln.location.fridge, ln.location.lane)
            measured = self.fridges[key[0]].phase == "measured"
            if key not in self.baseline or key not in covered or (
                    handed is not None and measured):
                continue
            n = 0 if handed is None else handed.get(ln.item, ln.qty)
            base, unit = self.baseline[key], ln.location.unit_grams
            if key not in self.final:
                later.append((key, base - n * unit))
                continue
            final = self.final[key]
            gone = pieces(base - final, unit)
            what = (f"{gone} taken" if gone > 0 else
                    f"{-gone} put in" if gone < 0 else "nothing taken")
            note = (f"{ln.name}: {what} {phrase}" if handed is None else
                    f"{ln.name}: {what}, {n} handed over {phrase}")
            words = Message(N_("%(name)s: %(n)s taken") if gone > 0 else
                            N_("%(name)s: %(n)s put in") if gone < 0 else
                            N_("%(name)s: nothing taken"), {"name": ln.name, "n": abs(gone)})
            checks.append(LaneCheck(key[0], key[1], self.order, base - n * unit, final,
                                    "ok" if gone == n else "mismatch", note, words))
            if not measured:
                later.append((key, final))  # the door is still open: more may go
        return checks, later

    def _settled(self, fridge: str) -> None:
        f = self.fridges[fridge]
        keys = [(fridge, ln.location.lane) for ln in self.lanes_of(fridge) if ln.location]
        f.phase = "measured" if all(k in self.final for k in keys) else "closed"

    def checks(self) -> list[LaneCheck]:
        """The `lane_check` of each measured lane: what the order leaves vs what is left."""
        out = []
        for ln in self.lines:
            if ln.location is None:
                continue
            key = (ln.location.fridge, ln.location.lane)
            if self.fridges[key[0]].phase != "measured" or key not in self.baseline:
                continue
            base, final = self.baseline[key], self.final[key]
            taken = pieces(base - final, ln.location.unit_grams)
            out.append(LaneCheck(
                key[0], key[1], self.order, base - ln.qty * ln.location.unit_grams, final,
                "ok" if taken == ln.qty else "mismatch",
                f"{ln.name}: {taken} taken, {ln.qty} ordered"))
        return out

    # ------------------------------------------------------------ persistence

    def state(self) -> dict[str, Any]:
        """Everything needed to carry on after a restart, as JSON-able data."""
        return {
            "order": self.order, "customer": self.customer,
            "lines": [{"item": ln.item, "name": ln.name, "qty": ln.qty,
                       "location": None if ln.location is None else
                       [ln.location.fridge, ln.location.lane, ln.location.unit_grams]}
                      for ln in self.lines],
            "baseline": [[f, lane, g] for (f, lane), g in sorted(self.baseline.items())],
            "final": [[f, lane, g] for (f, lane), g in sorted(self.final.items())],
            "fridges": {k: [f.phase, f.note] for k, f in sorted(self.fridges.items())},
        }

    @classmethod
    def from_state(cls, s: Mapping[str, Any]) -> Handover:
        """The inverse of `state` (raises KeyError/TypeError/ValueError on a bad one)."""
        lines = [PickLine(str(ln["item"]), str(ln["name"]), int(ln["qty"]),
                          None if ln["location"] is None else
                          Location(str(ln["location"][0]), int(ln["location"][1]),
                                   int(ln["location"][2])))
                 for ln in s["lines"]]
        h = cls(int(s["order"]), str(s["customer"]), lines,
                {(str(f), int(lane)): int(g) for f, lane, g in s["baseline"]},
                {(str(f), int(lane)): int(g) for f, lane, g in s["final"]})
        for k, (phase, note) in s["fridges"].items():
            if k in h.fridges:
                h.fridges[k] = _Fridge(str(phase), str(note))
        return h

    # ------------------------------------------------------------ results

    def taken(self) -> dict[str, int | None]:
        """Pieces taken per item: measured for lane items once measured, else None;
        shelf items count as ordered (the clerk hands them over)."""
        out: dict[str, int | None] = {}
        for ln in self.lines:
            if ln.location is None:
                out[ln.item] = ln.qty
                continue
            key = (ln.location.fridge, ln.location.lane)
            measured = self.fridges[key[0]].phase == "measured"
            if measured and key in self.final and key in self.baseline:
                out[ln.item] = pieces(self.baseline[key] - self.final[key],
                                      ln.location.unit_grams)
            else:
                out[ln.item] = None
        return out

    def differences(self) -> list[tuple[str, int]]:
        """(item, pieces taken minus ordered) for measured items that differ."""
        taken = self.taken()
        return [(ln.item, t - ln.qty) for ln in self.lines
                if (t := taken[ln.item]) is not None and t != ln.qty]

    def unweighed(self) -> list[str]:
        """The fridges of this order whose taking has not been weighed yet: the door not
        yet opened and shut, a lane not settled, or an unlock that failed (the clerk takes
        the items by hand, so nothing weighs them)."""
        return [k for k, f in sorted(self.fridges.items()) if f.phase != "measured"]

    def waiting_for(self) -> Message | None:
        """What the handover still waits for, in the clerk's words; None when measured."""
        for fridge, f in sorted(self.fridges.items()):
            if f.phase == "failed":
                continue
            p = {"fridge": fridge}
            if f.phase in ("locked", "unlocking"):
                return Message(N_("Unlocking %(fridge)s"), p)
            if f.phase == "unlocked":
                return Message(N_("%(fridge)s unlocked: open the door and take the items"), p)
            if f.phase == "open":
                return Message(N_("%(fridge)s open: close the door when done"), p)
            if f.phase == "closed":
                return Message(N_("%(fridge)s closed: weighing"), p)
        return None

    def view(self) -> dict[str, Any]:
        taken = self.taken()
        diffs = dict(self.differences())
        return {
            "order": self.order,
            "customer": self.customer,
            "lines": [{"item": ln.item, "name": ln.name, "qty": ln.qty,
                       "where": (Message(N_("%(fridge)s lane %(lane)s"),
                                         {"fridge": ln.location.fridge,
                                          "lane": ln.location.lane})
                                 if ln.location else Message(N_("shelf"))),
                       "weighed": ln.location is not None,
                       # Shelf items are not weighed: nothing to show as "taken".
                       "taken": taken[ln.item] if ln.location else None,
                       "difference": diffs.get(ln.item, 0)}
                      for ln in self.lines],
            "fridges": {k: {"phase": f.phase, "note": _note_words(k, f.note)}
                        for k, f in sorted(self.fridges.items())},
            "unweighed": self.unweighed(),
            "waiting_for": self.waiting_for(),
            "differences": [[i, d] for i, d in self.differences()],
        }


def _note_words(fridge: str, note: str) -> Message | None:
    """The clerk's words for why a fridge did not unlock (the note itself is kept as the
    handover's state, English, across a restart)."""
    if not note:
        return None
    if note.endswith("is not connected to this terminal"):
        return Message(N_("%(fridge)s is not connected to this terminal"), {"fridge": fridge})
    return Message(N_("%(fridge)s did not unlock"), {"fridge": fridge})


class LaneWatch:
    """Settled lane weights outside handovers; a drop no sale explains is a mismatch."""

    def __init__(self) -> None:
        self.settled: dict[LaneKey, int] = {}
        self.credit: dict[LaneKey, int] = {}  # pieces sold/wasted not yet seen leaving
        # Lanes a handover ended on before they were weighed: (order, phrase) for the note
        # of their next settled change.
        self.after: dict[LaneKey, tuple[int, str]] = {}

    def explain(self, key: LaneKey, n: int) -> None:
        self.credit[key] = self.credit.get(key, 0) + n

    def released(self, key: LaneKey, grams: int, order: int, phrase: str) -> None:
        """A handover that ended before its weighing hands its lane back: the next settled
        weight is measured against `grams` (what should be left, or the weight its check
        ended on), a drop noted with `phrase` ("during a cancelled handover of order 41")."""
        self.settled[key] = grams
        self.after[key] = (order, phrase)

    def feed(self, fridge: str, readings: Iterable[LaneReading],
             item_at: Callable[[LaneKey], tuple[str, int] | None],
             covered: Collection[LaneKey] = ()) -> list[LaneCheck]:
        """`covered`: the (fridge, lane) pairs a handover is weighing (its checks go out
        when it ends); only those are re-baselined unchecked, every other lane is checked."""
        checks = []
        for r in readings:
            if not r.stable:
                continue
            key = (fridge, r.lane)
            before = self.settled.get(key)
            self.settled[key] = r.grams
            after = self.after.pop(key, None)  # (weighed by a new handover: its business)
            if before is None or key in covered:
                continue
            where = item_at(key)
            if where is None:
                continue
            name, unit = where
            gone = pieces(before - r.grams, unit)
            if gone <= 0:
                continue  # restocked, or noise below half a piece
            explained = min(gone, self.credit.get(key, 0))
            self.credit[key] = self.credit.get(key, 0) - explained
            expected = before - explained * unit
            order = None if after is None else after[0]
            if gone > explained:
                note = (f"{name}: {gone - explained} gone without a sale" if after is None else
                        f"{name}: {gone - explained} taken {after[1]}")
                checks.append(LaneCheck(fridge, r.lane, order, expected, r.grams, "mismatch",
                                        note))
            else:
                checks.append(LaneCheck(fridge, r.lane, order, expected, r.grams, "ok",
                                        f"{name}: {gone} sold"))
        return checks
