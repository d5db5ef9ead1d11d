"""Order cycles: which wave an order rides, and how a zone's cycle moves. Pure, time injected.

A *wave* is named by its cutoff's local date in the zone's time zone. An order placed
before the cutoff (local `cutoff`, 23:00 by default) rides that day's wave; one placed at
or after it rides the next day's. The wave is delivered `lead_time_days` later and picked
up at the store between `pickup_from` and `pickup_until` of that day.

A zone's cycle for one wave moves only forward, one step at a time:

    open -> cutoff -> planned -> picked -> dispatched -> delivered

`open` takes pre-orders (each store only within its capacity: admission.py), `cutoff`
takes none and the plan is being made, `planned` has a stored plan (the cutoff command
does both steps in one transaction), then the depot picks, dispatches and the stores
receive. Asking for a step already reached is not an error (`already`): commands are run
again after a crash and must change nothing the second time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from xiaodian.i18n import DEFAULT_TZ

from .model import SupplyError

STATES = ("open", "cutoff", "planned", "picked", "dispatched", "delivered")
RANK = {s: k for k, s in enumerate(STATES)}


class CycleError(SupplyError):
    """A step the cycle cannot take (skipping one, going back, an unknown state)."""


def parse_hhmm(text: str, what: str) -> time:
    """'23:00' -> time(23, 0); CycleError naming `what` otherwise."""
    try:
        hh, mm = text.split(":")
        if len(hh) != 2 or len(mm) != 2:
            raise ValueError
        return time(int(hh), int(mm))
    except ValueError:
        raise CycleError(f"{what}: {text[:16]!r} is not a local time HH:MM (e.g. 23:00)"
                         ) from None


@dataclass(frozen=True)
class Schedule:
    """A delivery zone's timetable."""

    cutoff: time = time(23, 0)
    tz: str = DEFAULT_TZ
    lead_time_days: int = 1
    pickup_from: time = time(8, 0)
    pickup_until: time = time(21, 0)

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.tz)
        except (ValueError, OSError, ZoneInfoNotFoundError):
            raise CycleError(f"tz: unknown time zone {self.tz[:64]!r}") from None
        if not 1 <= self.lead_time_days <= 7:
            raise CycleError("lead_time_days: 1 to 7")
        if self.pickup_from >= self.pickup_until:
            raise CycleError("pickup: the window must open before it closes")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def wave_of(self, at: float) -> date:
        """The wave an order placed at unix time `at` rides."""
        local = datetime.fromtimestamp(at, self.zone)
        return local.date() if local.time() < self.cutoff else local.date() + timedelta(days=1)

    def cutoff_at(self, wave: date) -> float:
        """The unix time of the wave's cutoff."""
        return datetime.combine(wave, self.cutoff, self.zone).timestamp()

    def delivery(self, wave: date) -> date:
        return wave + timedelta(days=self.lead_time_days)

    def pickup_window(self, wave: date) -> tuple[float, float]:
        """(opens, closes) as unix times, on the delivery day in the zone's time."""
        day = self.delivery(wave)
        return (datetime.combine(day, self.pickup_from, self.zone).timestamp(),
                datetime.combine(day, self.pickup_until, self.zone).timestamp())

    def seconds_to_cutoff(self, wave: date, now: float) -> float:
        """How long the wave still takes orders (0 once its cutoff has passed)."""
        return max(0.0, self.cutoff_at(wave) - now)


def step(current: str, target: str) -> bool:
    """Whether moving a cycle from `current` to `target` changes it: True for the next
    state, False when `target` was already reached; CycleError for a skip."""
    if current not in RANK or target not in RANK:
        raise CycleError(f"state: one of {', '.join(STATES)}")
    if RANK[target] <= RANK[current]:
        return False
    if RANK[target] != RANK[current] + 1:
        raise CycleError(f"a cycle that is {current} cannot become {target}; next is"
                         f" {STATES[RANK[current] + 1]}")
    return True


def takes_orders(state: str, cutoff_at: float, now: float) -> bool:
    """Pre-orders are accepted while the cycle is open and its cutoff has not passed."""
    return state == "open" and now < cutoff_at


def below_minimum(totals: Mapping[str, int], minimums: Mapping[str, int]) -> list[str]:
    """Pre-sale items whose total pre-ordered quantity in the wave stays under their
    minimum: their lines are cancelled at the cutoff. Items without a minimum (0) never."""
    return sorted(item for item, least in minimums.items()
                  if least > 0 and 0 < totals.get(item, 0) < least)
