"""Load cells per lane (HX711-class): grams and a stable flag, polled without blocking.

A read happens only when the converter says a sample is ready, so the loop never waits
for the 10 Hz conversion. Tare and calibration live in the persisted configuration.
`Reporter` decides when the lanes are worth a LANES record: once after boot, then only
when a stable weight moved by more than the deadband or a stable flag flipped, so a
shelf nobody touches costs nothing on the wire however often it is sampled.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

WINDOW = 5  # samples judged for stability
STABLE_G = 2.0  # spread within the window, grams


class Lane:
    def __init__(self, cell: "Any", offset: int = 0, scale: float = 1.0) -> None:
        self.cell = cell
        self.offset = offset
        self.scale = scale if scale else 1.0
        self._raw: list[int] = []
        self.errors = 0

    def poll(self) -> bool:
        """Take a sample if one is ready; True if one was taken."""
        try:
            if not self.cell.is_ready():
                return False
            raw = self.cell.read()
        except OSError:
            self.errors += 1
            return False
        self._raw.append(raw)
        if len(self._raw) > WINDOW:
            self._raw.pop(0)
        return True

    def mean_raw(self) -> "float | None":
        if not self._raw:
            return None
        return sum(self._raw) / len(self._raw)

    def grams(self) -> "float | None":
        m = self.mean_raw()
        return None if m is None else (m - self.offset) / self.scale

    def report(self) -> "tuple[int, bool]":
        """(whole grams, stable) as a LANES record carries them; (0, False) before a sample."""
        g = self.grams()
        if g is None:
            return (0, False)
        return (round(g), self.stable())

    def filled(self) -> bool:
        return len(self._raw) >= WINDOW

    def stable(self) -> bool:
        if len(self._raw) < WINDOW:
            return False
        return (max(self._raw) - min(self._raw)) / abs(self.scale) <= STABLE_G

    def tare(self) -> bool:
        m = self.mean_raw()
        if m is None:
            return False
        self.offset = round(m)
        return True

    def calibrate(self, grams: int) -> bool:
        m = self.mean_raw()
        if m is None or grams <= 0 or m == self.offset:
            return False
        self.scale = (m - self.offset) / grams
        return True


class Reporter:
    def __init__(self, deadband_g: int = 5, boot_wait_ms: int = 2000) -> None:
        self.deadband_g = deadband_g
        self.boot_wait_ms = boot_wait_ms  # boot report even if a lane never gives a sample
        self.last: list[tuple[int, bool]] | None = None  # what the last record said

    def due(self, now_ms: int, lanes: "list[tuple[int, bool]]", filled: bool) -> bool:
        """Whether `lanes` (from Lane.report) needs a record now; if so it becomes `last`."""
        last = self.last
        if last is None:
            if not filled and now_ms < self.boot_wait_ms:
                return False
        elif not self._changed(last, lanes):
            return False
        self.last = list(lanes)
        return True

    def _changed(self, last: "list[tuple[int, bool]]", lanes: "list[tuple[int, bool]]") -> bool:
        if len(last) != len(lanes):
            return True
        for k in range(len(lanes)):
            grams, stable = lanes[k]
            old_grams, old_stable = last[k]
            if stable != old_stable:
                return True
            # While a lane settles its grams mean little; it is judged once stable again.
            if stable and abs(grams - old_grams) > self.deadband_g:
                return True
        return False
