"""The fidelity host restarts a micropython process that died while host bytes were still
buffered for it (seen when a firmware update's frames met a resetting controller): the
simulator goes on, the bytes are lost as on a board that reset mid-frame."""

from __future__ import annotations

from pathlib import Path

import pytest

from hw_sim.fridge import SimFridge
from hw_sim.micropython_host import MicroPythonController, micropython_binary
from hw_sim.scenario import FridgeSpec


@pytest.mark.skipif(micropython_binary() is None, reason="no micropython binary")
def test_a_process_that_died_with_bytes_pending_is_restarted(tmp_path: Path) -> None:
    spec = FridgeSpec(id="fridge-1", controller="micropython", door_openings_per_hour=0)
    f = SimFridge(spec, seed=1, flash_dir=tmp_path, speed=20.0)
    try:
        ctl = f.controller
        assert isinstance(ctl, MicroPythonController) and ctl.proc is not None
        first = ctl.proc
        first.kill()
        first.wait(5)
        ctl.receive(b"\x01" * 64)  # buffered, its flush meets the broken pipe: restarted
        assert ctl.resets == 1 and ctl.proc is not None and ctl.proc is not first
        assert ctl.proc.poll() is None
    finally:
        f.close()
