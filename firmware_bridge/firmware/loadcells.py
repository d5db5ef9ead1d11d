"""Load cells per lane (HX711-class): grams and a stable flag, polled without blocking.

A read happens only when the converter says a sample is ready, so the loop never waits
for the 10 Hz conversion. Tare and calibration live in the persisted configuration.
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
