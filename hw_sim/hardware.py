"""Fakes of the hardware around a fridge controller: temperature probes and the customers
who open the door. Pure and seeded: the caller passes a `random.Random` and the time.
"""

from __future__ import annotations

import random
from typing import Protocol

RAW_PER_C = 16  # DS18B20 12-bit resolution: 1/16 °C per count
_RAW_MIN = -55 * RAW_PER_C  # the sensor's measuring range
_RAW_MAX = 125 * RAW_PER_C
# What the bus gives back for a probe that is not there (drivers report −127 °C) and a
# probe that reset and has not converted since (its scratchpad's power-on 85 °C).
RAW_MISSING = -127 * RAW_PER_C
RAW_POWER_ON = 85 * RAW_PER_C


class Door(Protocol):
    def is_open(self, now_s: float) -> bool:
        """Door switch state at `now_s`; called with non-decreasing times."""
        ...


class Ds18b20:
    """A DS18B20-like probe: a calibration offset fixed at manufacture, a little noise, and
    readings in whole 1/16 °C counts clamped to the sensor's range.

    Faults, set by the simulator while a fault window is open: `unplugged` (reads −127),
    `power_on` (the probe keeps resetting: reads 85.0) and `flatline()` (a stuck probe or
    frozen driver: repeats the last value it gave).
    """

    def __init__(self, rng: random.Random, max_offset_c: float = 0.5, noise_sd_c: float = 0.03):
        self._rng = rng
        # Drawn once, so a probe reads consistently high or low for the whole run.
        self.offset_c = rng.uniform(-max_offset_c, max_offset_c)
        self.noise_sd_c = noise_sd_c
        self.unplugged = False
        self.power_on = False
        self._stuck_raw: int | None = None
        self._last_raw = 0

    def flatline(self, on: bool) -> None:
        """Freeze the reading at the last value given (on), or let it follow again (off)."""
        if not on:
            self._stuck_raw = None
        elif self._stuck_raw is None:
            self._stuck_raw = self._last_raw

    def read_raw(self, true_c: float) -> int:
        # Noise is drawn on every read, faulty or not, so a fault never shifts the readings
        # that follow it (same seed, same values after the window).
        measured = true_c + self.offset_c + self._rng.gauss(0.0, self.noise_sd_c)
        raw = max(_RAW_MIN, min(_RAW_MAX, round(measured * RAW_PER_C)))
        if self.unplugged:
            return RAW_MISSING
        if self.power_on:
            raw = RAW_POWER_ON
        elif self._stuck_raw is not None:
            raw = self._stuck_raw
        self._last_raw = raw
        return raw


class CustomerDoor:
    """Customers opening the door: Poisson arrivals at `openings_per_hour`, each holding it
    open for 0.5–1.5 × `open_s`. An arrival while the door is open extends the opening.

    `night_factor` and `weekend_factor` scale the rate from 22:00 to 07:00 and on days 5 and
    6 of each week (simulated time 0 is a Monday midnight); when either is not 1 the
    arrivals are thinned from the highest rate (one more draw each), otherwise the draws are
    exactly those of a constant rate."""

    def __init__(self, rng: random.Random, openings_per_hour: float, open_s: float,
                 night_factor: float = 1.0, weekend_factor: float = 1.0) -> None:
        self._rng = rng
        self.night_factor, self.weekend_factor = night_factor, weekend_factor
        self._varies = night_factor != 1.0 or weekend_factor != 1.0
        self._peak = max(1.0, night_factor, weekend_factor, night_factor * weekend_factor)
        self.rate_per_s = openings_per_hour / 3600.0 * (self._peak if self._varies else 1.0)
        self.open_s = open_s
        self._close_at = -1.0
        self._next_arrival = self._draw_gap(0.0)

    def factor(self, t_s: float) -> float:
        hour, day = int(t_s // 3600) % 24, int(t_s // 86400) % 7
        f = self.night_factor if hour >= 22 or hour < 7 else 1.0
        return f * (self.weekend_factor if day >= 5 else 1.0)

    def _draw_gap(self, now_s: float) -> float:
        if self.rate_per_s <= 0:
            return float("inf")
        return now_s + self._rng.expovariate(self.rate_per_s)

    def is_open(self, now_s: float) -> bool:
        """Door state at `now_s`; call with non-decreasing times."""
        while self._next_arrival <= now_s:
            start = self._next_arrival
            if self._varies and self._rng.random() * self._peak >= self.factor(start):
                self._next_arrival = self._draw_gap(start)
                continue
            held = self.open_s * self._rng.uniform(0.5, 1.5)
            self._close_at = max(self._close_at, start + held)
            self._next_arrival = self._draw_gap(start)
        return now_s < self._close_at


class ScriptedDoor:
    """A door opened at given times, for tests and scripted scenarios: (start_s, open_s)."""

    def __init__(self, openings: list[tuple[float, float]]) -> None:
        self.openings = sorted(openings)

    def is_open(self, now_s: float) -> bool:
        return any(start <= now_s < start + held for start, held in self.openings)


# Simulated load cells: an HX711 gives RAW_PER_G counts per gram over a zero that differs a
# little per lane; the factory calibration provisioned into the controllers matches them.
RAW_PER_G = 4.0
LANE_ZERO_RAW = 20_000


def lane_zero_raw(lane: int) -> int:
    return LANE_ZERO_RAW + 1_000 * lane


class LoadCell:
    """One lane's shelf: the grams of stock on it and the cell's drift (creep, temperature),
    which the controller cannot tell from real weight until someone tares the lane."""

    def __init__(self, lane: int, grams: float) -> None:
        self.lane = lane
        self.grams = grams
        self.drift_g = 0.0

    def take(self, grams: float) -> float:
        """Remove up to `grams`; returns what was really there to take."""
        took = max(0.0, min(grams, self.grams))
        self.grams -= took
        return took

    def put(self, grams: float) -> None:
        self.grams += max(0.0, grams)

    def raw(self) -> int:
        return round(lane_zero_raw(self.lane) + (self.grams + self.drift_g) * RAW_PER_G)
