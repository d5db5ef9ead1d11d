"""Fake `onewire`: the bus object and its error; ds18x20 does the talking."""

from __future__ import annotations

from hw_sim.fakes import simboard
from hw_sim.fakes.simboard import SimBoard


class OneWireError(Exception):
    pass


class OneWire:
    def __init__(self, pin: object) -> None:
        self.board: SimBoard = simboard.active()

    def scan(self) -> list[bytes]:
        b = self.board
        return [r for r, f in zip(b.probe_roms, b.probe_fault, strict=True) if f != "missing"]
