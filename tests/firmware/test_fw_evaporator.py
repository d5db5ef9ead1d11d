"""The firmware's evaporator (defrost termination) probe, on both interpreters: the firmware
in-process under CPython with the fakes, and in a real `micropython` process (its clock
SPEED x real time). A defrost ends `temperature` when the coil probe reads defrost_end,
`timeout` without the probe, and `timeout` when the probe drops out mid-defrost (or
reads the 85 °C power-on value), with the heater off either way."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from devstack.testkit.wait import wait
from firmware_bridge import codec
from hw_sim.controller import OutFrame
from hw_sim.fakes.simboard import PROBE_CRC, PROBE_MISSING, PROBE_POWER_ON
from hw_sim.firmware_host import FirmwareController
from hw_sim.micropython_host import MicroPythonController, micropython_binary

C = 16  # raw counts per °C
RAW_MISSING = -127 * C
SPEED = 20.0
DEFROST_MIN = 2
SETTINGS: dict[str, Any] = {
    "device_id": "fridge-1",
    "sample_interval_s": 5,
    "heartbeat_interval_s": 10,
    "defrost_every_min": 0,
    "defrost_heater": True,
}
INTERPRETERS = [
    "cpython",
    pytest.param("micropython", marks=pytest.mark.skipif(
        micropython_binary() is None, reason="no micropython binary")),
]


class Rig:
    """One controller board without physics: the coil temperature is what the test says.
    `cpython` steps simulated time by 1 s; `micropython` lets its own clock run."""

    def __init__(self, interp: str, tmp_path: Path, **settings: Any) -> None:
        cfg = {**SETTINGS, **settings}
        self.interp = interp
        self.c: FirmwareController | MicroPythonController
        if interp == "cpython":
            self.c = FirmwareController("fridge-1", cfg, tmp_path / "flash")
        else:
            self.c = MicroPythonController("fridge-1", cfg, tmp_path / "flash", speed=SPEED)
        self.ms = 0
        self.start = time.monotonic()
        self.evap = -5 * C
        self.fault: str | None = None  # "missing" or "crc" on the coil probe
        self.records: list[OutFrame] = []
        self.hellos: list[dict[str, Any]] = []
        self.seq = 10
        self._feed(self._tick())
        self.send(codec.GET_HELLO)

    def close(self) -> None:
        if isinstance(self.c, MicroPythonController):
            self.c.close()

    def _tick(self) -> list[OutFrame]:
        c = self.c
        if isinstance(c, FirmwareController):
            self.ms += 1000
            if len(c.board.probe_fault) > 2:
                c.board.probe_fault[2] = self.fault
            return c.tick(self.ms, 3 * C, 3 * C, False, True, (), self.evap)
        self.ms = round((time.monotonic() - self.start) * 1000 * SPEED)
        if c.probe_count > 2:
            c.inputs["probes"][2] = [self.evap, self.fault]
        return c.tick(self.ms, 3 * C, 3 * C, False, True, ())

    def _feed(self, frames: list[OutFrame]) -> None:
        self.hellos += [f.fields for f in frames if f.kind == "hello"]
        new, _lost = self.c.take_new_records()
        self.records += new

    def send(self, msg_type: int, payload: bytes = b"") -> None:
        self.seq += 1
        self._feed(self.c.receive(codec.encode_frame(msg_type, self.seq, payload,
                                                     codec.ACK_REQUESTED)))

    def run_until(self, cond: Any, sim_s: float, what: str) -> Any:
        """Until `cond()` holds; `sim_s` of simulated time bounds a hang."""
        if self.interp == "cpython":
            for _ in range(round(sim_s)):
                self._feed(self._tick())
                if cond():
                    return cond()
            raise AssertionError(f"no {what} within {sim_s} s")

        def ticked() -> Any:
            self._feed(self._tick())
            return cond()

        return wait(ticked, sim_s / SPEED + 30, what, interval=0.02)

    def run(self, sim_s: float) -> None:
        end = self.ms + sim_s * 1000
        self.run_until(lambda: self.ms >= end, sim_s + 5, f"{sim_s} s")

    def defrosts(self) -> list[tuple[int, bool, str]]:
        return [(f.fields["dev_ms"], f.fields["active"], f.fields["reason"])
                for f in self.records if f.kind == "defrost"]

    def ended(self) -> list[tuple[int, bool, str]]:
        return [d for d in self.defrosts() if not d[1]]

    def temps(self) -> list[list[Any]]:
        return [f.fields["probes"] for f in self.records if f.kind == "temp"]

    def defrost_now(self) -> int:
        self.send(codec.DEFROST_NOW, codec.pack_defrost_now(DEFROST_MIN))
        self.run_until(lambda: self.defrosts(), 10, "defrost start")
        (start,) = self.defrosts()
        assert start[1:] == (True, "command")
        return start[0]


@pytest.fixture
def rig(tmp_path: Path) -> Any:
    made: list[Rig] = []

    def make(interp: str, **settings: Any) -> Rig:
        r = Rig(interp, tmp_path, **settings)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@pytest.mark.parametrize("interp", INTERPRETERS)
def test_a_defrost_ends_on_temperature_when_the_coil_probe_reads_warm(
    interp: str, rig: Any
) -> None:
    r = rig(interp, evaporator_probe=True, defrost_end_tenths=80)
    r.run_until(lambda: r.temps(), 30, "a TEMP record")
    assert r.hellos and r.hellos[-1]["probe_count"] == 3
    assert [p[:2] for p in r.temps()[-1]] == [[0, "ok"], [1, "ok"], [2, "ok"]]
    assert r.temps()[-1][2][2] == -5.0
    start = r.defrost_now()
    r.evap = 7 * C  # warming, but short of the 8 °C end
    r.run(20)
    assert not r.ended() and r.c.heater_on
    r.evap = 9 * C
    r.run_until(lambda: r.ended(), 30, "defrost end")
    ((end_ms, _, reason),) = r.ended()
    assert reason == "temperature"
    assert end_ms - start < DEFROST_MIN * 60_000  # well before its timer
    r.run(3)
    assert not r.c.heater_on


@pytest.mark.parametrize("interp", INTERPRETERS)
def test_without_the_probe_a_defrost_ends_on_its_timer_as_before(
    interp: str, rig: Any
) -> None:
    r = rig(interp)
    r.evap = 20 * C  # no probe on the bus: nobody reads this
    r.run_until(lambda: r.temps(), 30, "a TEMP record")
    assert r.hellos[-1]["probe_count"] == 2
    assert all(len(p) == 2 for p in r.temps())
    start = r.defrost_now()
    r.run_until(lambda: r.ended(), DEFROST_MIN * 60 + 30, "defrost end")
    ((end_ms, _, reason),) = r.ended()
    assert reason == "timeout" and end_ms - start >= DEFROST_MIN * 60_000
    r.run(3)
    assert not r.c.heater_on


@pytest.mark.parametrize("fault", [PROBE_MISSING, PROBE_CRC, PROBE_POWER_ON])
@pytest.mark.parametrize("interp", INTERPRETERS)
def test_a_coil_probe_lost_mid_defrost_leaves_the_defrost_to_its_timer(
    interp: str, fault: str, rig: Any
) -> None:
    r = rig(interp, evaporator_probe=True)
    r.run_until(lambda: r.temps(), 30, "a TEMP record")
    start = r.defrost_now()
    r.run(10)
    # The coil warms past its end temperature while the probe cannot be read: only an ok
    # reading may end the defrost early, so it runs out its timer, heater off at the end.
    r.fault, r.evap = fault, 20 * C  # "power_on" reads 85 °C whatever the coil is
    r.run_until(lambda: r.ended(), DEFROST_MIN * 60 + 30, "defrost end")
    ((end_ms, _, reason),) = r.ended()
    assert reason == "timeout" and end_ms - start >= DEFROST_MIN * 60_000
    status = {PROBE_POWER_ON: "suspect"}.get(fault, fault)  # 85.0 °C: reset, never converted
    assert status in [p[2][1] for p in r.temps()]
    r.run(3)
    assert not r.c.heater_on
