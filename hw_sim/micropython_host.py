"""Fidelity mode: the firmware inside a real `micropython` process, UART on its stdio.

The process runs hw_sim/fakes/mp/simboot.py, which puts MicroPython-side fakes of
`machine`, `onewire`, `ds18x20` and `hx711` ahead of the firmware and starts its main.py
unchanged (real asyncio, real MicroPython interpreter). Its stdin/stdout are the UART;
sensor values (and the reboot and watchdog faults' requests) go to it in a JSON file
rewritten on every tick; relay changes and resets come back as lines on stderr. A reset
(REBOOT, the reboot fault, the fake watchdog) ends the process with a status saying which;
it is started again on the same flash directory, behind the same pty, with that cause.
The firmware's clock runs `speed` times real time, like the simulation's, but the two are
not locked: this mode is for checking that the real interpreter behaves, not for bit-exact
runs (use controller = "firmware").

`MicroPythonController` offers hw_sim.fridge the same interface as the reference
controller. The record log lives inside the process, so ground truth sees a record when it
first crosses the wire, and `log` holds the records seen and not yet receipted by the host.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import firmware_bridge
from firmware_bridge import codec
from hw_sim.controller import LogEntry, OutFrame
from hw_sim.fakes.simboard import SOFT_RESET, WDT_RESET
from hw_sim.firmware_host import decoded_fields, out_frame, provision

log = logging.getLogger(__name__)

FAKES_DIR = Path(__file__).parent / "fakes" / "mp"
FIRMWARE_DIR = Path(firmware_bridge.__file__).parent / "firmware"
CODEC_DIR = Path(firmware_bridge.__file__).parent
PIN_COMPRESSOR, PIN_HEATER, PIN_DOOR, PIN_LOCK, PIN_MAINS = 3, 4, 5, 6, 7  # firmware/pins.py
SOFT_EXIT = 75  # simboot's exit status after a soft reset (hw_sim/fakes/mp/simio.py)
WDT_EXIT = 76  # ... after the fake watchdog bit


def micropython_binary() -> str | None:
    found = os.environ.get("MICROPYTHON") or shutil.which("micropython")
    if found is None:
        beside = Path(sys.executable).parent / "micropython"
        found = str(beside) if beside.exists() else None
    return found


class MicroPythonController:
    def __init__(
        self,
        device_id: str,
        settings: dict[str, Any],
        data_dir: Path | None = None,
        speed: float = 1.0,
        binary: str | None = None,
    ) -> None:
        exe = binary or micropython_binary()
        if exe is None:
            raise RuntimeError("controller: no micropython binary (set MICROPYTHON)")
        self.exe = exe
        self.device_id = device_id
        self.speed = speed
        if data_dir is None:
            data_dir = Path(tempfile.mkdtemp(prefix=f"xd-flash-{device_id}-"))
            weakref.finalize(self, shutil.rmtree, data_dir, True)
        self.data_dir = data_dir
        provision(data_dir, settings)
        self.sensors = data_dir / "sensors.json"
        self.pins: dict[int, int] = {}
        self.inputs: dict[str, Any] = {"pins": {str(PIN_DOOR): 0, str(PIN_MAINS): 1}}
        # A third DS18B20 on the bus when an evaporator probe is fitted.
        self.probe_count = 3 if settings.get("evaporator_probe") else 2
        self.inputs.update(probes=[[48, None]] * self.probe_count, backup_mv=4100, reset_cause=1)
        self.dev_ms = 0
        self.boot_count = 0
        self.tx_dropped = 0
        self.resets = 0
        self._seen: dict[int, LogEntry] = {}  # records on the wire, not yet receipted
        self._new: list[OutFrame] = []
        self._lost: list[OutFrame] = []
        self._rx = bytearray()
        self._err = bytearray()
        self._host_rx = codec.FrameDecoder()
        self.proc: subprocess.Popen[bytes] | None = None
        self._start()

    def _start(self) -> None:
        self._write_inputs()
        self.proc = subprocess.Popen(
            [self.exe, str(FAKES_DIR / "simboot.py"), *map(str, self._boot_args())],
            cwd=self.data_dir,
            env={**os.environ, "XD_SENSORS": str(self.sensors)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        os.set_blocking(self.proc.stderr.fileno(), False)
        self._seen.clear()

    def _boot_args(self) -> list[object]:
        return [FAKES_DIR, FIRMWARE_DIR, CODEC_DIR, self.speed]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc is not None:
            for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                if f is not None:
                    # Host bytes still buffered for a process that died (a write whose flush
                    # met the broken pipe): closing flushes them again; they are lost, as on
                    # a board that reset mid-frame.
                    with contextlib.suppress(BrokenPipeError):
                        f.close()
        self.proc = None

    # -- what hw_sim.fridge reads -------------------------------------------------------------

    @property
    def compressor_on(self) -> bool:
        return self.pins.get(PIN_COMPRESSOR, 0) == 1

    @property
    def heater_on(self) -> bool:
        return self.pins.get(PIN_HEATER, 0) == 1

    @property
    def locked(self) -> bool:
        return self.pins.get(PIN_LOCK, 0) == 1

    @property
    def log(self) -> dict[int, LogEntry]:
        return dict(self._seen)

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
        self.dev_ms = dev_ms
        probes: list[list[Any]] = [[air_raw, None], [product_raw, None]]
        if self.probe_count > 2:
            last = self.inputs["probes"][2]
            probes.append(last if evaporator_raw is None else [evaporator_raw, None])
        self.inputs["probes"] = probes
        self.inputs["lanes"] = list(lanes_raw)
        self.inputs["pins"] = {str(PIN_DOOR): int(door_open), str(PIN_MAINS): int(mains)}
        self.inputs["backup_mv"] = 4100 if mains else 3700
        self._write_inputs()
        return self._collect()

    def receive(self, data: bytes) -> list[OutFrame]:
        for f in self._host_rx.feed(data):
            if f.type == codec.RECEIPT:
                msg = codec.decode_message(f.type, f.payload)
                if msg is not None and msg["boot_count"] == self.boot_count:
                    for seq in msg["seqs"]:
                        self._seen.pop(seq, None)
        if self.proc is not None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass  # the process is restarting; the host retries
        return self._collect()

    def resend(self, dev_ms: int, everything: bool) -> list[OutFrame]:
        return self._collect()  # the firmware resends by itself

    def take_new_records(self) -> tuple[list[OutFrame], list[OutFrame]]:
        new, lost = self._new, self._lost
        self._new, self._lost = [], []
        return new, lost

    def detach(self) -> None:
        """A UART cannot see the host hang up; nothing to tell the firmware."""

    def unsent(self, seq: int) -> None:
        """The firmware resends unreceipted records by itself."""

    def note_tx_dropped(self) -> None:
        self.tx_dropped += 1

    # -- faults -------------------------------------------------------------------------------

    def reboot(self) -> None:
        """The board restarts by itself (brown-out, crash): the fakes inside the process
        reset it at their next look at the inputs, and it boots again with cause soft."""
        self.inputs["reset"] = True
        self._write_inputs()

    def hang(self, task: str) -> None:
        """A driver call of `task` never returns (only "probes": a 1-Wire read): the
        watchdog is no longer fed and the fake WDT resets the board, cause watchdog."""
        if task != "probes":
            raise ValueError(f"controller: cannot hang task {task!r} in fidelity mode")
        self.inputs["hang"] = task
        self._write_inputs()

    # -- internals ----------------------------------------------------------------------------

    def _write_inputs(self) -> None:
        tmp = self.sensors.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.inputs))
        tmp.replace(self.sensors)

    def _collect(self) -> list[OutFrame]:
        proc = self.proc
        if proc is None:
            return []
        assert proc.stdout is not None and proc.stderr is not None
        self._rx += proc.stdout.read() or b""
        self._err += proc.stderr.read() or b""
        *lines, rest = bytes(self._err).split(b"\n")
        self._err = bytearray(rest)
        for line in lines:
            self._side_channel(line.decode(errors="replace"))
        out = []
        *chunks, tail = bytes(self._rx).split(b"\x00")
        self._rx = bytearray(tail)
        for chunk in chunks:
            frame = out_frame(chunk + b"\x00")
            if frame is None:
                continue
            out.append(frame)
            if frame.kind == "hello":
                self.boot_count = int(frame.fields["boot_count"])
            if frame.logged and frame.seq not in self._seen:
                wire = codec.FrameDecoder().feed(frame.data)[0]
                msg_type, payload = wire.type, wire.payload
                fields = decoded_fields(msg_type, payload)
                self._seen[frame.seq] = LogEntry(msg_type, payload, fields, None)
                self._new.append(OutFrame(frame.kind, frame.seq, b"", fields, logged=True))
        code = proc.poll()
        if code is not None:
            self._restart(code)
        return out

    def _side_channel(self, line: str) -> None:
        parts = line.split()
        if len(parts) == 3 and parts[0] == "PIN":
            self.pins[int(parts[1])] = int(parts[2])
        elif parts[:1] not in (["WDT"], ["RESET"], ["WDT_RESET"]) and line.strip():
            log.info("%s micropython: %s", self.device_id, line)

    def _restart(self, code: int) -> None:
        # A soft reset exits with SOFT_EXIT, the fake watchdog with WDT_EXIT; anything else
        # is a crash the watchdog would have caught on a board. The flash directory (and
        # so config.json: boot count, reboot_seq, tare) and the pty stay; RAM does not.
        self.resets += 1
        # machine.reset_cause() of the next boot (the fake `machine` has the same codes).
        self.inputs["reset_cause"] = SOFT_RESET if code == SOFT_EXIT else WDT_RESET
        self.inputs.pop("reset", None)  # a reset request or a hang ends with the reset
        self.inputs.pop("hang", None)
        # The record log is in RAM: what the host had not receipted is gone (as far as we
        # know: a RECEIPT may still have been on its way), and ground truth says so.
        for seq, e in self._seen.items():
            fields = {**e.fields, "cause": "reboot"}
            self._lost.append(OutFrame(codec.TYPE_NAMES[e.msg_type], seq, b"", fields, True))
        self.close()
        self.pins.clear()
        self._rx.clear()
        self._start()
