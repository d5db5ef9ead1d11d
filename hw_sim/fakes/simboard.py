"""The state of one simulated controller board: pin levels, UART buffers, probe values,
load cells and the watchdog, shared by the CPython fakes and the firmware host."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

# machine.reset_cause() values, as on the ESP32 port.
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

# What a probe can suffer, as the driver sees it.
PROBE_MISSING = "missing"  # no presence pulse: unplugged or a broken wire
PROBE_CRC = "crc"  # scratchpad CRC fails: noise on a long cable
PROBE_POWER_ON = "power_on"  # reads 85.0: the probe reset and never converted


class DeviceReset(BaseException):
    """machine.reset() on the fake board: the host reboots the firmware. A BaseException so
    the firmware's `except Exception` cannot swallow it."""


class SimBoard:
    def __init__(self, device_id: str, probes: int = 2, lanes: int = 0) -> None:
        self.device_id = device_id
        self.now_ms = 0  # firmware clock (ms since this boot), set by the host
        self.pins: dict[int, int] = {}
        self.uart_rx = bytearray()
        self.uart_tx = bytearray()
        # ROM codes: family 0x28 (DS18B20), a serial from the index, CRC byte not checked.
        self.probe_roms = [bytes([0x28, i + 1, 0, 0, 0, 0, 0x10, 0]) for i in range(probes)]
        self.probe_raw = [0] * probes  # 1/16 °C, what the physics says now
        self.probe_fault: list[str | None] = [None] * probes
        self.bus_error: BaseException | None = None  # raised by convert_temp (tests)
        self.lane_raw = [0] * lanes
        self.backup_mv = 4100
        self.reset_cause = PWRON_RESET
        self.wdt_timeout_ms: int | None = None
        self.wdt_fed_ms = 0

    def unique_id(self) -> bytes:
        return self.device_id.encode()[-6:].rjust(6, b"\x00")

    def watchdog_expired(self) -> bool:
        t = self.wdt_timeout_ms
        return t is not None and self.now_ms - self.wdt_fed_ms > t

    def adc_u16(self, pin: int) -> int:
        # The backup cell through a 1:2 divider on a 3.3 V, 16-bit ADC.
        return max(0, min(65535, round(self.backup_mv / 6600 * 65535)))


_active: SimBoard | None = None


def active() -> SimBoard:
    if _active is None:
        raise RuntimeError("no SimBoard active: hardware made outside firmware_host.using()")
    return _active


@contextlib.contextmanager
def using(board: SimBoard) -> Iterator[SimBoard]:
    """Hardware objects the firmware makes inside this block belong to `board`."""
    global _active
    previous, _active = _active, board
    try:
        yield board
    finally:
        _active = previous
