"""Composition root of the simulator: every device on one sim clock, in one poll loop.

Each wake-up: service every port (host bytes, hang-ups, queued output), run the physics
steps that are due, then sleep in poll() until the next step or until a host writes.
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Callable
from typing import Protocol

from hw_sim.clock import SimClock, Stepper
from hw_sim.firmware_host import write_keys
from hw_sim.fridge import FridgeDevice, SimFridge
from hw_sim.ptylink import PtyPort
from hw_sim.scanner import ScannerDevice
from hw_sim.scenario import Scenario
from hw_sim.truth import TruthWriter

log = logging.getLogger(__name__)
LINE_LOOK_S = 0.002  # 23 bytes at 115200 baud


class Device(Protocol):
    port: PtyPort

    @property
    def id(self) -> str: ...

    def service(self) -> None: ...

    def step(self, dt_s: float) -> None: ...


class Runner:
    """Owns the ptys, symlinks and the truth file; `close()` releases them all."""

    def __init__(
        self,
        scenario: Scenario,
        real: Callable[[], float] = time.monotonic,
        max_wait_s: float = 0.05,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.scenario = scenario
        self._real = real
        # Ports whose host is away are not in the poll set (POLLHUP would spin the loop),
        # so this bounds how late we notice a host opening one.
        self.max_wait_s = max_wait_s
        self._stop = False
        self.devices: list[Device] = []
        sim = scenario.sim
        self.truth = TruthWriter(sim.truth)
        try:
            for f in scenario.fridges:
                port = PtyPort(sim.link_dir / f.id, baud=sim.baud)
                # The firmware's flash (config, boot count) lives beside the links.
                flash = sim.link_dir / ".flash" / f.id
                if sim.firmware_keys:  # the factory's trusted firmware keys (fwsig.py)
                    write_keys(flash, sim.firmware_keys)
                fridge = SimFridge(f, sim.seed, flash_dir=flash, speed=sim.speed)
                self.devices.append(FridgeDevice(fridge, port, self.truth, sim.seed, wall))
            for s in scenario.scanners:
                port = PtyPort(sim.link_dir / s.id, baud=sim.baud)
                self.devices.append(ScannerDevice(s, sim.seed, port, self.truth))
        except BaseException:
            self.close()
            raise
        self.stepper = Stepper(SimClock(sim.speed, real), sim.step_s)

    def links(self) -> list[str]:
        """One line per device: `id link -> /dev/pts/N`."""
        return [f"{d.id} {d.port.link_path} -> {d.port.slave_name}" for d in self.devices]

    def request_stop(self) -> None:
        """Safe to call from a signal handler: the loop ends within `max_wait_s`."""
        self._stop = True

    def run(self, for_real_s: float | None = None) -> None:
        deadline = None if for_real_s is None else self._real() + for_real_s
        step_s = self.scenario.sim.step_s
        while not self._stop:
            for d in self.devices:
                d.service()
            due = self.stepper.due()
            for _ in range(due):
                for d in self.devices:
                    d.step(step_s)
            self.stepper.done(due)
            wait = min(self.stepper.real_until_next(), self.max_wait_s)
            if deadline is not None:
                left = deadline - self._real()
                if left <= 0:
                    break
                wait = min(wait, left)
            self._wait(wait)

    def flush(self, timeout_s: float = 2.0) -> int:
        """At shutdown, with the physics stopped: let attached hosts take (and receipt) what
        the fridges still hold in their logs, like a controller's graceful power-down.
        Whatever is left is written to ground truth as `on_device_at_exit`; returns its count.
        """
        deadline = self._real() + timeout_s
        fridges = [d for d in self.devices if isinstance(d, FridgeDevice)]
        resend_every_s, last_resend = 0.5, -1.0
        while self._real() < deadline:
            for d in self.devices:
                d.service()
            waiting = [d for d in fridges if d.sim.controller.log and d.port.host_present]
            if not waiting:
                break
            if self._real() - last_resend >= resend_every_s:
                for d in waiting:
                    d.resend_log()
                last_resend = self._real()
            self._wait(0.02)
        left = 0
        for d in fridges:
            d.stop()
            left += d.record_log_at_exit()
        return left

    def _wait(self, timeout_s: float) -> None:
        poller = select.poll()
        for d in self.devices:
            if d.port.line_busy:
                # A throttled line with bytes waiting: look again when a few have gone out
                # (POLLOUT would be ready at once and spin the loop).
                timeout_s = min(timeout_s, LINE_LOOK_S)
            if d.port.host_present:
                out = d.port.wants_write and not d.port.line_busy
                events = select.POLLIN | (select.POLLOUT if out else 0)
                poller.register(d.port.fileno, events)
        poller.poll(timeout_s * 1000)

    def summary(self) -> str:
        st = self.stepper
        parts = [
            f"simulated {st.sim_time:.0f} s",
            f"lag {st.lag_sim_s:.0f} s in {st.lag_events} catch-ups",
            f"{self.truth.lines} truth lines",
        ]
        for d in self.devices:
            s = d.port.stats
            parts.append(
                f"{d.id}: {s.frames_written} written, {s.tx_overflow_drops} tx drops, "
                f"{s.hangups} hang-ups, {s.unplugs} unplugs"
            )
        return "; ".join(parts)

    def close(self) -> None:
        for d in self.devices:
            d.port.close()
            if isinstance(d, FridgeDevice):
                d.sim.close()
        self.truth.close()
