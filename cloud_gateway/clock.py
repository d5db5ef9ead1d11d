"""How far off a store terminal's wall clock is, seen from the cloud: the pure core, no I/O.

Each message gives one sample: `received_at - wall`, the cloud's receive time minus the
terminal's wall clock at (about) the time it sent the message; for a batch, the wall of its
newest record. That difference is the true offset (cloud minus terminal) plus the one-way
delay, and the delay is never negative: every sample is an upper bound on the offset. So the
estimate is the MINIMUM over a sliding window of samples (by cloud receive time):

- one fast message in the window is enough for a tight estimate; slow ones (a batch that
  waited in the outbox, a retained or queued message) only ever raise a sample, and the
  minimum ignores them. A mean or median would be dragged off by every backlog drained;
- a clock that jumps forward (terminal now ahead) shows at once, as a lower sample;
- a clock that jumps back is adopted when the older, lower samples leave the window, so the
  window is kept short (default 10 min);
- when the window holds only delayed samples (a cloud that was itself offline while the
  broker queued), the estimate is too high by the shortest delay among them. The method and
  the offset are stored beside every record, so such a stretch can be re-judged later.

Only the candidates that can still become the minimum are kept (a sample with a later or
equal-time sample that is no larger can never be the minimum again), so the window stays
small and can live in one database row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Sample = tuple[float, float]  # (received_at, received_at - wall)
Method = Literal["terminal", "offset"]


@dataclass(frozen=True)
class ClockPolicy:
    window_s: float = 600.0
    # Beyond this a synchronised terminal's wall is corrected too: NTP keeps a healthy clock
    # within milliseconds, so 2 s is a clock (or a sync flag) that cannot be believed.
    threshold_s: float = 2.0
    # A change of the estimate smaller than this is jitter, not a new history entry.
    history_step_s: float = 0.5
    max_samples: int = 64

    def __post_init__(self) -> None:
        if not self.window_s > 0:
            raise ValueError("clock_window_s: must be positive")
        if not self.threshold_s >= 0:
            raise ValueError("clock_threshold_s: must not be negative")


@dataclass(frozen=True)
class ClockWindow:
    samples: tuple[Sample, ...] = ()  # increasing in time and in value

    @property
    def offset(self) -> float | None:
        return self.samples[0][1] if self.samples else None

    def add(self, received_at: float, wall: float, policy: ClockPolicy) -> ClockWindow:
        """The window with one more observation; two workers may add them out of order."""
        merged = sorted((*self.samples, (received_at, received_at - wall)))
        newest = merged[-1][0]
        kept: list[Sample] = []
        for t, v in reversed(merged):  # newest first
            if t < newest - policy.window_s:
                break
            if not kept or v < kept[-1][1]:
                kept.append((t, v))
        kept.reverse()
        return ClockWindow(tuple(kept[-policy.max_samples:]))

    def dumps(self) -> str:
        return json.dumps([list(s) for s in self.samples], separators=(",", ":"))

    @classmethod
    def loads(cls, text: str) -> ClockWindow:
        raw = json.loads(text)
        return cls(tuple((float(t), float(v)) for t, v in raw))


def correct(wall: float, synced: bool, offset: float | None,
            policy: ClockPolicy) -> tuple[float, Method]:
    """(corrected wall, method): the terminal's wall when it can be believed, else shifted.

    An unsynchronised clock is corrected even when the estimate is small: the estimate is
    the better of the two numbers then, and it is never worse than the delay.
    """
    if offset is None or (synced and abs(offset) <= policy.threshold_s):
        return wall, "terminal"
    return wall + offset, "offset"


def newsworthy(previous: float | None, previous_synced: bool | None, offset: float,
               synced: bool | None, policy: ClockPolicy) -> bool:
    """Whether an estimate belongs in the offset history (first, moved, or sync changed)."""
    if previous is None:
        return True
    if synced is not None and synced != previous_synced:
        return True
    return abs(offset - previous) >= policy.history_step_s


def newest(walls: Sequence[tuple[int, float, bool]]) -> tuple[float, bool]:
    """(wall, synced) of the record with the highest seq among (seq, wall, synced)."""
    _, wall, synced = max(walls, key=lambda r: r[0])
    return wall, synced
