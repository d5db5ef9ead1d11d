"""Fake `machine` for the firmware in-process: Pin, UART, ADC, WDT, reset and reset cause
against the active SimBoard."""

from __future__ import annotations

from typing import NoReturn

from hw_sim.fakes import simboard
from hw_sim.fakes.simboard import (
    DEEPSLEEP_RESET,
    HARD_RESET,
    PWRON_RESET,
    SOFT_RESET,
    WDT_RESET,
    DeviceReset,
)

__all__ = ["DEEPSLEEP_RESET", "HARD_RESET", "PWRON_RESET", "SOFT_RESET", "WDT_RESET"]


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, id: int, mode: int = -1, pull: int = -1, *, value: int | None = None):
        self.id = id
        self._board = simboard.active()
        if value is not None:
            self._board.pins[id] = value
        elif pull == Pin.PULL_UP:
            self._board.pins.setdefault(id, 1)

    def value(self, v: int | None = None) -> int:
        if v is None:
            return self._board.pins.get(self.id, 0)
        self._board.pins[self.id] = 1 if v else 0
        return 0

    def on(self) -> None:
        self.value(1)

    def off(self) -> None:
        self.value(0)


class UART:
    def __init__(self, id: int, baudrate: int = 115200, **kwargs: object) -> None:
        self._board = simboard.active()

    def any(self) -> int:
        return len(self._board.uart_rx)

    def read(self, nbytes: int | None = None) -> bytes | None:
        rx = self._board.uart_rx
        if not rx:
            return None
        n = len(rx) if nbytes is None else min(nbytes, len(rx))
        data = bytes(rx[:n])
        del rx[:n]
        return data

    def write(self, buf: bytes) -> int:
        self._board.uart_tx += buf
        return len(buf)


class ADC:
    def __init__(self, pin: Pin | int, **kwargs: object) -> None:
        self._board = simboard.active()
        self._pin = pin.id if isinstance(pin, Pin) else pin

    def read_u16(self) -> int:
        return self._board.adc_u16(self._pin)


class WDT:
    def __init__(self, id: int = 0, timeout: int = 5000) -> None:
        self._board = simboard.active()
        self._board.wdt_timeout_ms = timeout
        self._board.wdt_fed_ms = self._board.now_ms

    def feed(self) -> None:
        self._board.wdt_fed_ms = self._board.now_ms


def reset_cause() -> int:
    return simboard.active().reset_cause


def unique_id() -> bytes:
    return simboard.active().unique_id()


def reset() -> NoReturn:
    raise DeviceReset("soft")
