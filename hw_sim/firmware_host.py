"""Run the MicroPython firmware (firmware_bridge/firmware) in-process under CPython.

The firmware source runs unmodified: its hardware imports (`machine`, `onewire`,
`ds18x20`, `hx711`) resolve to the fakes in hw_sim/fakes/cpython, which read and drive a
`SimBoard` fed by the physics, and `codec` resolves to firmware_bridge.codec (on a board
codec.py sits beside main.py). Only main.py's asyncio scheduling is replaced: each task's
`poll(now_ms)` runs at its due time on the simulation clock, so a simulated day takes
seconds and every run with the same seed is the same.

`FirmwareController` wraps that behind the interface hw_sim.fridge uses for the Python
reference controller (tick/receive/resend/log/take_new_records), so a scenario picks
either with `controller = "python" | "firmware"` per fridge.
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
import sys
import tempfile
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import firmware_bridge
from firmware_bridge import codec, fwsig
from hw_sim.controller import LogEntry, OutFrame
from hw_sim.fakes import simboard
from hw_sim.fakes.simboard import PWRON_RESET, SOFT_RESET, WDT_RESET, DeviceReset, SimBoard
from hw_sim.hardware import RAW_PER_G, lane_zero_raw

log = logging.getLogger(__name__)

FIRMWARE_DIR = Path(firmware_bridge.__file__).parent / "firmware"
_FAKES = {
    "machine": "hw_sim.fakes.cpython.machine",
    "onewire": "hw_sim.fakes.cpython.onewire",
    "ds18x20": "hw_sim.fakes.cpython.ds18x20",
    "hx711": "hw_sim.fakes.cpython.hx711",
    "codec": "firmware_bridge.codec",
    "fwmsg": "firmware_bridge.fwmsg",
    "fwsig": "firmware_bridge.fwsig",
    "edverify": "firmware_bridge.edverify",
}
_FIRMWARE_MODULES = [
    "clock",
    "records",
    "thermostat",
    "store",
    "probes",
    "lock",
    "loadcells",
    "link",
    "supervisor",
    "fwslots",
    "fwstage",
    "pins",
    "board",
    "controller",
]


def load_firmware() -> dict[str, ModuleType]:
    """Import the firmware modules under their own (top-level) names, as on a board."""
    for name, target in _FAKES.items():
        module = importlib.import_module(target)
        present = sys.modules.get(name)
        if present is not None and present is not module:
            raise RuntimeError(f"module {name!r} already imported from elsewhere: {present!r}")
        sys.modules[name] = module
    if str(FIRMWARE_DIR) not in sys.path:
        sys.path.insert(0, str(FIRMWARE_DIR))
    modules = {}
    for name in _FIRMWARE_MODULES:
        module = importlib.import_module(name)
        origin = Path(getattr(module, "__file__", "") or "")
        if origin.parent != FIRMWARE_DIR:
            raise RuntimeError(f"firmware module {name!r} shadowed by {origin}")
        modules[name] = module
    return modules


def provision(data_dir: Path, settings: dict[str, Any]) -> None:
    """What the factory writes to a new board's flash; later boots keep their own values
    (boot count, probe ROMs, tare) and take the provisioned ones over them."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "config.json"
    current: dict[str, Any] = {}
    if path.exists():
        try:
            current = json.loads(path.read_text())
        except ValueError:
            current = {}
    current.update(settings)
    path.write_text(json.dumps(current))


def write_keys(data_dir: Path, keys_hex: tuple[str, ...]) -> None:
    """The factory's fwkeys.json: the firmware-signing keys the board's firmware trusts."""
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / (fwsig.KEYS_FILE + ".tmp")
    tmp.write_text(fwsig.keys_json([bytes.fromhex(k) for k in keys_hex]))
    tmp.replace(data_dir / fwsig.KEYS_FILE)


