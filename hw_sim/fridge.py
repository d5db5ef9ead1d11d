"""One simulated fridge: physics + probes + customers + controller, and its pty endpoint.

`SimFridge` is pure (seeded, time advanced by the caller) so tests can run a simulated day
in a fraction of a second; `FridgeDevice` connects it to a `PtyPort` and ground truth, and
applies the link faults (cable pulled, line noise) to the port.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hw_sim.controller import ControllerConfig, FridgeController, OutFrame
from hw_sim.fakes.simboard import SOFT_RESET
from hw_sim.faults import FaultTimeline, LineNoise, Transition
from hw_sim.firmware_host import FirmwareController, firmware_settings
from hw_sim.hardware import RAW_PER_G, CustomerDoor, Door, Ds18b20, LoadCell, lane_zero_raw
from hw_sim.micropython_host import MicroPythonController
from hw_sim.ptylink import PtyPort
from hw_sim.scenario import FridgeSpec
from hw_sim.slow_faults import (
    Dropouts,
    Evaporator,
    EvaporatorParams,
    capacity_factor,
    icing,
)
from hw_sim.thermal import FridgeThermal, ThermalParams
from hw_sim.truth import TruthWriter

# A door ajar (not latched, the switch still reads shut) leaks this share of a fully open
# door's heat exchange: 10 W/K with the default 60 W/K, inside the 5–15 W/K of
# docs/design.md ("Cold chain").
AJAR_SHARE = 1 / 6
# The task a `watchdog` fault hangs: a 1-Wire read that never returns is the classic case.
WATCHDOG_TASK = "probes"


def controller_config(spec: FridgeSpec) -> ControllerConfig:
    return ControllerConfig(
        # A fridge whose scenario cuts the power is one fitted with a mains sense.
        power_monitor=any(f.fault == "power_cut" for f in spec.faults),
        set_point_c=spec.set_point_c,
        min_off_s=spec.min_off_s,
        sample_interval_s=spec.sample_interval_s,
        heartbeat_interval_s=spec.heartbeat_interval_s,
        defrost_every_s=spec.defrost_every_h * 3600.0,
        defrost_s=spec.defrost_minutes * 60.0,
        defrost_heater=spec.defrost_heater,
        lock=spec.lock,
        evaporator_probe=spec.evaporator_probe,
        defrost_end_c=spec.defrost_end_c,
        lane_offsets=tuple(lane_zero_raw(k) for k in range(len(spec.lanes))),
        lane_scales=(RAW_PER_G,) * len(spec.lanes),
    )


def make_controller(
    spec: FridgeSpec, flash_dir: Path | None = None, speed: float = 1.0
) -> FridgeController | FirmwareController | MicroPythonController:
    """The controller the scenario asked for; `flash_dir` keeps the firmware's config file."""
    if spec.controller == "python":
        return FridgeController(spec.id, controller_config(spec))
    settings = firmware_settings(spec, controller_config(spec).power_monitor)
    if spec.controller == "firmware":
        return FirmwareController(spec.id, settings, flash_dir)
    return MicroPythonController(spec.id, settings, flash_dir, speed)


