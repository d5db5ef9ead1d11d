"""The simulated fridge controller: thermostat, defrost schedule and the serial protocol.

It sees only what real firmware sees: raw probe counts, the door switch and bytes from the
host; it drives the compressor relay and the defrost heater and produces frames. The physics
lives in `hw_sim.thermal` and the hardware fakes in `hw_sim.hardware`, so a later issue can
swap this class for the MicroPython firmware running against those fakes.

Pure: time comes in as `dev_ms` (device milliseconds since boot), bytes come in and frames
go out; nothing here touches a port or a clock.

One piece on purpose, though long: it is a single state machine (`FridgeController`) whose
thermostat, defrost, record log, commands, lock and load cells share the same tick, the
same sequence counter and the same log, so splitting it would mean mixins over shared
private state rather than modules with their own responsibility.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from firmware_bridge import codec

FIRMWARE_VERSION = (0, 1, 0)
SIM_FREE_MEM = 61_440  # what a MicroPython board typically reports; constant in the sim
PROBE_AIR = 0
PROBE_PRODUCT = 1
PROBE_EVAPORATOR = 2  # the defrost termination probe, when fitted
RAW_MISSING = -127 * 16  # what a 1-Wire driver reads for a probe that does not answer
# Backup supply voltage (a 1-cell Li-ion pack): charged while mains is present, sagging on it.
BACKUP_MV_CHARGED = 4_100
BACKUP_MV_ON_BATTERY = 3_700
# Commands (docs/protocol.md §4.8b): what this controller accepts, and how many executed
# command sequence numbers it remembers to answer a retry with `duplicate`.
REMEMBERED_COMMANDS = 8
SET_POINT_TENTHS = (-300, 150)
MAX_DEFROST_MINUTES = 120
MAX_UNLOCK_S = 600
# Load cells: a lane is stable when its last LANE_WINDOW samples (one per tick) agree within
# LANE_STABLE_G; a LANES record goes out once after boot and when a stable lane moves by
# more than the deadband or a stable flag flips (docs/protocol.md §4.7a).
LANE_WINDOW = 2
LANE_STABLE_G = 2.0


@dataclass(frozen=True)
class ControllerConfig:
    set_point_c: float = 3.0
    hysteresis_c: float = 2.0  # total band: on at set + h/2, off at set − h/2
    min_off_s: float = 240.0  # compressor protection: no restart against head pressure
    sample_interval_s: float = 10.0
    heartbeat_interval_s: float = 10.0
    defrost_every_s: float = 6 * 3600.0  # 0 = never
    defrost_s: float = 25 * 60.0
    defrost_heater: bool = False  # False: off-cycle defrost (compressor off, no heater)
    # The record log: what the device keeps until the host's RECEIPT says it is stored.
    # 2048 frames hold ~5 h of 10-s samples with the usual events: a terminal reboot, a
    # cable swap or an agent crash loses nothing.
    log_capacity: int = 2048
    retransmit_after_s: float = 30.0  # resend a record not receipted by then
    # Mains sense and a backup supply fitted: POWER records (one after boot, then changes).
    power_monitor: bool = False
    lock: bool = True  # an electronic door lock fitted: UNLOCK, LOCK records
    # A defrost termination probe on the evaporator (probe 2): a defrost ends when the coil
    # reaches defrost_end_c ("temperature"), else when defrost_s runs out ("timeout").
    evaporator_probe: bool = False
    defrost_end_c: float = 8.0
    # Load cells fitted, one per lane: raw counts at zero and counts per gram (factory).
    lane_offsets: tuple[int, ...] = field(default=())
    lane_scales: tuple[float, ...] = field(default=())
    lane_deadband_g: int = 5

    def __post_init__(self) -> None:
        if self.hysteresis_c <= 0:
            raise ValueError("hysteresis_c: must be > 0")
        if self.min_off_s < 0:
            raise ValueError("min_off_s: must be >= 0")
        if self.sample_interval_s <= 0:
            raise ValueError("sample_interval_s: must be > 0")
        if self.heartbeat_interval_s <= 0:
            raise ValueError("heartbeat_interval_s: must be > 0")
        if self.defrost_every_s < 0 or self.defrost_s < 0:
            raise ValueError("defrost_every_s: must be >= 0")
        if self.log_capacity < 1:
            raise ValueError("log_capacity: must be >= 1")
        if self.retransmit_after_s <= 0:
            raise ValueError("retransmit_after_s: must be > 0")
        if len(self.lane_scales) != len(self.lane_offsets) or 0 in self.lane_scales:
            raise ValueError("lane_scales: one non-zero scale per lane offset")


@dataclass(frozen=True)
class OutFrame:
    """A frame the controller sends: the wire bytes plus what ground truth records."""

    kind: str  # codec type name: "temp", "hello", ...
    seq: int
    data: bytes
    fields: dict[str, Any]  # as `codec.decode_message` returns them, without "type"
    logged: bool = False  # a record from the log (sent until receipted)
    state_report: bool = False  # DOOR/COMPRESSOR/DEFROST flagged REPLY: not a record

    def truth(self) -> dict[str, Any]:
        """The ground-truth record body (after "device"): kind, fseq, then the fields."""
        return {"kind": self.kind, "fseq": self.seq, **self.fields}


@dataclass
class LogEntry:
    msg_type: int
    payload: bytes
    fields: dict[str, Any]
    sent_ms: int | None  # device time of the last send; None = not sent yet


class FridgeController:
    def __init__(self, device_id: str, config: ControllerConfig, boot_count: int = 1) -> None:
        self.device_id = device_id
        self.config = config
        self.boot_count = boot_count
        self.attached = False  # a host sent GET_HELLO since the last hang-up
        self.door_open = False
        self.mains = True
        self.log_overflow = 0
        # Persisted on the device (survives a reboot): the SET_POINT command changes it.
        self.set_point_c = config.set_point_c
        # Every command executed (not duplicates or refusals), for tests and diagnosis.
        self.executed: list[dict[str, Any]] = []
        # (dev_ms, "unlocked" | "locked", why) for every change of the door lock.
        self.lock_events: list[tuple[int, str, str]] = []
        # Lane calibration, persisted like the set point: TARE and CALIBRATE change it.
        self.lane_offsets = list(config.lane_offsets)
        self.lane_scales = list(config.lane_scales)
        self._reboot_seq: int | None = None  # seq of the REBOOT being carried out
        self._boot_offset_ms = 0  # simulation time of the current boot's dev_ms 0
        # Ground truth's share: records made and records lost since it last asked.
        self._new_records: list[OutFrame] = []
        self._lost_records: list[OutFrame] = []
        self._reboot_pending = False
        self._reboot_cause = "soft"
        self._boot(reset_cause="power_on", compressor_changed_ms=-(10**12))

    def _boot(self, reset_cause: str, compressor_changed_ms: int) -> None:
        """Volatile state as a (re)boot leaves it; the record log lives in RAM too."""
        config = self.config
        self.reset_cause = reset_cause
        self.compressor_on = False
        self.heater_on = False
        self.defrosting = False
        self._power_reported = False
        self.tx_dropped = 0
        self.dev_ms = 0
        self._seq = 0
        self._decoder = codec.FrameDecoder()
        # seq -> record, oldest first; records are created whether or not a host listens.
        self.log: OrderedDict[int, LogEntry] = OrderedDict()
        self._compressor_changed_ms = compressor_changed_ms
        self._held_by_min_off = False
        self._door_changed_ms = 0
        # Samples and heartbeats fall on a fixed grid of device time: k·interval, k ≥ 1.
        self._next_sample_ms = self._ms(config.sample_interval_s)
        self._next_heartbeat_ms = self._ms(config.heartbeat_interval_s)
        self._defrost_end_ms = 0
        self._next_defrost_ms = self._ms(config.defrost_every_s) if config.defrost_every_s else -1
        self.locked = True
        self._lock_reason = "boot"  # why the lock is in its current state
        self._lock_reported = False
        self._relock_ms = 0
        self._opened_while_unlocked = False
        self._executed_seqs: deque[int] = deque(maxlen=REMEMBERED_COMMANDS)
        self._lane_raw: list[deque[int]] = [
            deque(maxlen=LANE_WINDOW) for _ in self.config.lane_offsets
        ]
        self._lanes_reported: list[tuple[int, bool]] | None = None

    @staticmethod
    def _ms(seconds: float) -> int:
        return round(seconds * 1000)

    # -- host side ---------------------------------------------------------------------------

    def receive(self, data: bytes) -> list[OutFrame]:
        """Bytes from the host; returns the replies (ACK + HELLO for GET_HELLO)."""
        out: list[OutFrame] = []
        for frame in self._decoder.feed(data):
            if frame.type == codec.GET_HELLO:
                out.append(self._ack(frame.seq, codec.ACK_OK))
                out.append(self._hello(codec.REPLY))
                self.attached = True
                # A new host session numbers its commands afresh: an old seq is not a retry.
                self._executed_seqs.clear()
                out.extend(self._state_report())
                out.extend(self.resend(self.dev_ms, everything=True))
            elif frame.type == codec.RECEIPT:
                msg = codec.decode_message(frame.type, frame.payload)
                if msg is not None and msg["boot_count"] == self.boot_count:
                    for seq in msg["seqs"]:
                        self.log.pop(seq, None)
            elif frame.type in codec.COMMAND_TYPES:
                after: list[OutFrame] = []
                status = self._command(frame, after)
                if frame.flags & codec.ACK_REQUESTED:
                    out.append(self._ack(frame.seq, status))
                out.extend(after)
            elif frame.flags & codec.ACK_REQUESTED:
                out.append(self._ack(frame.seq, codec.ACK_UNKNOWN_TYPE))
        return out

    # -- commands (docs/protocol.md §4.8b) ---------------------------------------------------

    def _command(self, frame: codec.Frame, out: list[OutFrame]) -> int:
        """Execute a host command once; the ACK status. Frames it causes go to `out`."""
        if frame.seq in self._executed_seqs:
            return codec.ACK_DUPLICATE  # a retry whose ACK was lost: not run again
        msg = codec.decode_message(frame.type, frame.payload)
        if msg is None:
            return codec.ACK_BAD_PAYLOAD
        status = self._execute(msg, out)
        if status == codec.ACK_OK:
            # Refusals are not remembered, so a retry is judged again (protocol §5).
            self._executed_seqs.append(frame.seq)
            self.executed.append({"seq": frame.seq, "dev_ms": self.dev_ms, **msg})
            if msg["type"] == "reboot":
                self._reboot_seq = frame.seq
        return status

    def _execute(self, msg: dict[str, Any], out: list[OutFrame]) -> int:
        kind, ms = msg["type"], self.dev_ms
        if kind == "set_point":
            lo, hi = SET_POINT_TENTHS
            if not lo <= msg["tenths_c"] <= hi:
                return codec.ACK_BAD_PAYLOAD
            self.set_point_c = msg["tenths_c"] / 10  # the thermostat follows at the next tick
            return codec.ACK_OK
        if kind == "defrost_now":
            if msg["minutes"] > MAX_DEFROST_MINUTES:
                return codec.ACK_BAD_PAYLOAD
            if self.defrosting:
                return codec.ACK_BUSY
            minutes = msg["minutes"]
            self._start_defrost(ms, minutes * 60.0 if minutes else self.config.defrost_s, out)
            return codec.ACK_OK
        if kind == "unlock":
            if not self.config.lock:
                return codec.ACK_FAILED
            if not 1 <= msg["seconds"] <= MAX_UNLOCK_S:
                return codec.ACK_BAD_PAYLOAD
            self.locked = False
            self._relock_ms = ms + msg["seconds"] * 1000
            self._opened_while_unlocked = self.door_open
            self._lock_change(ms, "command", out)
            return codec.ACK_OK
        if kind == "reboot":
            self._reboot_pending = True  # after this ACK has gone out, at the next tick
            self._reboot_cause = "soft"
            return codec.ACK_OK
        # TARE / CALIBRATE: lanes that exist and have samples.
        lane = msg["lane"]
        if lane >= len(self._lane_raw):
            return codec.ACK_BAD_PAYLOAD
        window = self._lane_raw[lane]
        if not window:
            return codec.ACK_FAILED
        mean = sum(window) / len(window)
        if kind == "tare":
            self.lane_offsets[lane] = round(mean)
            return codec.ACK_OK
        if msg["grams"] <= 0 or mean == self.lane_offsets[lane]:
            return codec.ACK_FAILED
        self.lane_scales[lane] = (mean - self.lane_offsets[lane]) / msg["grams"]
        return codec.ACK_OK

    def _reboot(self, sim_ms: int) -> list[OutFrame]:
        """A soft reboot: new boot count and sequence, dev_ms from 0, HELLO (cause soft).

        The record log is in RAM: records the host has not receipted yet are lost and
        reported like an overflow, so ground truth stays exact.
        """
        for seq, entry in self.log.items():
            self._lost_records.append(
                OutFrame(codec.TYPE_NAMES[entry.msg_type], seq, b"", entry.fields, logged=True)
            )
        self.log_overflow += len(self.log)
        self.boot_count += 1
        self._boot_offset_ms = sim_ms
        self._reboot_pending = False
        # Relays drop during the restart; count the compressor's minimum off time from boot.
        self._boot(reset_cause=self._reboot_cause, compressor_changed_ms=0)
        if self._reboot_seq is not None:
            # Kept in flash across the reset: a retry of that REBOOT is only a duplicate.
            self._executed_seqs.append(self._reboot_seq)
            self._reboot_seq = None
        if not self.attached:
            return []
        # The host that ordered the reboot is still on the line: introduce ourselves.
        return [self._hello(), *self._state_report()]

    def watchdog_reset(self) -> None:
        """A task hung and the watchdog bit: the same restart as a reboot, cause watchdog."""
        self._reboot_pending = True
        self._reboot_cause = "watchdog"

    def _relock(self, dev_ms: int, door_open: bool, out: list[OutFrame]) -> None:
        if self.locked:
            return
        if door_open:
            self._opened_while_unlocked = True
        elif self._opened_while_unlocked:
            self.locked = True
            self._lock_change(dev_ms, "door_closed", out)
            return
        if dev_ms >= self._relock_ms:
            self.locked = True
            self._lock_change(dev_ms, "timeout", out)

    def _lock_change(self, dev_ms: int, reason: str, out: list[OutFrame]) -> None:
        self._lock_reason = reason
        if reason != "boot":
            self.lock_events.append((dev_ms, "locked" if self.locked else "unlocked", reason))
        self._emit(
            out,
            codec.LOCK,
            codec.pack_lock(dev_ms, self.locked, reason),
            {"dev_ms": dev_ms, "locked": self.locked, "reason": reason},
        )

    def _lanes(self, dev_ms: int, lanes_raw: Sequence[int], out: list[OutFrame]) -> None:
        if not self._lane_raw:
            return
        for k, window in enumerate(self._lane_raw):
            if k < len(lanes_raw):
                window.append(lanes_raw[k])
        report = self._lane_report()
        last = self._lanes_reported
        if last is None:
            if not all(len(w) == LANE_WINDOW for w in self._lane_raw):
                return  # the boot report waits for a full window
        elif not any(
            s != ls or (s and abs(g - lg) > self.config.lane_deadband_g)
            for (g, s), (lg, ls) in zip(report, last, strict=True)
        ):
            return
        self._lanes_reported = report
        lanes = [{"lane": k, "grams": g, "stable": s} for k, (g, s) in enumerate(report)]
        self._emit(
            out,
            codec.LANES,
            codec.pack_lanes(dev_ms, report),
            {"dev_ms": dev_ms, "lanes": lanes},
        )

    def _lane_report(self) -> list[tuple[int, bool]]:
        """(whole grams, stable) per lane from the samples so far; (0, False) before one."""
        report: list[tuple[int, bool]] = []
        for k, window in enumerate(self._lane_raw):
            if not window:
                report.append((0, False))
                continue
            scale = self.lane_scales[k]
            grams = round((sum(window) / len(window) - self.lane_offsets[k]) / scale)
            spread = (max(window) - min(window)) / abs(scale)
            report.append((grams, len(window) == LANE_WINDOW and spread <= LANE_STABLE_G))
        return report

    def detach(self) -> None:
        """The host closed the port: stop streaming until the next GET_HELLO."""
        self.attached = False
        self._decoder.reset_sequence()

    def note_tx_dropped(self) -> None:
        """The UART could not take a frame; reported in the next HEARTBEAT."""
        self.tx_dropped += 1

    @property
    def rx_errors(self) -> int:
        s = self._decoder.stats()
        return (
            s["cobs_errors"]
            + s["crc_errors"]
            + s["length_errors"]
            + s["oversize"]
            + s["version_errors"]
        )

    # -- control loop ------------------------------------------------------------------------

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
        """One pass of the control loop at device time `dev_ms` with fresh readings
        (`lanes_raw`: one load-cell sample per lane, in HX711 counts; `evaporator_raw`: the
        termination probe, when fitted).

        `dev_ms` counts from the first boot; after a soft reboot the controller counts its
        own device time from the reboot.
        """
        out: list[OutFrame] = []
        if self._reboot_pending:
            out += self._reboot(dev_ms)
        dev_ms -= self._boot_offset_ms
        self.dev_ms = dev_ms
        if self.config.power_monitor:
            self._power(dev_ms, mains, out)
        if self.config.lock and not self._lock_reported:
            self._lock_reported = True
            self._lock_change(dev_ms, "boot", out)
        evap_c = (None if evaporator_raw is None or evaporator_raw == RAW_MISSING
                  else evaporator_raw / 16)
        self._defrost_schedule(dev_ms, out, evap_c)
        # A missing air probe holds the thermostat where it is (the firmware does the same).
        if self.mains and air_raw != RAW_MISSING:
            self._thermostat(dev_ms, air_raw / 16, out)
        if self.config.lock:
            self._relock(dev_ms, door_open, out)
        self._lanes(dev_ms, lanes_raw, out)
        if door_open != self.door_open:
            duration = dev_ms - self._door_changed_ms
            self.door_open = door_open
            self._door_changed_ms = dev_ms
            self._emit(
                out,
                codec.DOOR,
                codec.pack_door(dev_ms, door_open, duration),
                {"dev_ms": dev_ms, "open": door_open, "duration_ms": duration},
            )
        if dev_ms >= self._next_sample_ms:
            self._next_sample_ms = self._advance(
                self._next_sample_ms, dev_ms, self.config.sample_interval_s
            )
            probes = [_probe(PROBE_AIR, air_raw), _probe(PROBE_PRODUCT, product_raw)]
            if self.config.evaporator_probe:
                probes.append(_probe(PROBE_EVAPORATOR, RAW_MISSING if evaporator_raw is None
                                     else evaporator_raw))
            self._emit(
                out,
                codec.TEMP,
                codec.pack_temp(dev_ms, list(probes)),
                {"dev_ms": dev_ms, "probes": [list(p) for p in probes]},
            )
        if dev_ms >= self._next_heartbeat_ms:
            self._next_heartbeat_ms = self._advance(
                self._next_heartbeat_ms, dev_ms, self.config.heartbeat_interval_s
            )
            # The wire carries 16-bit counters; record what the host will decode.
            rx_errors, tx_dropped = self.rx_errors & 0xFFFF, self.tx_dropped & 0xFFFF
            payload = codec.pack_heartbeat(dev_ms, SIM_FREE_MEM, rx_errors, 0, tx_dropped)
            fields = {
                "dev_ms": dev_ms,
                "free_mem": SIM_FREE_MEM,
                "rx_errors": rx_errors,
                "probe_errors": 0,
                "tx_dropped": tx_dropped,
            }
            self._emit(out, codec.HEARTBEAT, payload, fields)
        if self.attached:
            out.extend(self.resend(dev_ms, everything=False))
        return out

    # -- the record log ----------------------------------------------------------------------

    def take_new_records(self) -> tuple[list[OutFrame], list[OutFrame]]:
        """(records created, records pushed out of a full log) since the last call: what
        ground truth needs, whether or not a host was listening."""
        new, lost = self._new_records, self._lost_records
        self._new_records, self._lost_records = [], []
        return new, lost

    @staticmethod
    def type_name(msg_type: int) -> str:
        return codec.TYPE_NAMES[msg_type]

    def unsent(self, seq: int) -> None:
        """The link could not take this logged frame now: resend it at the next chance."""
        entry = self.log.get(seq)
        if entry is not None:
            entry.sent_ms = None

    def resend(self, dev_ms: int, everything: bool, limit: int = 32) -> list[OutFrame]:
        due_ms = self._ms(self.config.retransmit_after_s)
        out: list[OutFrame] = []
        for seq, entry in self.log.items():
            if len(out) >= limit and not everything:
                break
            if everything or entry.sent_ms is None or dev_ms - entry.sent_ms >= due_ms:
                entry.sent_ms = dev_ms
                data = codec.encode_frame(entry.msg_type, seq, entry.payload, codec.RETRANSMISSION)
                out.append(
                    OutFrame(codec.TYPE_NAMES[entry.msg_type], seq, data, entry.fields, logged=True)
                )
        return out

    def _advance(self, due_ms: int, now_ms: int, interval_s: float) -> int:
        # Stay on the interval grid; skip slots missed (never a burst of catch-up samples).
        step = self._ms(interval_s)
        nxt = due_ms + step
        if nxt <= now_ms:
            nxt += ((now_ms - nxt) // step + 1) * step
        return nxt

    def _power(self, dev_ms: int, mains: bool, out: list[OutFrame]) -> None:
        # The controller itself runs on the backup supply; the compressor cannot.
        if self._power_reported and mains == self.mains:
            return
        self._power_reported = True
        self.mains = mains
        backup_mv = BACKUP_MV_CHARGED if mains else BACKUP_MV_ON_BATTERY
        self._emit(
            out,
            codec.POWER,
            codec.pack_power(dev_ms, mains, backup_mv),
            {"dev_ms": dev_ms, "mains": mains, "backup_mv": backup_mv},
        )
        if not mains and self.compressor_on:
            self._set_compressor(dev_ms, False, "power", out)

    def _defrost_schedule(self, dev_ms: int, out: list[OutFrame],
                          evaporator_c: float | None = None) -> None:
        warm = (self.config.evaporator_probe and evaporator_c is not None
                and evaporator_c >= self.config.defrost_end_c)
        if self.defrosting and (warm or dev_ms >= self._defrost_end_ms):
            self.defrosting = False
            self.heater_on = False
            reason = "temperature" if warm else "timeout"
            self._emit(
                out,
                codec.DEFROST,
                codec.pack_defrost(dev_ms, False, reason),
                {"dev_ms": dev_ms, "active": False, "reason": reason},
            )
        elif not self.defrosting and 0 <= self._next_defrost_ms <= dev_ms:
            self._next_defrost_ms += self._ms(self.config.defrost_every_s)
            self._start_defrost(dev_ms, self.config.defrost_s, out, "schedule")

    def _start_defrost(
        self, dev_ms: int, seconds: float, out: list[OutFrame], reason: str = "command"
    ) -> None:
        self.defrosting = True
        self._defrost_end_ms = dev_ms + self._ms(seconds)
        self.heater_on = self.config.defrost_heater
        self._emit(
            out,
            codec.DEFROST,
            codec.pack_defrost(dev_ms, True, reason),
            {"dev_ms": dev_ms, "active": True, "reason": reason},
        )
        if self.compressor_on:
            self._set_compressor(dev_ms, False, "defrost_start", out)

    def _thermostat(self, dev_ms: int, air_c: float, out: list[OutFrame]) -> None:
        if self.defrosting:
            return
        half = self.config.hysteresis_c / 2
        if self.compressor_on:
            if air_c <= self.set_point_c - half:
                self._set_compressor(dev_ms, False, "thermostat", out)
            return
        if air_c < self.set_point_c + half:
            self._held_by_min_off = False  # demand went away while waiting
            return
        if dev_ms - self._compressor_changed_ms < self._ms(self.config.min_off_s):
            self._held_by_min_off = True
            return
        reason = "min_off_time" if self._held_by_min_off else "thermostat"
        self._set_compressor(dev_ms, True, reason, out)

    def _set_compressor(self, dev_ms: int, on: bool, reason: str, out: list[OutFrame]) -> None:
        self.compressor_on = on
        self._compressor_changed_ms = dev_ms
        self._held_by_min_off = False
        self._emit(
            out,
            codec.COMPRESSOR,
            codec.pack_compressor(dev_ms, on, reason),
            {"dev_ms": dev_ms, "on": on, "reason": reason},
        )

    # -- frames ------------------------------------------------------------------------------

    def _emit(
        self,
        out: list[OutFrame],
        msg_type: int,
        payload: bytes,
        fields: dict[str, Any],
        flags: int = 0,
    ) -> None:
        if msg_type in codec.LOGGED_TYPES and not flags & codec.REPLY:
            frame = self._frame(msg_type, payload, fields, flags)
            frame = OutFrame(frame.kind, frame.seq, frame.data, frame.fields, logged=True)
            if len(self.log) >= self.config.log_capacity:
                old_seq, old = self.log.popitem(last=False)
                self.log_overflow += 1
                self._lost_records.append(
                    OutFrame(codec.TYPE_NAMES[old.msg_type], old_seq, b"", old.fields, logged=True)
                )
            self.log[frame.seq] = LogEntry(
                msg_type, payload, fields, self.dev_ms if self.attached else None
            )
            self._new_records.append(frame)
            if self.attached:
                out.append(frame)
        # Link chatter (heartbeats) only goes to a host that is listening.
        elif self.attached:
            out.append(self._frame(msg_type, payload, fields, flags))

    def _frame(
        self, msg_type: int, payload: bytes, fields: dict[str, Any], flags: int = 0
    ) -> OutFrame:
        seq = self._seq
        self._seq = (self._seq + 1) & 0xFFFF
        data = codec.encode_frame(msg_type, seq, payload, flags)
        report = bool(flags & codec.REPLY) and msg_type in codec.LOGGED_TYPES
        return OutFrame(codec.TYPE_NAMES[msg_type], seq, data, fields, state_report=report)

    def _state_report(self) -> list[OutFrame]:
        """Current door, compressor and defrost state after HELLO, flagged REPLY, so a host
        that just attached knows the state without waiting for the next change. For DOOR,
        duration_ms is then the time spent in the current state so far. Then the lock (if
        fitted, with the reason of its last change) and the lanes' present weights (if any
        load cells), also flagged REPLY (docs/protocol.md §4.8)."""
        ms = self.dev_ms
        door_for = max(0, ms - self._door_changed_ms)
        comp_reason = "defrost_start" if self.defrosting else "thermostat"
        defrost_reason = "schedule"
        report = [
            self._frame(
                codec.DOOR,
                codec.pack_door(ms, self.door_open, door_for),
                {"dev_ms": ms, "open": self.door_open, "duration_ms": door_for},
                codec.REPLY,
            ),
            self._frame(
                codec.COMPRESSOR,
                codec.pack_compressor(ms, self.compressor_on, comp_reason),
                {"dev_ms": ms, "on": self.compressor_on, "reason": comp_reason},
                codec.REPLY,
            ),
            self._frame(
                codec.DEFROST,
                codec.pack_defrost(ms, self.defrosting, defrost_reason),
                {"dev_ms": ms, "active": self.defrosting, "reason": defrost_reason},
                codec.REPLY,
            ),
        ]
        return report + self._state_report_shelf(ms)

    def _state_report_shelf(self, ms: int) -> list[OutFrame]:
        out: list[OutFrame] = []
        if self.config.lock:
            reason = self._lock_reason
            out.append(
                self._frame(
                    codec.LOCK,
                    codec.pack_lock(ms, self.locked, reason),
                    {"dev_ms": ms, "locked": self.locked, "reason": reason},
                    codec.REPLY,
                )
            )
        if self._lane_raw and self._lanes_reported is not None:  # after the boot LANES
            report = self._lane_report()
            lanes = [{"lane": k, "grams": g, "stable": s} for k, (g, s) in enumerate(report)]
            out.append(
                self._frame(
                    codec.LANES,
                    codec.pack_lanes(ms, report),
                    {"dev_ms": ms, "lanes": lanes},
                    codec.REPLY,
                )
            )
        return out

    def _ack(self, acked_seq: int, status: int) -> OutFrame:
        return self._frame(
            codec.ACK,
            codec.pack_ack(acked_seq, status),
            {"acked_seq": acked_seq, "status": codec.ACK_STATUS_NAMES[status]},
            codec.REPLY,
        )

    def _hello(self, flags: int = 0) -> OutFrame:
        """HELLO: flagged REPLY in answer to GET_HELLO, unflagged when the device booted."""
        caps = codec.CAP_DOOR | codec.CAP_COMPRESSOR | codec.CAP_DEFROST
        if self.config.lock:
            caps |= codec.CAP_LOCK
        if self._lane_raw:
            caps |= codec.CAP_LOAD_CELLS
        if self.config.power_monitor:
            caps |= codec.CAP_POWER
        lanes = len(self._lane_raw)
        probe_count = 3 if self.config.evaporator_probe else 2
        payload = codec.pack_hello(
            self.dev_ms,
            FIRMWARE_VERSION,
            self.reset_cause,
            caps,
            probe_count,
            lanes,
            self.boot_count,
            self.device_id,
        )
        fields = {
            "dev_ms": self.dev_ms,
            "protocol": [codec.PROTOCOL_MAJOR, codec.PROTOCOL_MINOR],
            "firmware": list(FIRMWARE_VERSION),
            "reset_cause": self.reset_cause,
            "capabilities": caps,
            "probe_count": probe_count,
            "lane_count": lanes,
            "boot_count": self.boot_count,
            "device_id": self.device_id,
        }
        return self._frame(codec.HELLO, payload, fields, flags)


def _probe(index: int, raw: int) -> tuple[int, str, float | None]:
    """One probe's TEMP entry: missing (no value) when the bus read −127 °C."""
    if raw == RAW_MISSING:
        return (index, "missing", None)
    return (index, "ok", raw / 16)