class FirmwareHost:
    """One board running the firmware: its tasks on the caller's clock, reboots included."""

    def __init__(
        self,
        board: SimBoard,
        data_dir: Path,
        before_boot: Callable[[Any], None] | None = None,
        after_boot: Callable[[Any], None] | None = None,
    ) -> None:
        self.fw = load_firmware()
        self.before_boot = before_boot  # called with the controller about to be reset
        self.after_boot = after_boot  # called with the new controller
        self.board = board
        self.data_dir = data_dir
        self.sim_ms = 0  # host clock: ms since the simulation began
        self.boot_at_ms = 0
        self.boots = 0
        self.task_deaths: list[str] = []
        self.stalled: set[str] = set()  # tasks hung until the next reset (watchdog fault)
        self.ctl: Any = None
        self._due: dict[str, int] = {}
        self._tasks: dict[str, Any] = {}
        self.boot(PWRON_RESET)

    @property
    def now_ms(self) -> int:
        """The firmware's clock: ms since it booted."""
        return self.sim_ms - self.boot_at_ms

    def boot(self, cause: int) -> None:
        b = self.board
        if self.ctl is not None and self.before_boot is not None:
            self.before_boot(self.ctl)
        self.boot_at_ms = self.sim_ms
        b.now_ms = 0
        b.reset_cause = cause
        b.wdt_timeout_ms = None
        b.uart_rx.clear()  # a rebooting UART drops what it had buffered
        b.pins.pop(self.fw["pins"].COMPRESSOR, None)  # relays drop out during reset
        b.pins.pop(self.fw["pins"].HEATER, None)
        with simboard.using(b):
            hw = self.fw["board"].Board()
            self.ctl = self.fw["controller"].Controller(hw, str(self.data_dir), 0)
        self.boots += 1
        self.stalled.clear()
        self._tasks = {t.name: t for t in self.ctl.tasks}
        self._due = dict.fromkeys(self._tasks, 0)
        if self.after_boot is not None:
            self.after_boot(self.ctl)

    def run_until(self, sim_ms: int) -> None:
        """Run every task due up to `sim_ms` (host clock), in due order."""
        while self._due:
            name = min(self._due, key=self._due.__getitem__)
            due = self._due[name] + self.boot_at_ms
            if due > sim_ms:
                break
            self.sim_ms = max(self.sim_ms, due)
            self._poll(name)
            if self.board.watchdog_expired():
                starved = self.ctl.supervisor.starved
                log.warning("%s: watchdog reset (%r starved)", self.board.device_id, starved)
                self.boot(WDT_RESET)
        self.sim_ms = max(self.sim_ms, sim_ms)
        self.board.now_ms = self.now_ms
        if self.board.watchdog_expired():
            self.boot(WDT_RESET)

    def stall(self, name: str) -> None:
        """Hang one task (a driver call that never returns): it stops running and checking
        in, so the supervisor stops feeding the watchdog and the board resets."""
        if name in self._due:
            del self._due[name]
            self.stalled.add(name)

    def poll_now(self, name: str) -> None:
        """Run one task now, out of turn: the UART interrupt waking the link task."""
        if name in self._due:
            self._poll(name)

    def _poll(self, name: str) -> None:
        now = self.now_ms
        self.board.now_ms = now
        try:
            nxt = self._tasks[name].fn(now)
        except DeviceReset:
            self.boot(SOFT_RESET)
            return
        except Exception:
            # On the board the asyncio task ends; the supervisor sees it stop checking in.
            log.exception("%s: firmware task %r died", self.board.device_id, name)
            self.task_deaths.append(name)
            del self._due[name]
            return
        self._due[name] = max(nxt, now)


def firmware_settings(spec: Any, power_monitor: bool) -> dict[str, Any]:
    """Provisioned configuration for a scenario's FridgeSpec."""
    return {
        "device_id": spec.id,
        "set_point_tenths": round(spec.set_point_c * 10),
        "min_off_s": round(spec.min_off_s),
        "sample_interval_s": round(spec.sample_interval_s),
        "heartbeat_interval_s": round(spec.heartbeat_interval_s),
        "defrost_every_min": round(spec.defrost_every_h * 60),
        "defrost_minutes": round(spec.defrost_minutes),
        "defrost_heater": spec.defrost_heater,
        "evaporator_probe": spec.evaporator_probe,
        "defrost_end_tenths": round(spec.defrost_end_c * 10),
        "power_monitor": power_monitor,
        "lock": spec.lock,
        "lanes": len(spec.lanes),
        # Factory calibration of the simulated cells (hw_sim/hardware.py).
        "lane_offsets": [lane_zero_raw(k) for k in range(len(spec.lanes))],
        "lane_scales": [RAW_PER_G] * len(spec.lanes),
    }


def out_frame(data: bytes) -> OutFrame | None:
    """An OutFrame (what ground truth needs) for one wire frame the firmware wrote."""
    frames = codec.FrameDecoder().feed(data)
    if not frames:
        return None
    f = frames[0]
    fields = decoded_fields(f.type, f.payload)
    logged = f.type in codec.LOGGED_TYPES and not f.flags & codec.REPLY
    report = f.type in codec.LOGGED_TYPES and bool(f.flags & codec.REPLY)
    kind = codec.TYPE_NAMES.get(f.type, f"unknown_{f.type}")
    return OutFrame(kind, f.seq, data, fields, logged=logged, state_report=report)


def decoded_fields(msg_type: int, payload: bytes) -> dict[str, Any]:
    msg = codec.decode_message(msg_type, payload) or {}
    msg.pop("type", None)
    if "probes" in msg:
        msg["probes"] = [list(p) for p in msg["probes"]]
    return msg


