"""One fridge's vitals for one hour, from the records the terminal already keeps (pure).

Records come in as `Rec` (event time, type, data), in any order, covering the hour with some
time before it (to know the compressor, door, defrost and mains state when the hour began)
and after it (a pull-down that began in the hour ends in the next). Event time is the
record's device time placed on the terminal's clock (`edge/vitals_job.py`, the rule
engine's anchors), so a backlog that arrives late lands in the hour it happened.

What a technician reads from it (issue #16): the compressor's duty cycle creeping up at
similar door traffic (a dirty condenser, a leak), defrosts ending on their timer rather
than on temperature (icing, heater, thermostat), slower pull-down after ordinary door
openings, reboots and why, a noisy serial line, a probe dropping out, mains failures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from xiaodian.wire.health import (
    HOUR_S,
    Defrost,
    DefrostEnd,
    LinkHealth,
    ProbeHealth,
    Reboot,
    Vitals,
)

PULLDOWN_MAX_S = 1800.0  # a pull-down not done in 30 min is counted as unrecovered
PULLDOWN_MARGIN_C = 0.5  # "back where it was": the DS18B20's own ±0.5 °C
MIN_KNOWN_S = 600.0  # a duty cycle from less than 10 min of known state says nothing
AIR_PROBE = 0
_DEFROST_ENDS = {"temperature", "timeout", "power", "fault", "command", "schedule"}


@dataclass(frozen=True)
class Rec:
    t: float  # event time, unix seconds
    type: str  # temp, door, compressor, defrost, power, hello (others are ignored)
    data: Mapping[str, Any]


@dataclass(frozen=True)
class LinkCounters:
    """The reader's cumulative counters at one moment (`FridgeReader.stats()`)."""

    frames: int
    errors: int
    missed: int
    reconnects: int

    @classmethod
    def of(cls, stats: Mapping[str, Any]) -> LinkCounters:
        errors = sum(int(stats.get(k, 0) or 0) for k in (
            "crc_errors", "cobs_errors", "length_errors", "version_errors", "oversize"))
        return cls(int(stats.get("frames_ok", 0) or 0), errors,
                   int(stats.get("missed_frames", 0) or 0), int(stats.get("reconnects", 0) or 0))


def link_health(start: LinkCounters, end: LinkCounters) -> LinkHealth | None:
    """The link over an interval; None if the counters went back (another reader run)."""
    d = [end.frames - start.frames, end.errors - start.errors, end.missed - start.missed,
         end.reconnects - start.reconnects]
    if min(d) < 0:
        return None
    frames, errors, missed, reconnects = d
    per_10k = None if frames == 0 else round((errors + missed) * 10_000 / frames, 2)
    return LinkHealth(frames, errors, missed, reconnects, per_10k)


def _states(recs: list[Rec], type_: str, key: str) -> list[tuple[float, bool]]:
    """(time, state) of a two-state record type, state reports included (they say the state
    on attaching), in time order."""
    return [(r.t, bool(r.data.get(key))) for r in recs if r.type == type_ and key in r.data]


def _time_in(changes: list[tuple[float, bool]], a: float, b: float) -> tuple[float, float]:
    """(seconds of [a, b) in which the state was known, seconds of those it was True).
    Known from the first record on; before any record, unknown."""
    known = on = 0.0
    for i, (t, state) in enumerate(changes):
        until = changes[i + 1][0] if i + 1 < len(changes) else b
        lo, hi = max(t, a), min(until, b)
        if hi > lo:
            known += hi - lo
            if state:
                on += hi - lo
    return known, on


def _changes_in(recs: list[Rec], type_: str, key: str, value: bool, a: float,
                b: float) -> list[Rec]:
    """Real changes (not state reports) of a type to `value` within [a, b)."""
    return [r for r in recs if r.type == type_ and a <= r.t < b
            and bool(r.data.get(key)) == value and not r.data.get("state_report")]


def _defrosts(recs: list[Rec], a: float, b: float) -> list[Defrost]:
    out = []
    started: float | None = None
    for r in recs:
        if r.type != "defrost" or "active" not in r.data:
            continue
        if r.data["active"]:
            if not r.data.get("state_report") or started is None:
                started = r.t
            continue
        if a <= r.t < b and not r.data.get("state_report"):
            reason = str(r.data.get("reason", ""))
            out.append(Defrost(None if started is None else round(r.t - started, 1),
                               cast(DefrostEnd, reason if reason in _DEFROST_ENDS
                                    else "unknown")))
        started = None
    return out


def _air(recs: list[Rec]) -> list[tuple[float, float]]:
    out = []
    for r in recs:
        if r.type != "temp":
            continue
        for index, status, celsius in r.data.get("probes", ()):
            if index == AIR_PROBE and status == "ok" and celsius is not None:
                out.append((r.t, float(celsius)))
    return out


