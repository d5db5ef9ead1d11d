"""Simulation time: a clock running `speed` times real time, and fixed-step catch-up.

The physics advances in fixed simulated steps (1 s by default) so that its results do not
depend on how busy the host is. When the process falls behind (a slow machine, a stopped
debugger), it runs at most `max_catchup_steps` per wake-up and lets simulated time slip for
the rest; the slip is counted so a run can report how far it fell behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class SimClock:
    """Simulated seconds elapsed since `start`, at `speed` times the real clock."""

    def __init__(self, speed: float, real: Callable[[], float] = time.monotonic) -> None:
        if speed <= 0:
            raise ValueError("speed: must be > 0")
        self.speed = speed
        self._real = real
        self._origin = real()

    def now(self) -> float:
        """Simulated seconds since the clock started."""
        return (self._real() - self._origin) * self.speed

    def real_until(self, sim_t: float) -> float:
        """Real seconds to wait until simulated time reaches `sim_t` (0 when already past)."""
        return max(0.0, (sim_t - self.now()) / self.speed)

    def slip(self, sim_s: float) -> None:
        """Let simulated time fall `sim_s` seconds behind where it would have been."""
        self._origin += sim_s / self.speed


class Stepper:
    """Decides how many fixed steps are due; bounded catch-up with counted lag."""

    def __init__(self, clock: SimClock, step_s: float = 1.0, max_catchup_steps: int = 600) -> None:
        if step_s <= 0:
            raise ValueError("step_s: must be > 0")
        if max_catchup_steps < 1:
            raise ValueError("max_catchup_steps: must be >= 1")
        self.clock = clock
        self.step_s = step_s
        self.max_catchup_steps = max_catchup_steps
        self.steps_done = 0
        self.lag_events = 0  # wake-ups that had to drop steps
        self.lag_sim_s = 0.0  # simulated time given up to stay responsive

    @property
    def sim_time(self) -> float:
        """Simulated time the physics has reached."""
        return self.steps_done * self.step_s

    def due(self) -> int:
        """Steps to run now; drops (and counts) any beyond `max_catchup_steps`."""
        # The epsilon keeps float rounding (59.99999 steps) from delaying a step a whole wake-up.
        behind = int((self.clock.now() - self.sim_time) / self.step_s + 1e-9)
        if behind <= self.max_catchup_steps:
            return max(0, behind)
        dropped = behind - self.max_catchup_steps
        self.clock.slip(dropped * self.step_s)
        self.lag_events += 1
        self.lag_sim_s += dropped * self.step_s
        return self.max_catchup_steps

    def done(self, steps: int) -> None:
        self.steps_done += steps

    def real_until_next(self) -> float:
        """Real seconds until the next step falls due."""
        return self.clock.real_until(self.sim_time + self.step_s)
