"""Fake HX711 driver (same API as firmware_bridge/firmware/hx711.py): raw counts per lane
from the SimBoard, lanes found by their DOUT pin in the firmware's pin map."""

from __future__ import annotations

import importlib

from hw_sim.fakes import simboard


class HX711:
    def __init__(self, d_out: object, pd_sck: object) -> None:
        self._board = simboard.active()
        pin = getattr(d_out, "id", -1)
        pins = importlib.import_module("pins")  # the firmware's pin map
        douts = [d for d, _ in pins.LANES]
        self._lane = douts.index(pin) if pin in douts else -1

    def is_ready(self) -> bool:
        return 0 <= self._lane < len(self._board.lane_raw)

    def read(self) -> int:
        return self._board.lane_raw[self._lane]
