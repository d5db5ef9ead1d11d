"""Shelf faults (drift, item taken, restock), the watchdog fault and REBOOT's memory across
the reset, on both controllers, without ports: SimFridge stepped by hand. The watchdog and
reboot faults and REBOOT's memory also in fidelity mode (a real `micropython` process),
stepped on the real clock."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from devstack.testkit.wait import wait
from firmware_bridge import codec
from hw_sim.controller import OutFrame
from hw_sim.fridge import SimFridge
from hw_sim.micropython_host import MicroPythonController, micropython_binary
from hw_sim.scenario import FaultSpec, FridgeSpec, load_scenario
from xiaodian.config import ConfigError, build

CONTROLLERS = ["python", "firmware"]


class Host:
    """Attached host: keeps each record once (by boot and seq), every HELLO and every ACK;
    answers a boot HELLO with GET_HELLO, as the edge does."""

    def __init__(self, f: SimFridge, answer_boot_hello: bool = True) -> None:
        self.f = f
        self.answer_boot_hello = answer_boot_hello
        self.records: dict[tuple[int, int], OutFrame] = {}
        self.hellos: list[dict[str, Any]] = []
        self.acks: list[tuple[int, str]] = []
        self.sim_s = 0.0  # simulated seconds stepped so far (run_real)
        self.feed(f.receive(codec.encode_frame(codec.GET_HELLO, 1, b"", codec.ACK_REQUESTED)))

    def feed(self, frames: list[OutFrame]) -> None:
        for fr in frames:
            if fr.kind == "hello":
                self.hellos.append(fr.fields)
                boot = not codec.FrameDecoder().feed(fr.data)[0].flags & codec.REPLY
                if boot and self.answer_boot_hello:
                    hello = codec.encode_frame(codec.GET_HELLO, 99, b"", codec.ACK_REQUESTED)
                    self.feed(self.f.receive(hello))
            elif fr.kind == "ack":
                self.acks.append((fr.fields["acked_seq"], fr.fields["status"]))
            elif fr.logged:
                self.records.setdefault((self.f.controller.boot_count, fr.seq), fr)

    def run(self, seconds: int) -> None:
        for _ in range(seconds):
            self.feed(self.f.step(1.0))

    def send(self, msg_type: int, seq: int, payload: bytes = b"", flags: int = 0) -> None:
        data = codec.encode_frame(msg_type, seq, payload, codec.ACK_REQUESTED | flags)
        self.feed(self.f.receive(data))

    def lanes(self) -> list[list[tuple[int, bool]]]:
        return [
            [(x["grams"], x["stable"]) for x in fr.fields["lanes"]]
            for _, fr in sorted(self.records.items())
            if fr.kind == "lanes"
        ]


def fridge(controller: str, *faults: FaultSpec, **kw: Any) -> SimFridge:
    spec = FridgeSpec(
        id="fridge-1",
        controller=controller,  # type: ignore[arg-type]
        door_openings_per_hour=0,
        defrost_every_h=0,
        faults=faults,
        **kw,
    )
    return SimFridge(spec, seed=5)


@pytest.mark.parametrize("controller", CONTROLLERS)
def test_item_taken_restock_and_drift_show_in_lanes(controller: str) -> None:
    host = Host(
        fridge(
            controller,
            FaultSpec("item_taken", at_s=20, lane=0, grams=250),
            FaultSpec("restock", at_s=40, lane=1, grams=1000),
            FaultSpec("lane_drift", at_s=60, for_s=600, lane=2, drift_g_per_h=120),
            lanes=(1000.0, 0.0, 500.0),
        )
    )
    host.run(15)
    assert host.lanes() == [[(1000, True), (0, True), (500, True)]]
    host.run(30)
    stable = [ln for ln in host.lanes() if all(s for _, s in ln)]
    assert stable[-1] == [(750, True), (1000, True), (500, True)]
    assert host.f.lane_grams(0) == 750 and host.f.lane_grams(1) == 1000
    host.run(700)
    # 120 g/h for 10 min: 20 g of creep, reported in steps just over the 5 g deadband,
    # while the real stock on the lane never changed.
    drift = [ln[2][0] for ln in host.lanes() if ln[2][0] != 500]
    assert 3 <= len(drift) <= 4 and drift == sorted(drift), host.lanes()
    assert all(b - a > 5 for a, b in zip([500, *drift], drift, strict=False))
    assert host.lanes()[-1][2][0] in range(515, 521) and host.f.lane_grams(2) == 500
    host.run(600)  # the window closed: the cell stays where it crept to, quietly
    assert host.lanes()[-1][2][0] in range(515, 521)


@pytest.mark.parametrize("controller", CONTROLLERS)
def test_watchdog_fault_resets_the_controller_with_cause_watchdog(controller: str) -> None:
    host = Host(fridge(controller, FaultSpec("watchdog", at_s=30)))
    host.run(29)
    assert {h["reset_cause"] for h in host.hellos} == {"power_on"}
    host.run(40)
    causes = [(h["reset_cause"], h["boot_count"]) for h in host.hellos]
    assert causes[-1] == ("watchdog", 2) and ("soft", 2) not in causes
    # The controller is back at work: readings of the new boot.
    host.run(30)
    assert any(boot == 2 and fr.kind == "temp" for (boot, _), fr in host.records.items())


@pytest.mark.parametrize("controller", CONTROLLERS)
def test_a_reboot_retried_after_the_reset_is_a_duplicate_not_a_second_reboot(
    controller: str,
) -> None:
    # A host still waiting for that ACK: it retries before anything else.
    host = Host(fridge(controller), answer_boot_hello=False)
    host.run(5)
    host.send(codec.REBOOT, 40)
    host.run(3)  # the ACK was lost on the way; the device restarted meanwhile
    assert [h["boot_count"] for h in host.hellos][-1] == 2
    host.send(codec.REBOOT, 40, flags=codec.RETRANSMISSION)
    host.run(3)
    assert host.acks[-2:] == [(40, "ok"), (40, "duplicate")]
    assert host.f.controller.boot_count == 2  # not rebooted a second time
    # A new host session numbers afresh: after its GET_HELLO the same seq is a new REBOOT.
    host.send(codec.GET_HELLO, 41)
    host.send(codec.REBOOT, 40)
    host.run(3)
    assert host.acks[-1] == (40, "ok") and host.f.controller.boot_count == 3


def test_firmware_keeps_the_reboot_seq_in_flash(tmp_path: Path) -> None:
    spec = FridgeSpec(id="fridge-1", controller="firmware", door_openings_per_hour=0)
    f = SimFridge(spec, seed=1, flash_dir=tmp_path)
    host = Host(f, answer_boot_hello=False)
    host.send(codec.REBOOT, 9)
    host.run(1)
    assert '"reboot_seq": 9' in (tmp_path / "config.json").read_text()
    host.send(codec.GET_HELLO, 10)
    assert '"reboot_seq": -1' in (tmp_path / "config.json").read_text()


@pytest.mark.parametrize(
    ("fault", "key"),
    [
        ({"fault": "item_taken", "at_s": 1, "lane": 0}, "grams"),
        ({"fault": "restock", "at_s": 1, "grams": 5}, "lane"),
        ({"fault": "lane_drift", "at_s": 1, "for_s": 5, "lane": 0}, "drift_g_per_h"),
        ({"fault": "item_taken", "at_s": 1, "lane": 3, "grams": 5}, "faults"),
        ({"fault": "reboot", "at_s": 1, "lane": 0}, "lane"),
        ({"fault": "watchdog", "at_s": 1, "for_s": 3}, "for_s"),
    ],
)
def test_bad_lane_and_watchdog_faults_name_the_key(fault: dict[str, Any], key: str) -> None:
    raw = {"id": "f", "lanes": [100, 200], "faults": [fault]}
    with pytest.raises(ConfigError, match=key):
        build(raw, FridgeSpec, "s.toml")  # type: ignore[arg-type]


def test_the_shipped_shelves_scenario_loads() -> None:
    path = Path(__file__).resolve().parents[2] / "hw_sim" / "scenarios" / "shelves.toml"
    (spec,) = load_scenario(path).fridges
    assert spec.lock and spec.lanes == (1200.0, 800.0, 0.0)
    assert {f.fault for f in spec.faults} == {"item_taken", "restock", "lane_drift", "watchdog"}


# -- fidelity mode: the firmware in a real micropython process, its clock SPEED x real time --

SPEED = 20.0
needs_micropython = pytest.mark.skipif(micropython_binary() is None, reason="no micropython")


def run_real(host: Host, done: Any, what: str, limit_s: float = 60.0,
             hold_before_s: float | None = None) -> None:
    """Step the fridge on the real clock until `done()`; `limit_s` only bounds a hang.

    The firmware process keeps its own clock (speed x real time) and the simulation steps
    by real time too, so on a loaded machine a slow process start can let simulated time
    reach a scheduled fault before the firmware has said anything. `hold_before_s` holds
    the simulated clock just short of that time until `done()`."""
    last = time.monotonic()

    def stepped() -> bool:
        nonlocal last
        if done():
            return True
        now = time.monotonic()
        dt = (now - last) * SPEED
        if hold_before_s is not None:
            dt = max(0.0, min(dt, hold_before_s - 0.5 - host.sim_s))
        host.sim_s += dt
        host.feed(host.f.step(dt))
        last = now
        return False

    try:
        wait(stepped, limit_s, what, interval=0.02)
    except AssertionError:
        raise AssertionError(f"no {what} within {limit_s} s: {host.hellos}") from None


def fidelity(*faults: FaultSpec, flash: Path) -> SimFridge:
    spec = FridgeSpec(
        id="fridge-1",
        controller="micropython",
        door_openings_per_hour=0,
        defrost_every_h=0,
        sample_interval_s=10,
        faults=faults,
    )
    return SimFridge(spec, seed=5, flash_dir=flash, speed=SPEED)


def causes(host: Host) -> list[tuple[str, int]]:
    return [(h["reset_cause"], h["boot_count"]) for h in host.hellos]


def temps_of_boot(host: Host, boot: int) -> list[OutFrame]:
    return [fr for (b, _), fr in host.records.items() if b == boot and fr.kind == "temp"]


FAULT_AT_S = 15


@needs_micropython
@pytest.mark.parametrize(("fault", "cause"), [("watchdog", "watchdog"), ("reboot", "soft")])
def test_fidelity_watchdog_and_reboot_faults_restart_the_process(
    fault: str, cause: str, tmp_path: Path
) -> None:
    f = fidelity(FaultSpec(fault, at_s=FAULT_AT_S), flash=tmp_path)  # type: ignore[arg-type]
    try:
        ctl = f.controller
        assert isinstance(ctl, MicroPythonController)
        host = Host(f)
        first_pid = ctl.proc.pid if ctl.proc else None
        run_real(host, lambda: temps_of_boot(host, 1), "reading before the fault",
                 hold_before_s=FAULT_AT_S)
        assert not [c for c, b in causes(host) if b == 2]  # the fault has not fired yet
        assert {c for c, _ in causes(host)} == {"power_on"}
        run_real(host, lambda: any(b == 2 for _, b in causes(host)), "HELLO of the new boot")
        assert causes(host)[-1] == (cause, 2)
        assert ctl.resets == 1 and ctl.proc is not None and ctl.proc.pid != first_pid
        # The boot count came from the fake flash the new process read, and the firmware
        # streams again after the host's GET_HELLO: readings of the new boot.
        assert '"boot_count": 2' in (tmp_path / "config.json").read_text()
        run_real(host, lambda: temps_of_boot(host, 2), "reading of the new boot")
        assert [c for c, b in causes(host) if b == 2] == [cause, cause]  # boot, then reply
    finally:
        f.close()


@needs_micropython
def test_fidelity_reboot_retried_after_the_reset_is_a_duplicate(tmp_path: Path) -> None:
    f = fidelity(flash=tmp_path)
    try:
        host = Host(f, answer_boot_hello=False)
        run_real(host, lambda: len(host.hellos) >= 2, "HELLO of the session")
        host.send(codec.REBOOT, 40)
        run_real(host, lambda: causes(host)[-1] == ("soft", 2), "HELLO after REBOOT")
        host.send(codec.REBOOT, 40, flags=codec.RETRANSMISSION)
        run_real(host, lambda: len([a for a in host.acks if a[0] == 40]) >= 2, "ACK of retry")
        assert host.acks[-2:] == [(40, "ok"), (40, "duplicate")]
        assert f.controller.boot_count == 2 and causes(host)[-1] == ("soft", 2)
    finally:
        f.close()