class SimFridge:
    def __init__(
        self,
        spec: FridgeSpec,
        seed: int,
        params: ThermalParams | None = None,
        flash_dir: Path | None = None,
        speed: float = 1.0,
    ) -> None:
        self.spec = spec
        self.thermal = FridgeThermal(
            params or ThermalParams(), spec.ambient_c, spec.air_start_c, spec.product_start_c
        )

        # One stream per purpose, so adding a door opening never changes a probe's offset.
        def rng(purpose: str) -> random.Random:
            return random.Random(f"{seed}/{spec.id}/{purpose}")

        self.air_probe = Ds18b20(rng("probe0"))
        self.product_probe = Ds18b20(rng("probe1"))
        self.evaporator = Evaporator(EvaporatorParams(), spec.air_start_c)
        self.evaporator_probe = Ds18b20(rng("probe2"))
        self._dropouts = (Dropouts(rng("dropout0")), Dropouts(rng("dropout1")))
        self.door: Door = CustomerDoor(
            rng("door"), spec.door_openings_per_hour, spec.door_open_s,
            spec.door_night_factor, spec.door_weekend_factor)
        self.controller = make_controller(spec, flash_dir, speed)
        self.time_s = 0.0
        self.door_open = False
        self._door_held = False  # open_door() until close_door()
        self.lanes = [LoadCell(k, g) for k, g in enumerate(spec.lanes)]
        self.faults = FaultTimeline(spec.faults)
        self.transitions: list[Transition] = []  # since the last `take_transitions()`

    # -- the shop floor: what a customer or a test does to the cabinet ------------------------
    # Safe to call from another thread while a Runner steps this fridge: each call is a
    # single assignment the next step picks up.

    @property
    def locked(self) -> bool:
        """The door lock holds (always False without a lock fitted)."""
        return self.spec.lock and self.controller.locked

    def open_door(self) -> bool:
        """Open the door and hold it open until close_door(); False (door stays shut) while
        the lock holds. The controller sees the switch at the next step."""
        if not self.door_open and self.locked:
            return False
        self._door_held = True
        self.door_open = True
        return True

    def close_door(self) -> None:
        self._door_held = False

    def take(self, lane: int, grams: float) -> float:
        """A customer takes `grams` off `lane`; returns what was there to take."""
        return self.lanes[lane].take(grams)

    def put(self, lane: int, grams: float) -> None:
        """Stock placed on `lane` (a delivery, an item put back)."""
        self.lanes[lane].put(grams)

    def lane_grams(self, lane: int) -> float:
        """What really is on the lane (ground truth, without the cell's drift)."""
        return self.lanes[lane].grams

    @property
    def dev_ms(self) -> int:
        return round(self.time_s * 1000)

    def step(self, dt_s: float) -> list[OutFrame]:
        """Advance the world by `dt_s` with the actuators as the controller last set them,
        then run one control pass on fresh readings."""
        c = self.controller
        active = self.faults.active
        mains = not active("power_cut")
        # compressor_fail: the relay closes but nothing cools (seized compressor, lost gas).
        # thermostat_stuck_on: a welded relay contact runs the compressor whatever the
        # controller says (its COMPRESSOR records still show what it asked for).
        relay = c.compressor_on or bool(active("thermostat_stuck_on"))
        cooling = relay and mains and not active("compressor_fail")
        heater = (c.heater_on or bool(active("heater_stuck_on"))) and mains
        slow = [f for f in self.faults.open_specs() if f.slow]
        cap = capacity_factor(slow, self.time_s, self.evaporator.ice_share)
        if active("door_ajar") and not self.door_open:
            # The thermal model knows only open or shut; ajar is shut with the door's
            # exchange for AJAR_SHARE of the step (implicit Euler: the same equilibrium).
            self.thermal.step(dt_s * AJAR_SHARE, cooling, True, heater, cap)
            self.thermal.step(dt_s * (1 - AJAR_SHARE), cooling, False, heater, cap)
        else:
            self.thermal.step(dt_s, cooling, self.door_open, heater, cap)
        frost, melt = icing(slow, self.time_s)
        p = self.thermal.params
        self.evaporator.step(dt_s, self.thermal.air_c, p.compressor_w * cap if cooling else 0.0,
                             p.heater_w if heater else 0.0, frost, melt)
        self.time_s += dt_s
        changes = self.faults.advance(self.time_s)
        self.transitions += changes
        for tr in changes:
            self._instant(tr)
        for drift in active("lane_drift"):
            assert drift.lane is not None
            self.lanes[drift.lane].drift_g += drift.drift_g_per_h * dt_s / 3600.0
        # The customers' door is asked every step either way, so a held-open window does
        # not shift the openings drawn after it.
        customers = self.door.is_open(self.time_s)
        wanted = customers or self._door_held
        # A locked door cannot be pulled open; one already open can always be shut. A
        # door_open fault (propped open, a broken latch) wins over the lock.
        if wanted and not self.door_open and self.locked:
            wanted = False
        self.door_open = wanted or bool(active("door_open"))
        probes = (self.air_probe, self.product_probe)
        for index, probe in enumerate(probes):
            probe.unplugged = any(f.probe == index for f in active("probe_unplugged"))
            probe.power_on = any(f.probe == index for f in active("probe_85"))
            probe.flatline(any(f.probe == index for f in active("probe_flatline")))
        for f in active("probe_intermittent"):
            assert f.probe is not None
            if self._dropouts[f.probe].missing(self.time_s, f.level(self.time_s)):
                probes[f.probe].unplugged = True
        air = self.air_probe.read_raw(self.thermal.air_c)
        product = self.product_probe.read_raw(self.thermal.probe_c)
        mains = not active("power_cut")
        lanes_raw = [cell.raw() for cell in self.lanes]
        if self.spec.evaporator_probe:
            evap = self.evaporator_probe.read_raw(self.evaporator.coil_c)
            return c.tick(self.dev_ms, air, product, self.door_open, mains, lanes_raw, evap)
        return c.tick(self.dev_ms, air, product, self.door_open, mains, lanes_raw)

    def _instant(self, tr: Transition) -> None:
        spec = tr.spec
        if spec.fault == "reboot":
            self._reboot()
        elif spec.fault == "watchdog":
            self._watchdog()
        elif spec.fault == "item_taken" and spec.lane is not None:
            self.take(spec.lane, spec.grams)
        elif spec.fault == "restock" and spec.lane is not None:
            self.put(spec.lane, spec.grams)

    def _reboot(self) -> None:
        """The controller restarts (brown-out, crash): RAM log lost, boot count + 1, HELLO."""
        c = self.controller
        if isinstance(c, FirmwareController):
            c.host.boot(SOFT_RESET)
        elif isinstance(c, MicroPythonController):
            c.reboot()  # the process restarts on the same flash and pty, cause soft
        elif isinstance(c, FridgeController):
            # The reference controller reboots at its next tick, as after a REBOOT command;
            # it has no public hook for an unprompted restart (hw_sim/controller.py).
            c._reboot_pending = True

    def _watchdog(self) -> None:
        """A firmware task hangs: the supervisor stops feeding the watchdog, which resets
        the controller (HELLO with reset cause watchdog) some seconds later."""
        c = self.controller
        if isinstance(c, FirmwareController):
            c.host.stall(WATCHDOG_TASK)
        elif isinstance(c, MicroPythonController):
            c.hang(WATCHDOG_TASK)  # the fake WDT inside the process resets it
        elif isinstance(c, FridgeController):
            c.watchdog_reset()

    def receive(self, data: bytes) -> list[OutFrame]:
        return self.controller.receive(data)

    def close(self) -> None:
        """Stop a controller that runs in its own process (fidelity mode)."""
        if isinstance(self.controller, MicroPythonController):
            self.controller.close()

    def take_transitions(self) -> list[Transition]:
        out, self.transitions = self.transitions, []
        return out

    def line_rates(self) -> tuple[float, float]:
        """(bit error rate, byte drop rate) on the serial line now: the worst of the base
        rates and any open noise window."""
        windows = self.faults.active("noise")
        ber = max([self.spec.line_noise_ber] + [w.ber for w in windows])
        drop = max([self.spec.drop_byte_rate] + [w.drop_byte_rate for w in windows])
        return ber, drop

    @property
    def unplugged(self) -> bool:
        return bool(self.faults.active("unplug"))


