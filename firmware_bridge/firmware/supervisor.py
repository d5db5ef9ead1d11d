"""The only code that feeds the hardware watchdog, and only while every task is alive.

Each task checks in whenever it runs; a task that died (an exception ended it) or hangs
stops checking in, the watchdog is no longer fed and the board resets, reporting reset
cause `watchdog` in its next HELLO.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

WDT_TIMEOUT_MS = 8000  # the RP2040 allows at most 8388 ms


class Supervisor:
    def __init__(self) -> None:
        self.wdt: Any = None
        self._last: dict[str, int] = {}
        self._max_gap: dict[str, int] = {}
        self.starved = ""  # the task that stopped checking in, for diagnosis

    def register(self, name: str, max_gap_ms: int, now_ms: int) -> None:
        self._max_gap[name] = max_gap_ms
        self._last[name] = now_ms

    def alive(self, name: str, now_ms: int) -> None:
        self._last[name] = now_ms

    def healthy(self, now_ms: int) -> bool:
        for name in self._max_gap:
            if now_ms - self._last[name] > self._max_gap[name]:
                self.starved = name
                return False
        return True

    def check(self, now_ms: int) -> bool:
        """Feed the watchdog if every task checked in on time; returns whether it fed."""
        if not self.healthy(now_ms):
            return False
        if self.wdt is not None:
            self.wdt.feed()
        return True
