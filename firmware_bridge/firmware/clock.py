"""Milliseconds since boot as an unbounded int, from the port's wrapping tick counter.

`time.ticks_ms()` wraps (after ~12.4 days on 30-bit ports); the protocol's dev_ms is a
u64 that never wraps while the device runs. Call `now()` at least once per wrap period:
every task does, many times a second.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class Uptime:
    def __init__(
        self, ticks_ms: "Callable[[], Any]", ticks_diff: "Callable[[Any, Any], int]"
    ) -> None:
        # Any: the stubs give ticks their own type (_TicksMs); the simulator passes ints.
        self._ticks_ms = ticks_ms
        self._ticks_diff = ticks_diff
        self._last = ticks_ms()
        self._ms = 0

    def now(self) -> int:
        t = self._ticks_ms()
        d = self._ticks_diff(t, self._last)
        if d > 0:
            self._ms += d
            self._last = t
        return self._ms
