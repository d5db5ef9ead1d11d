"""Hourly vitals of one fridge as a terminal would report them (`series`): door traffic by
hour and weekday, duty cycle, defrosts, pull-downs and probe drop-outs, each shaped per day
by the caller. Used by the maintenance rule and maintenance alert tests."""

from __future__ import annotations

import random
from collections.abc import Callable

from xiaodian.wire.health import Defrost, DefrostEnd, ProbeHealth, Vitals

H0 = 490_000  # an arbitrary UTC epoch hour (a Monday's midnight is not needed)
DAYS = 35


def _doors(hour: int, busy: float = 1.0) -> int:
    """Door openings: none at night, more at meal times, weekends busier."""
    h, day = hour % 24, (hour // 24) % 7
    if h < 7 or h >= 22:
        return 0
    base = 4 + (6 if h in (7, 8, 12, 18, 19) else 0) + (5 if day in (5, 6) else 0)
    return round(base * busy)


def series(
    days: int = DAYS,
    duty_extra: Callable[[int], float] = lambda d: 0.0,
    busy: Callable[[int], float] = lambda d: 1.0,
    defrost_end: Callable[[int, int], DefrostEnd] = lambda d, i: "temperature",
    pull_s: Callable[[int], float] = lambda d: 240.0,
    dropouts: Callable[[int, int], int] = lambda d, h: 0,
    seed: int = 1,
) -> list[Vitals]:
    """`days` of hourly vitals; the callables take the day index (and hour or defrost)."""
    rng = random.Random(seed)
    out = []
    for k in range(days * 24):
        hour, day = H0 + k, k // 24
        doors = _doors(hour, busy(day))
        duty = 0.45 + 0.012 * doors + rng.gauss(0, 0.03) + duty_extra(day)
        defrost = k % 6 == 0  # every 6 h
        defrosts = (Defrost(600.0, defrost_end(day, k // 6)),) if defrost else ()
        pulls = tuple(max(30.0, rng.gauss(pull_s(day), 40)) for _ in range(doors // 2))
        miss = dropouts(day, k % 24)
        probes = (ProbeHealth(0, 360 - miss, 0, miss, 0), ProbeHealth(1, 360, 0, 0, 0))
        out.append(Vitals(
            fridge="fridge-1", hour=hour, readings=360, compressor_known_s=3600.0,
            compressor_on_s=round(min(1.0, duty) * 3600, 1), duty=round(min(1.0, duty), 4),
            compressor_starts=6, defrosts=defrosts, defrost_s=600.0 if defrost else 0.0,
            door_openings=doors, door_open_s=20.0 * doors, pulldowns_s=pulls,
            pulldown_unrecovered=0, reboots=(), probes=probes, mains_lost=0, mains_off_s=0.0,
            firmware="0.1.0"))
    return out
