"""One simulated fridge: physics + probes + customers + controller, and its pty endpoint.

`SimFridge` is pure (seeded, time advanced by the caller) so tests can run a simulated day
in a fraction of a second; `FridgeDevice` connects it to a `PtyPort` and ground truth.
"""

from __future__ import annotations

import functools
import random

from hw_sim.controller import ControllerConfig, FridgeController, OutFrame
from hw_sim.hardware import CustomerDoor, Door, Ds18b20
from hw_sim.ptylink import PtyPort
from hw_sim.scenario import FridgeSpec
from hw_sim.thermal import FridgeThermal, ThermalParams
from hw_sim.truth import TruthWriter


def controller_config(spec: FridgeSpec) -> ControllerConfig:
    return ControllerConfig(
        set_point_c=spec.set_point_c,
        min_off_s=spec.min_off_s,
        sample_interval_s=spec.sample_interval_s,
        heartbeat_interval_s=spec.heartbeat_interval_s,
        defrost_every_s=spec.defrost_every_h * 3600.0,
        defrost_s=spec.defrost_minutes * 60.0,
        defrost_heater=spec.defrost_heater,
    )


class SimFridge:
    def __init__(self, spec: FridgeSpec, seed: int, params: ThermalParams | None = None) -> None:
        self.spec = spec
        self.thermal = FridgeThermal(
            params or ThermalParams(), spec.ambient_c, spec.air_start_c, spec.product_start_c
        )

        # One stream per purpose, so adding a door opening never changes a probe's offset.
        def rng(purpose: str) -> random.Random:
            return random.Random(f"{seed}/{spec.id}/{purpose}")

        self.air_probe = Ds18b20(rng("probe0"))
        self.product_probe = Ds18b20(rng("probe1"))
        self.door: Door = CustomerDoor(rng("door"), spec.door_openings_per_hour, spec.door_open_s)
        self.controller = FridgeController(spec.id, controller_config(spec))
        self.time_s = 0.0
        self.door_open = False

    @property
    def dev_ms(self) -> int:
        return round(self.time_s * 1000)

    def step(self, dt_s: float) -> list[OutFrame]:
        """Advance the world by `dt_s` with the actuators as the controller last set them,
        then run one control pass on fresh readings."""
        c = self.controller
        self.thermal.step(dt_s, c.compressor_on, self.door_open, c.heater_on)
        self.time_s += dt_s
        self.door_open = self.door.is_open(self.time_s)
        air = self.air_probe.read_raw(self.thermal.air_c)
        product = self.product_probe.read_raw(self.thermal.probe_c)
        return c.tick(self.dev_ms, air, product, self.door_open)

    def receive(self, data: bytes) -> list[OutFrame]:
        return self.controller.receive(data)


class FridgeDevice:
    """A `SimFridge` behind a pty: host bytes in, frames out, ground truth on delivery."""

    def __init__(self, sim: SimFridge, port: PtyPort, truth: TruthWriter) -> None:
        self.sim = sim
        self.port = port
        self.truth = truth

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
        self._send(self.sim.step(dt_s))

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
            on_written = None if frame.logged else functools.partial(self._delivered, frame)
            if self.port.send(frame.data, on_written):
                continue
            if frame.logged:
                self.sim.controller.unsent(frame.seq)  # stays in the log, sent again later
            else:
                self.sim.controller.note_tx_dropped()

    def _delivered(self, frame: OutFrame) -> None:
        # Link frames (HELLO, ACK, heartbeats, state reports) are recorded as written.
        self.truth.record(self.id, frame.kind, fseq=frame.seq, **frame.fields)
