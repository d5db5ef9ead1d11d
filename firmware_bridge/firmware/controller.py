"""The fridge controller: every task of the firmware and the commands it obeys.

Each task is a plain method `poll(now_ms) -> next_due_ms`; main.py runs them as asyncio
tasks on a board, and the simulator's in-process host calls the same methods on its own
clock (hw_sim/firmware_host.py). So all timing lives here and is testable without sleeps.

`hw` is the board (board.py builds it from machine, onewire, ds18x20 and hx711):
uart, ds, compressor, heater, door, lock, mains, backup_adc, cells, reset_cause,
device_id, watchdog(timeout_ms), reset(), mem_free().
"""

import codec
import fwmsg
import lock as lockmod
import probes as probemod
from fwstage import Stager
from link import Link
from loadcells import Lane, Reporter
from records import RecordLog
from store import Store
from supervisor import WDT_TIMEOUT_MS, Supervisor
from thermostat import Thermostat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

FIRMWARE_VERSION = (1, 0, 0)  # the factory image; an image's fwversion module overrides it
try:  # noqa: SIM105 - MicroPython has no contextlib
    from fwversion import VERSION as FIRMWARE_VERSION  # type: ignore[import-not-found, no-redef]
except ImportError:
    pass
# A trial image is healthy (docs/firmware_update.md) after this many control loops, with the
# host attached, this many heartbeats sent and an air reading; unconfirmed by the deadline,
# it resets and the loader rolls it back.
TRIAL_LOOPS = 20
TRIAL_HEARTBEATS = 2
TRIAL_DEADLINE_MS = 600_000
LINK_POLL_MS = 50
IO_POLL_MS = 250
LANE_POLL_MS = 100
SUPERVISOR_MS = 1000
BACKUP_MV_PER_COUNT = 6600 / 65535  # 1:2 divider before a 3.3 V ADC


class Task:
    def __init__(self, name: str, fn: "Callable[[int], int]", max_gap_ms: int) -> None:
        self.name = name
        self.fn = fn
        self.max_gap_ms = max_gap_ms