class FridgeDevice:
    """A `SimFridge` behind a pty: host bytes in, frames out, ground truth on delivery."""

    def __init__(
        self,
        sim: SimFridge,
        port: PtyPort,
        truth: TruthWriter,
        seed: int = 1,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.sim = sim
        self.port = port
        self.truth = truth
        self._wall = wall
        # Noise goes on each frame the device hands its UART (so ground truth can say which
        # link frames it spoilt) and on every byte from the host. It has RNGs of its own, one
        # per direction, so a noisy line never changes what the physics draws: same seed,
        # same readings, noise or not.
        self.tx_noise = LineNoise(random.Random(f"{seed}/{sim.spec.id}/line-tx"))
        self.rx_noise = LineNoise(random.Random(f"{seed}/{sim.spec.id}/line-rx"))
        port.rx_filter = functools.partial(self._noisy, self.rx_noise)
        spec = sim.spec
        if spec.line_noise_ber or spec.drop_byte_rate:
            self._fault_truth(
                "line_noise", True, ber=spec.line_noise_ber, drop_byte_rate=spec.drop_byte_rate
            )

    @property
    def id(self) -> str:
        return self.sim.spec.id

    def service(self) -> None:
        data, hung_up = self.port.service()
        if data:
            self._send(self.sim.receive(data))
        if hung_up:
            self.sim.controller.detach()

    def step(self, dt_s: float) -> None:
        frames = self.sim.step(dt_s)
        self._apply_faults()
        self._send(frames)

    def _apply_faults(self) -> None:
        for tr in self.sim.take_transitions():
            spec = tr.spec
            extra: dict[str, Any] = {} if spec.instant else {"for_s": spec.for_s}
            if spec.slow:  # develops from now on and stays
                extra = {"ramp_s": spec.ramp_s, "severity": spec.severity}
            if spec.probe is not None:
                extra["probe"] = spec.probe
            if spec.lane is not None:
                extra["lane"] = spec.lane
                if spec.grams:
                    extra["grams"] = spec.grams
                if spec.drift_g_per_h:
                    extra["drift_g_per_h"] = spec.drift_g_per_h
            if spec.fault == "noise":
                extra.update(ber=spec.ber, drop_byte_rate=spec.drop_byte_rate)
                if not tr.started:
                    self._line_counters(extra)
            if spec.instant:
                extra["state"] = "at"
                if spec.fault == "reboot":
                    extra["boot_count"] = self.sim.controller.boot_count
                if spec.fault == "watchdog":
                    extra["task"] = WATCHDOG_TASK
            self._fault_truth(spec.fault, tr.started, **extra)
        if self.sim.unplugged and self.port.plugged:
            self.port.unplug()
            self.sim.controller.detach()  # no cable, no host: stream again after GET_HELLO
        elif not self.sim.unplugged and not self.port.plugged:
            self.port.replug()

    def _noisy(self, noise: LineNoise, data: bytes) -> bytes:
        ber, drop = self.sim.line_rates()
        return noise.apply(data, ber, drop) if ber or drop else data

    def _line_counters(self, into: dict[str, Any]) -> None:
        # Since the run started, both directions: enough to tell that noise really happened.
        into.update(
            bits_flipped=self.tx_noise.bits_flipped + self.rx_noise.bits_flipped,
            bytes_dropped=self.tx_noise.bytes_dropped + self.rx_noise.bytes_dropped,
        )

    def _fault_truth(self, fault: str, started: bool, **fields: Any) -> None:
        """`{"kind": "fault", "fault", "state": "start"|"end"|"at", "dev_ms", "sim_s", "wall"}`:
        when in device time and in real (Unix) time, to line up with the host's records."""
        state = fields.pop("state", "start" if started else "end")
        self.truth.record(
            self.id,
            "fault",
            fault=fault,
            state=state,
            dev_ms=self.sim.dev_ms,
            sim_s=self.sim.time_s,
            wall=self._wall(),
            **fields,
        )

    def stop(self) -> None:
        """Close the windows still open in ground truth (the run ended inside them)."""
        for spec in self.sim.faults.open_specs():
            extra: dict[str, Any] = {"for_s": spec.for_s, "cut_short": True}
            if spec.probe is not None:
                extra["probe"] = spec.probe
            self._fault_truth(spec.fault, False, **extra)
        base = self.sim.spec
        if base.line_noise_ber or base.drop_byte_rate:
            counters: dict[str, Any] = {}
            self._line_counters(counters)
            self._fault_truth("line_noise", False, **counters)

    def resend_log(self) -> None:
        """Send every record still in the log again (used when shutting down)."""
        c = self.sim.controller
        self._send(c.resend(c.dev_ms, everything=True))

    def record_log_at_exit(self) -> int:
        """Ground truth for records the device still holds when the simulator stops: made,
        not lost, but never handed over (a real controller would keep them in flash)."""
        log = self.sim.controller.log
        for seq, entry in log.items():
            kind = self.sim.controller.type_name(entry.msg_type)
            self.truth.record(self.id, "on_device_at_exit", fseq=seq, held=kind, **entry.fields)
        return len(log)

    def _send(self, frames: list[OutFrame]) -> None:
        # Records (readings, door, compressor...) enter ground truth when the controller
        # logs them: from then on the system owes them to the cloud, host or no host.
        new, lost = self.sim.controller.take_new_records()
        for frame in new:
            self.truth.record(self.id, frame.kind, fseq=frame.seq, **frame.fields)
        for frame in lost:
            self.truth.record(
                self.id, "log_overflow", fseq=frame.seq, lost=frame.kind, **frame.fields
            )
        for frame in frames:
            # Nothing goes on the wire without a host (send refuses): no noise counted either.
            wire = self._noisy(self.tx_noise, frame.data) if self.port.host_present else frame.data
            on_written = None if frame.logged else functools.partial(self._delivered, frame, wire)
            if self.port.send(wire, on_written):
                continue
            if frame.logged:
                self.sim.controller.unsent(frame.seq)  # stays in the log, sent again later
            else:
                self.sim.controller.note_tx_dropped()

    def _delivered(self, frame: OutFrame, wire: bytes) -> None:
        # Link frames (HELLO, ACK, heartbeats, state reports) are recorded as written. They
        # are never resent, so the truth says which ones the line noise spoilt, and which
        # DOOR/COMPRESSOR/DEFROST lines are state reports rather than records.
        extra: dict[str, bool] = {}
        if frame.state_report:
            extra["state_report"] = True
        if wire != frame.data:
            extra["corrupted"] = True
        self.truth.record(self.id, frame.kind, fseq=frame.seq, **frame.fields, **extra)
