"""Fake `ds18x20`: the driver API MicroPython ships (scan, convert_temp, read_temp) with the
failures a real bus shows: no presence (OneWireError), a bad scratchpad CRC
(Exception("CRC error"), as the real driver raises) and the 85.0 power-on value.

Values are latched at convert_temp(), as the sensor does, and readable after 750 ms.
"""

from __future__ import annotations

from hw_sim.fakes.cpython.onewire import OneWire, OneWireError
from hw_sim.fakes.simboard import PROBE_CRC, PROBE_MISSING, PROBE_POWER_ON


class DS18X20:
    def __init__(self, onewire: OneWire) -> None:
        self.ow = onewire
        self._latched: dict[bytes, float] = {}
        self._converted_ms = -(10**9)

    def scan(self) -> list[bytes]:
        return self.ow.scan()

    def convert_temp(self) -> None:
        b = self.ow.board
        if b.bus_error is not None:
            raise b.bus_error
        if not self.ow.scan():
            raise OneWireError("no presence")
        self._converted_ms = b.now_ms
        self._latched = {rom: raw / 16 for rom, raw in zip(b.probe_roms, b.probe_raw, strict=True)}

    def read_temp(self, rom: bytes) -> float:
        b = self.ow.board
        rom = bytes(rom)
        if rom not in b.probe_roms:
            raise OneWireError("no presence")
        fault = b.probe_fault[b.probe_roms.index(rom)]
        if fault == PROBE_MISSING:
            raise OneWireError("no presence")
        if fault == PROBE_CRC:
            raise Exception("CRC error")  # what MicroPython's driver raises
        if fault == PROBE_POWER_ON or b.now_ms - self._converted_ms < 750:
            return 85.0  # read before a conversion finished: the power-on register value
        return self._latched.get(rom, 85.0)