class Controller:
    def __init__(self, hw: "Any", data_dir: str, now_ms: int = 0, trial: bool = False) -> None:
        self.hw = hw
        self.updater = Stager(data_dir, FIRMWARE_VERSION, trial)
        self.trial_loops = 0
        self.trial_heartbeats = 0
        self.trial_deadline_ms = now_ms + TRIAL_DEADLINE_MS
        self.store = Store(data_dir)
        cfg = self.store.load()
        if not cfg["device_id"]:
            self.store.set("device_id", hw.device_id)
        self.boot_count = self.store.count_boot()
        self.cfg = cfg
        self.log = RecordLog(cfg["log_capacity"], cfg["retransmit_after_s"] * 1000)
        self.link = Link(hw.uart, self.log)
        self.thermostat = Thermostat(cfg, now_ms)
        self.door = lockmod.Door(now_ms, bool(hw.door.value()))
        self.lock = lockmod.Lock() if cfg["lock"] else None
        self.mains = True if hw.mains is None else bool(hw.mains.value())
        self._mains_candidate = self.mains
        self.air_c: float | None = None
        self.readings: list[tuple[int, int, int]] = []
        self.lanes: list[Lane] = []
        offsets, scales = cfg["lane_offsets"], cfg["lane_scales"]
        for i in range(min(cfg["lanes"], len(hw.cells))):
            off = offsets[i] if i < len(offsets) else 0
            scale = scales[i] if i < len(scales) else 1.0
            self.lanes.append(Lane(hw.cells[i], off, scale))
        self.lane_reporter = Reporter(int(cfg["lane_deadband_g"]))
        found = hw.ds.scan() if hw.ds is not None else []
        self.evaporator = bool(cfg["evaporator_probe"])
        wanted = probemod.EVAPORATOR + 1 if self.evaporator else 2
        roms: list[bytes | None] = list(probemod.assign(found, cfg["probe_roms"], wanted))
        saved = [probemod.rom_hex(r) for r in roms if r is not None]
        if saved != cfg["probe_roms"]:
            self.store.set("probe_roms", saved)
        if self.evaporator:
            # A fitted evaporator probe is always probe 2, read missing until it answers a
            # scan (the reference controller reports it so too).
            roms += [None] * (wanted - len(roms))
        self.probes = probemod.ProbeBus(hw.ds, roms)
        self.evap_c: float | None = None
        self.reboot_requested = False
        if cfg["reboot_seq"] >= 0:
            # Restarted by a REBOOT whose ACK may have been lost: a retry is a duplicate.
            self.link.commands.remember(cfg["reboot_seq"])
        self._converting = False
        self.sample_ms = int(cfg["sample_interval_s"]) * 1000
        self.heartbeat_ms = int(cfg["heartbeat_interval_s"]) * 1000
        self.probe_period_ms = int(cfg["probe_period_ms"])
        self._next_sample_ms = self.sample_ms
        self._next_heartbeat_ms = self.heartbeat_ms
        self._apply_outputs()
        if self.lock is not None:
            hw.lock.value(1)

        self.supervisor = Supervisor()
        period = self.probe_period_ms
        self.tasks = [
            Task("link", self.poll_link, 5000),
            Task("probes", self.poll_probes, 3 * period + 5000),
            Task("io", self.poll_io, 5000),
            Task("heartbeat", self.poll_heartbeat, self.heartbeat_ms + 5000),
            Task("supervisor", self.poll_supervisor, 0),
        ]
        if self.lanes:
            self.tasks.append(Task("lanes", self.poll_lanes, 5000))
        for t in self.tasks:
            if t.max_gap_ms:
                self.supervisor.register(t.name, t.max_gap_ms, now_ms)
        self.supervisor.wdt = hw.watchdog(WDT_TIMEOUT_MS)

        # HELLO first, with a fresh sequence (protocol §4.1), then the first POWER and LOCK
        # records; the first LANES follows once the cells have given a window of samples.
        self._hello(now_ms, 0)
        if cfg["power_monitor"]:
            self._power_record(now_ms)
        if self.lock is not None:
            self._lock_record(now_ms)

    # -- tasks: each returns when it wants to run next ----------------------------------------

    def poll_link(self, now_ms: int) -> int:
        self.supervisor.alive("link", now_ms)
        for frame in self.link.receive():
            self._handle(now_ms, frame)
        self.link.resend(now_ms)
        if self.updater.trial and now_ms >= self.trial_deadline_ms:
            self.hw.reset()  # never confirmed: the loader rolls back at the next boot
        if self.reboot_requested:
            self.hw.reset()  # after the ACK went out; does not return on a board
        return now_ms + LINK_POLL_MS

    def poll_probes(self, now_ms: int) -> int:
        self.supervisor.alive("probes", now_ms)
        if not self._converting:
            self.probes.start()
            self._converting = True
            return now_ms + probemod.CONVERSION_MS
        self._converting = False
        self.readings = self.probes.read()
        air = self.readings[0] if self.readings else None
        self.air_c = air[2] / 16 if air is not None and air[1] == codec.STATUS_OK else None
        if self.evaporator:
            # Only an ok reading ends a defrost on temperature: missing, CRC-bad or the 85 °C
            # power-on value leave it to its timer.
            evap = self.readings[probemod.EVAPORATOR]
            self.evap_c = evap[2] / 16 if evap[1] == codec.STATUS_OK else None
        if now_ms >= self._next_sample_ms:
            self._next_sample_ms = _advance(self._next_sample_ms, now_ms, self.sample_ms)
            probes: list[tuple[int, int | str, float | None]] = []
            for i, st, raw in self.readings:
                probes.append((i, st, raw / 16))
            self.link.record(now_ms, codec.TEMP, codec.pack_temp(now_ms, probes))
        return now_ms - probemod.CONVERSION_MS + self.probe_period_ms

    def poll_io(self, now_ms: int) -> int:
        self.supervisor.alive("io", now_ms)
        if self.hw.mains is not None and self.cfg["power_monitor"]:
            level = bool(self.hw.mains.value())
            # Two polls in agreement (250 ms apart) before a change counts.
            if level != self.mains and level == self._mains_candidate:
                self.mains = level
                self._power_record(now_ms)
            self._mains_candidate = level
        self._control(now_ms)
        if self.updater.trial:
            self._trial_check(now_ms)
        duration = self.door.sample(now_ms, bool(self.hw.door.value()))
        if duration is not None:
            payload = codec.pack_door(now_ms, self.door.is_open, duration)
            self.link.record(now_ms, codec.DOOR, payload)
        if self.lock is not None and self.lock.update(now_ms, self.door.is_open) is not None:
            self.hw.lock.value(1)
            self._lock_record(now_ms)
        return now_ms + IO_POLL_MS

    def poll_heartbeat(self, now_ms: int) -> int:
        self.supervisor.alive("heartbeat", now_ms)
        if now_ms < self._next_heartbeat_ms:
            return self._next_heartbeat_ms
        self._next_heartbeat_ms = _advance(self._next_heartbeat_ms, now_ms, self.heartbeat_ms)
        if self.link.attached:
            payload = codec.pack_heartbeat(
                now_ms,
                self.hw.mem_free(),
                self.link.rx_errors,
                self.probes.errors,
                self.log.dropped + self.link.tx_short,
            )
            self.link.send(codec.HEARTBEAT, payload)
            self.trial_heartbeats += 1
        return self._next_heartbeat_ms

    def poll_lanes(self, now_ms: int) -> int:
        self.supervisor.alive("lanes", now_ms)
        filled = True
        for lane in self.lanes:
            lane.poll()
            filled = filled and lane.filled()
        lanes = [lane.report() for lane in self.lanes]
        if self.lane_reporter.due(now_ms, lanes, filled):
            self.link.record(now_ms, codec.LANES, codec.pack_lanes(now_ms, lanes))
        return now_ms + LANE_POLL_MS

    def poll_supervisor(self, now_ms: int) -> int:
        self.supervisor.check(now_ms)
        return now_ms + SUPERVISOR_MS

    def _trial_check(self, now_ms: int) -> None:
        # Healthy = the control loop ran, the link carried heartbeats to an attached host and
        # a probe answered; never at start-up. The host's confirm is what keeps the image.
        self.trial_loops += 1
        up = self.updater
        if up.healthy or not self.link.attached or self.air_c is None:
            return
        if self.trial_loops >= TRIAL_LOOPS and self.trial_heartbeats >= TRIAL_HEARTBEATS:
            up.healthy = True
            msg_type, payload = up.status(now_ms)
            self.link.send(msg_type, payload)

    # -- control ------------------------------------------------------------------------------

    def _control(self, now_ms: int) -> None:
        events = self.thermostat.step(now_ms, self.air_c, self.mains, self.evap_c)
        self._events(now_ms, events)

    def _events(self, now_ms: int, events: "list[tuple[str, bool, int]]") -> None:
        for kind, state, reason in events:
            if kind == "compressor":
                payload = codec.pack_compressor(now_ms, state, reason)
                self.link.record(now_ms, codec.COMPRESSOR, payload)
            else:
                payload = codec.pack_defrost(now_ms, state, reason)
                self.link.record(now_ms, codec.DEFROST, payload)
        self._apply_outputs()

    def _apply_outputs(self) -> None:
        t = self.thermostat
        self.hw.compressor.value(1 if t.compressor_on and self.mains else 0)
        if self.hw.heater is not None:
            self.hw.heater.value(1 if t.heater_on and self.mains else 0)

    def _lock_record(self, now_ms: int) -> None:
        lk = self.lock
        if lk is not None:
            payload = codec.pack_lock(now_ms, lk.locked, lk.reason)
            self.link.record(now_ms, codec.LOCK, payload)

    def _power_record(self, now_ms: int) -> None:
        mv = 0
        if self.hw.backup_adc is not None:
            mv = round(self.hw.backup_adc.read_u16() * BACKUP_MV_PER_COUNT)
        self.link.record(now_ms, codec.POWER, codec.pack_power(now_ms, self.mains, mv))

    # -- frames from the host -----------------------------------------------------------------

    def _handle(self, now_ms: int, frame: "codec.Frame") -> None:
        t = frame.type
        if t == codec.GET_HELLO:
            # A new host session: its sequence numbers say nothing about the last one's.
            self.link.commands.forget_all()
            if self.cfg["reboot_seq"] >= 0:
                self.store.set("reboot_seq", -1)
            self.link.ack(frame.seq, codec.ACK_OK)
            self._hello(now_ms, codec.REPLY)
            self.link.attached = True
            self._state_report(now_ms)
            for msg_type, payload in self.updater.boot_report(now_ms):
                self.link.send(msg_type, payload, codec.REPLY)
            self.link.resend(now_ms, everything=True)
        elif t == codec.RECEIPT:
            msg = codec.decode_message(t, frame.payload)
            if msg is not None and msg["boot_count"] == self.boot_count:
                self.log.receipt(msg["seqs"])
            if frame.flags & codec.ACK_REQUESTED:
                self.link.ack(frame.seq, codec.ACK_OK)
        elif t in codec.COMMAND_TYPES:
            self._command(now_ms, frame)
        elif t in (fwmsg.FW_OFFER, fwmsg.FW_CHUNK, fwmsg.FW_COMMIT):
            for msg_type, payload in self.updater.handle(now_ms, t, frame.payload):
                self.link.send(msg_type, payload, codec.REPLY)
            if self.updater.installed:
                self.reboot_requested = True  # restart on the new slot, on trial
        elif frame.flags & codec.ACK_REQUESTED:
            self.link.ack(frame.seq, codec.ACK_UNKNOWN_TYPE)

    def _command(self, now_ms: int, frame: "codec.Frame") -> None:
        if self.link.commands.seen(frame.seq):
            self.link.ack(frame.seq, codec.ACK_DUPLICATE)
            return
        msg = codec.decode_message(frame.type, frame.payload)
        status = codec.ACK_BAD_PAYLOAD if msg is None else self._execute(now_ms, msg)
        if status == codec.ACK_OK:
            self.link.commands.remember(frame.seq)
            if frame.type == codec.REBOOT:
                # Flash survives the reset, RAM does not (docs/protocol.md §5).
                self.store.set("reboot_seq", frame.seq)
        self.link.ack(frame.seq, status)

    def _execute(self, now_ms: int, msg: "dict[str, Any]") -> int:
        kind = msg["type"]
        if kind == "set_point":
            if not self.store.set("set_point_tenths", msg["tenths_c"]):
                return codec.ACK_BAD_PAYLOAD
            self.thermostat.set_c = msg["tenths_c"] / 10
            return codec.ACK_OK
        if kind == "defrost_now":
            events = self.thermostat.defrost_now(now_ms, msg["minutes"])
            if events is None:
                return codec.ACK_BUSY
            self._events(now_ms, events)
            return codec.ACK_OK
        if kind == "unlock":
            if self.lock is None:
                return codec.ACK_FAILED
            if msg["seconds"] == 0:
                return codec.ACK_BAD_PAYLOAD
            self.lock.unlock(now_ms, msg["seconds"])
            self.hw.lock.value(0)
            self._lock_record(now_ms)  # every UNLOCK, so a host waiting for one sees it
            return codec.ACK_OK
        if kind == "reboot":
            self.reboot_requested = True
            return codec.ACK_OK
        if kind in ("tare", "calibrate"):
            lane = msg["lane"]
            if lane >= len(self.lanes):
                return codec.ACK_BAD_PAYLOAD
            if kind == "tare":
                ok = self.lanes[lane].tare()
            else:
                ok = self.lanes[lane].calibrate(msg["grams"])
            if not ok:
                return codec.ACK_FAILED
            self.store.set("lane_offsets", [ln.offset for ln in self.lanes])
            self.store.set("lane_scales", [ln.scale for ln in self.lanes])
            return codec.ACK_OK
        return codec.ACK_UNKNOWN_TYPE

    # -- link frames --------------------------------------------------------------------------

    def capabilities(self) -> int:
        caps = codec.CAP_DOOR | codec.CAP_COMPRESSOR | codec.CAP_DEFROST
        if self.cfg["power_monitor"]:
            caps |= codec.CAP_POWER
        if self.lock is not None:
            caps |= codec.CAP_LOCK
        if self.lanes:
            caps |= codec.CAP_LOAD_CELLS
        return caps

    def _hello(self, now_ms: int, flags: int) -> None:
        payload = codec.pack_hello(
            now_ms,
            FIRMWARE_VERSION,
            self.hw.reset_cause,
            self.capabilities(),
            len(self.probes.roms),
            len(self.lanes),
            self.boot_count,
            self.cfg["device_id"],
        )
        self.link.send(codec.HELLO, payload, flags)

    def _state_report(self, now_ms: int) -> None:
        t = self.thermostat
        door_for = now_ms - self.door.changed_ms
        self.link.send(
            codec.DOOR, codec.pack_door(now_ms, self.door.is_open, door_for), codec.REPLY
        )
        payload = codec.pack_compressor(now_ms, t.compressor_on, t.last_reason)
        self.link.send(codec.COMPRESSOR, payload, codec.REPLY)
        payload = codec.pack_defrost(now_ms, t.defrosting, t.defrost_reason)
        self.link.send(codec.DEFROST, payload, codec.REPLY)
        # The lock and the lanes as they are now (protocol §4.8). The lanes only once the
        # boot LANES record exists: before it they have nothing to say, and it follows.
        lk = self.lock
        if lk is not None:
            self.link.send(codec.LOCK, codec.pack_lock(now_ms, lk.locked, lk.reason), codec.REPLY)
        if self.lanes and self.lane_reporter.last is not None:
            lanes = [lane.report() for lane in self.lanes]
            self.link.send(codec.LANES, codec.pack_lanes(now_ms, lanes), codec.REPLY)


def _advance(due_ms: int, now_ms: int, step_ms: int) -> int:
    # Stay on the interval grid; skip slots missed (never a burst of catch-up samples).
    nxt = due_ms + step_ms
    if nxt <= now_ms:
        nxt += ((now_ms - nxt) // step_ms + 1) * step_ms
    return nxt
