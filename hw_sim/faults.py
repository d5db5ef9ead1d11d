"""Fault injection, pure: which fault windows open and close when, and a noisy serial line.

`FaultTimeline` turns the scenario's windows into start/end transitions as simulated time
advances; `LineNoise` flips and drops bytes on their way through the cable. Both are seeded
or deterministic and touch no port or clock: `hw_sim.fridge` applies them.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from hw_sim.scenario import FaultKind, FaultSpec, ScanSpec


@dataclass(frozen=True)
class Transition:
    spec: FaultSpec
    started: bool  # False: the window closed (an instant fault only ever "starts")


class FaultTimeline:
    """The open windows at the latest `advance()` time, and what changed since the one before."""

    def __init__(self, specs: tuple[FaultSpec, ...]) -> None:
        self.specs = specs
        self._open = [False] * len(specs)
        # Instant faults: when each happens next (inf once a one-off has happened).
        self._next_at = [s.at_s if s.instant else math.inf for s in specs]

    def advance(self, t_s: float) -> list[Transition]:
        """Move to simulated time `t_s` (non-decreasing); ends are listed before starts so a
        window that reopens within one step is seen to close first. An instant fault is one
        start per occurrence passed (several, if a step jumped over more than one)."""
        ends: list[Transition] = []
        starts: list[Transition] = []
        for i, spec in enumerate(self.specs):
            if spec.instant:
                while self._next_at[i] <= t_s:
                    starts.append(Transition(spec, True))
                    self._next_at[i] = self._next_at[i] + spec.every_s if spec.every_s else math.inf
                continue
            now = spec.active(t_s)
            if now != self._open[i]:
                self._open[i] = now
                (starts if now else ends).append(Transition(spec, now))
        return ends + starts

    def open_specs(self) -> list[FaultSpec]:
        return [s for s, o in zip(self.specs, self._open, strict=True) if o]

    def active(self, kind: FaultKind) -> list[FaultSpec]:
        return [s for s in self.open_specs() if s.fault == kind]


class LineNoise:
    """Bit errors and lost bytes on one direction of a serial line.

    Errors are placed by drawing the gap to the next one (geometric), not by a draw per bit,
    so a clean stretch costs nothing; the gap carries over from one write to the next, so the
    stream is what a continuous line would do to it. The rates may change between calls (a
    noisy window opening); a gap drawn under another rate is then drawn afresh.
    """

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._flip_p = 0.0
        self._bits_to_flip = math.inf
        self._drop_p = 0.0
        self._bytes_to_drop = math.inf
        self.bits_flipped = 0
        self.bytes_dropped = 0
        self.bytes_seen = 0

    def _gap(self, p: float) -> float:
        """Clean trials before the next error at per-trial probability `p`."""
        if p <= 0:
            return math.inf
        return math.floor(math.log(1.0 - self._rng.random()) / math.log(1.0 - p))

    def apply(self, data: bytes, ber: float, drop_rate: float) -> bytes:
        if ber != self._flip_p:
            self._flip_p, self._bits_to_flip = ber, self._gap(ber)
        if drop_rate != self._drop_p:
            self._drop_p, self._bytes_to_drop = drop_rate, self._gap(drop_rate)
        n = len(data)
        self.bytes_seen += n
        if self._bits_to_flip >= 8 * n and self._bytes_to_drop >= n:
            self._bits_to_flip -= 8 * n
            self._bytes_to_drop -= n
            return data
        out = bytearray(data)
        bit = self._bits_to_flip
        while bit < 8 * n:
            pos = int(bit)
            out[pos // 8] ^= 1 << (pos % 8)
            self.bits_flipped += 1
            bit += 1 + self._gap(ber)
        self._bits_to_flip = bit - 8 * n
        drops: set[int] = set()
        at = self._bytes_to_drop
        while at < n:
            drops.add(int(at))
            at += 1 + self._gap(drop_rate)
        self._bytes_to_drop = at - n
        if drops:
            self.bytes_dropped += len(drops)
            out = bytearray(b for i, b in enumerate(out) if i not in drops)
        return bytes(out)


class ScriptedScans:
    """A scanner's scripted lines, handed out once simulated time reaches their `at_s`."""

    def __init__(self, scans: tuple[ScanSpec, ...]) -> None:
        # Stable sort: two scans at the same instant go out in file order.
        self._pending = sorted(scans, key=lambda s: s.at_s)
        self._i = 0

    def due(self, t_s: float) -> list[str]:
        out: list[str] = []
        while self._i < len(self._pending) and self._pending[self._i].at_s <= t_s:
            out.append(self._pending[self._i].line)
            self._i += 1
        return out