class FirmwareController:
    """The firmware in-process, behind hw_sim.controller.FridgeController's interface."""

    def __init__(
        self, device_id: str, settings: dict[str, Any], data_dir: Path | None = None
    ) -> None:
        self.device_id = device_id
        if data_dir is None:
            # No flash directory given: a private one, removed with this object.
            data_dir = Path(tempfile.mkdtemp(prefix=f"xd-flash-{device_id}-"))
            weakref.finalize(self, shutil.rmtree, data_dir, True)
        provision(data_dir, settings)
        # A third DS18B20 on the bus when an evaporator probe is fitted.
        probes = 3 if settings.get("evaporator_probe") else 2
        self.board = SimBoard(device_id, probes, lanes=int(settings.get("lanes", 0)))
        self._pins = load_firmware()["pins"]
        # Door shut and mains on at power-up, until the first tick says otherwise.
        self.board.pins[self._pins.DOOR] = 0
        self.board.pins[self._pins.MAINS] = 1
        self._new: list[OutFrame] = []
        self._lost: list[OutFrame] = []
        self.tx_dropped = 0
        self.dev_ms = 0
        self.host = FirmwareHost(self.board, data_dir, self._before_boot, self._after_boot)

    # -- what hw_sim.fridge reads -------------------------------------------------------------

    @property
    def compressor_on(self) -> bool:
        return self.board.pins.get(self._pins.COMPRESSOR, 0) == 1

    @property
    def heater_on(self) -> bool:
        return self.board.pins.get(self._pins.HEATER, 0) == 1

    @property
    def locked(self) -> bool:
        """The lock coil is energised (a board without a lock never drives the pin)."""
        return self.board.pins.get(self._pins.LOCK, 0) == 1

    @property
    def boot_count(self) -> int:
        return int(self.host.ctl.boot_count)

    @property
    def log(self) -> dict[int, LogEntry]:
        out = {}
        for e in self.host.ctl.log.entries():
            fields = decoded_fields(e.msg_type, e.payload)
            out[e.seq] = LogEntry(e.msg_type, e.payload, fields, e.sent_ms)
        return out

    @staticmethod
    def type_name(msg_type: int) -> str:
        return codec.TYPE_NAMES[msg_type]

    def tick(
        self,
        dev_ms: int,
        air_raw: int,
        product_raw: int,
        door_open: bool,
        mains: bool = True,
        lanes_raw: Sequence[int] = (),
        evaporator_raw: int | None = None,
    ) -> list[OutFrame]:
        """As FridgeController.tick; `evaporator_raw` reaches the board's third probe."""
        b = self.board
        b.probe_raw[0], b.probe_raw[1] = air_raw, product_raw
        if evaporator_raw is not None and len(b.probe_raw) > 2:
            b.probe_raw[2] = evaporator_raw
        if lanes_raw:
            b.lane_raw = list(lanes_raw)
        b.pins[self._pins.DOOR] = 1 if door_open else 0
        b.pins[self._pins.MAINS] = 1 if mains else 0
        b.backup_mv = 4100 if mains else 3700
        self.host.run_until(dev_ms)
        self.dev_ms = dev_ms
        return self._frames()

    def receive(self, data: bytes) -> list[OutFrame]:
        self.board.uart_rx += data
        self.host.poll_now("link")
        return self._frames()

    def resend(self, dev_ms: int, everything: bool) -> list[OutFrame]:
        self.host.ctl.link.resend(self.host.now_ms, everything)
        return self._frames()

    def take_new_records(self) -> tuple[list[OutFrame], list[OutFrame]]:
        new, lost = self._new, self._lost
        self._new, self._lost = [], []
        return new, lost

    def detach(self) -> None:
        """The host hung up. A UART cannot see that, so the firmware is not told."""

    def unsent(self, seq: int) -> None:
        """The pty refused a record: the firmware resends it after retransmit_after_s."""

    def note_tx_dropped(self) -> None:
        self.tx_dropped += 1

    # -- internals ----------------------------------------------------------------------------

    def _frames(self) -> list[OutFrame]:
        tx = bytes(self.board.uart_tx)
        self.board.uart_tx.clear()
        out = []
        for chunk in tx.split(b"\x00")[:-1]:
            frame = out_frame(chunk + b"\x00")
            if frame is not None:
                out.append(frame)
        return out

    def _after_boot(self, ctl: Any) -> None:
        ctl.log.on_add = self._added
        ctl.log.on_drop = self._dropped
        # Records made inside the constructor (the first POWER) came before the hooks.
        for e in ctl.log.entries():
            self._added(e)

    def _before_boot(self, ctl: Any) -> None:
        # The log lives in RAM: what a reset finds there is lost, and ground truth says so.
        for e in ctl.log.entries():
            self._dropped(e, "reboot")

    def _added(self, e: Any) -> None:
        fields = decoded_fields(e.msg_type, e.payload)
        self._new.append(OutFrame(codec.TYPE_NAMES[e.msg_type], e.seq, b"", fields, logged=True))

    def _dropped(self, e: Any, cause: str = "overflow") -> None:
        fields = decoded_fields(e.msg_type, e.payload)
        if cause != "overflow":
            fields["cause"] = cause
        self._lost.append(OutFrame(codec.TYPE_NAMES[e.msg_type], e.seq, b"", fields, logged=True))
