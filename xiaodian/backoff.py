"""Bounded exponential back-off with full jitter, so a fleet does not reconnect in step."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    def __init__(
        self,
        minimum: float,
        maximum: float,
        *,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if minimum <= 0 or maximum < minimum:
            raise ValueError("need 0 < minimum <= maximum")
        self.minimum = minimum
        self.maximum = maximum
        self._rand = rand
        self.attempts = 0

    def next_delay(self) -> float:
        """Delay before the next attempt: uniform in [min, min(max, min * 2**n)]."""
        ceiling = min(self.maximum, self.minimum * float(2 ** min(self.attempts, 30)))
        self.attempts += 1
        return self.minimum + (ceiling - self.minimum) * self._rand()

    def reset(self) -> None:
        self.attempts = 0
