"""Fidelity mode end to end: the firmware inside a real `micropython` process, its UART
bridged to the simulator's pty, read by a pyserial host that speaks the protocol."""

from __future__ import annotations

from pathlib import Path

import pytest
import serial

from devstack.testkit.wait import wait
from firmware_bridge import codec
from hw_sim.micropython_host import MicroPythonController, micropython_binary
from hw_sim.runner import Runner
from hw_sim.scenario import Scenario
from xiaodian.config import build

pytestmark = pytest.mark.skipif(micropython_binary() is None, reason="no micropython binary")


def test_micropython_firmware_on_a_pty_is_read_and_receipted(tmp_path: Path) -> None:
    raw = {
        "sim": {"seed": 5, "speed": 20.0, "link_dir": "run", "truth": "run/truth.jsonl"},
        "fridges": [
            {
                "id": "fridge-1",
                "controller": "micropython",
                "initial_air_c": 9.0,
                "door_openings_per_hour": 0,
            }
        ],
    }
    r = Runner(build(raw, Scenario, tmp_path / "scenario.toml"))
    try:
        ctl = r.devices[0].sim.controller  # type: ignore[attr-defined]
        assert isinstance(ctl, MicroPythonController)
        port = serial.Serial(str(r.scenario.sim.link_dir / "fridge-1"), 115200, timeout=0)
        port.write(codec.encode_frame(codec.GET_HELLO, 1, b"", codec.ACK_REQUESTED))
        dec = codec.FrameDecoder()
        got: list[codec.Frame] = []
        def two_temps() -> bool:
            r.run(for_real_s=0.05)
            got.extend(dec.feed(port.read(4096)))
            return len([f for f in got if f.type == codec.TEMP]) >= 2

        wait(two_temps, 60, "two TEMP frames from the firmware", interval=0)
        msgs = [(f, codec.decode_message(f.type, f.payload)) for f in got]
        hello = [m for f, m in msgs if f.type == codec.HELLO]
        assert hello and hello[-1] is not None and hello[-1]["device_id"] == "fridge-1"
        temps = [m for f, m in msgs if f.type == codec.TEMP and m is not None]
        assert len(temps) >= 2
        air = temps[-1]["probes"][0]
        assert air[1] == "ok" and 3.0 < air[2] < 10.5  # the physics, through the fakes
        comp = [m for f, m in msgs if f.type == codec.COMPRESSOR and not f.flags & codec.REPLY]
        assert comp and comp[0] is not None and comp[0]["on"]  # 9 °C: cooling started
        assert ctl.compressor_on
        records = {f.seq for f in got if f.type in codec.LOGGED_TYPES and not f.flags & 4}
        port.write(codec.encode_frame(codec.RECEIPT, 2, codec.pack_receipt(1, sorted(records))))
        def receipted() -> bool:
            r.run(for_real_s=0.05)
            return not records & set(ctl.log)

        wait(receipted, 30, "the receipted records gone from the firmware's log", interval=0)
        assert not records & set(ctl.log)
        port.close()
    finally:
        r.close()
