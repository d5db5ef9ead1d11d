"""Minimal HX711 reader (24-bit load-cell ADC, channel A, gain 128).

`is_ready()` is a single pin read, so the lanes task asks before reading and never waits
for a conversion (10 samples per second with RATE tied low).
"""

from machine import Pin


class HX711:
    def __init__(self, d_out: Pin, pd_sck: Pin) -> None:
        self.d_out = d_out
        self.pd_sck = pd_sck
        pd_sck.value(0)

    def is_ready(self) -> bool:
        return self.d_out.value() == 0

    def read(self) -> int:
        """One conversion, two's complement; call only when is_ready()."""
        value = 0
        for _ in range(24):
            self.pd_sck.value(1)
            self.pd_sck.value(0)
            value = (value << 1) | self.d_out.value()
        self.pd_sck.value(1)  # 25th pulse: channel A, gain 128 for the next conversion
        self.pd_sck.value(0)
        if value & 0x800000:
            value -= 0x1000000
        return value