def _pulldowns(recs: list[Rec], a: float, b: float) -> tuple[list[float], int]:
    """Pull-down after each door closing in [a, b): seconds until the air is back within
    PULLDOWN_MARGIN_C of its value before the opening. Skipped when another opening or a
    defrost comes first (not an ordinary pull-down) or the data end before it is judged."""
    air = _air(recs)
    if not air:
        return [], 0
    doors = [r for r in recs if r.type == "door" and "open" in r.data
             and not r.data.get("state_report")]
    disturb = sorted([r.t for r in doors if r.data["open"]] + [
        r.t for r in recs if r.type == "defrost" and r.data.get("active")
        and not r.data.get("state_report")])
    last_t = air[-1][0]
    done: list[float] = []
    unrecovered = 0
    opened: float | None = None
    for d in doors:
        if d.data["open"]:
            opened = d.t
            continue
        if opened is None or not a <= d.t < b:
            opened = None
            continue
        closed, start = d.t, opened
        opened = None
        before = [c for t, c in air if t <= start]
        if not before:
            continue
        target = before[-1] + PULLDOWN_MARGIN_C
        nxt = next((t for t in disturb if t > closed), None)
        horizon = closed + PULLDOWN_MAX_S
        back = next(((t, c) for t, c in air if t > closed and c <= target), None)
        if back is not None and back[0] <= horizon and (nxt is None or back[0] <= nxt):
            rose = any(c > target for t, c in air if start < t < back[0])
            done.append(round(back[0] - closed, 1) if rose else 0.0)
        elif (nxt is None or nxt > horizon) and last_t >= horizon:
            unrecovered += 1
    return done, unrecovered


def _reboots(recs: list[Rec], a: float, b: float) -> list[Reboot]:
    """Controller boots whose boot time (HELLO's time less its device time) is in [a, b);
    a HELLO repeated on reconnecting names the same boot count and counts once."""
    seen: dict[int, Reboot] = {}
    for r in recs:
        if r.type != "hello" or "boot_count" not in r.data:
            continue
        boot_at = r.t - int(r.data.get("dev_ms", 0) or 0) / 1000.0
        count = int(r.data["boot_count"])
        if a <= boot_at < b and count not in seen:
            seen[count] = Reboot(count, str(r.data.get("reset_cause", "unknown")))
    return list(seen.values())


def _firmware(recs: list[Rec], b: float) -> str | None:
    hellos = [r for r in recs if r.type == "hello" and r.t < b and "firmware" in r.data]
    if not hellos:
        return None
    return ".".join(str(int(x)) for x in hellos[-1].data["firmware"])


def _probes(temps: list[Rec]) -> list[ProbeHealth]:
    counts: dict[int, dict[str, int]] = {}
    for r in temps:
        for index, status, _c in r.data.get("probes", ()):
            per = counts.setdefault(int(index), dict.fromkeys(("ok", "crc", "missing",
                                                                "suspect"), 0))
            if status in per:
                per[status] += 1
    return [ProbeHealth(i, c["ok"], c["crc"], c["missing"], c["suspect"])
            for i, c in sorted(counts.items())]


def hour_vitals(fridge: str, hour: int, records: Iterable[Rec],
                link: LinkHealth | None = None) -> Vitals:
    """The vitals of `fridge` for the UTC epoch hour `hour`."""
    a, b = float(hour * HOUR_S), float((hour + 1) * HOUR_S)
    recs = sorted(records, key=lambda r: r.t)
    temps = [r for r in recs if r.type == "temp" and a <= r.t < b]
    known, on = _time_in(_states(recs, "compressor", "on"), a, b)
    _d_known, defrosting = _time_in(_states(recs, "defrost", "active"), a, b)
    _o_known, door_open = _time_in(_states(recs, "door", "open"), a, b)
    # Mains: on unless a POWER record says otherwise (a fridge without a monitor sends none).
    _m_known, mains_on = _time_in(_states(recs, "power", "mains"), a, b)
    pulls, unrecovered = _pulldowns(recs, a, b)
    return Vitals(
        fridge=fridge,
        hour=hour,
        readings=len(temps),
        compressor_known_s=round(known, 1),
        compressor_on_s=round(min(on, known), 1),
        duty=round(on / known, 4) if known >= MIN_KNOWN_S else None,
        compressor_starts=len(_changes_in(recs, "compressor", "on", True, a, b)),
        defrosts=tuple(_defrosts(recs, a, b)),
        defrost_s=round(defrosting, 1),
        door_openings=len(_changes_in(recs, "door", "open", True, a, b)),
        door_open_s=round(door_open, 1),
        pulldowns_s=tuple(pulls),
        pulldown_unrecovered=unrecovered,
        reboots=tuple(_reboots(recs, a, b)),
        probes=tuple(_probes(temps)),
        mains_lost=len(_changes_in(recs, "power", "mains", False, a, b)),
        mains_off_s=round(_m_known - mains_on, 1),
        firmware=_firmware(recs, b),
        link=link,
    )
