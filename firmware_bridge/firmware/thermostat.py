"""Compressor and defrost control, pure: readings and time in, relay decisions out.

Behaviour follows hw_sim/controller.py (the reference): on at set point + h/2, off at
set point - h/2, no restart within the minimum off time (the start is then reported with
reason min_off_time), off-cycle defrost on a fixed schedule that stops the compressor.
Added for a real board: a defrost on command, mains loss, and an emergency duty cycle
when the air probe has given no usable reading for a while (a cabinet left without
cooling is worse than one cycled blind). With an evaporator probe fitted a defrost ends
`temperature` once the coil reads defrost_end_tenths; without one, or while it gives no
usable reading, it ends `timeout` when its time runs out (never a heater left on).
Reasons are codec's compressor/defrost codes.
"""

import codec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    Event = tuple[str, bool, int]  # ("compressor" | "defrost", on/active, reason code)

_NEVER = -(10**12)


class Thermostat:
    def __init__(self, cfg: "dict[str, Any]", now_ms: int = 0) -> None:
        self.compressor_on = False
        self.heater_on = False
        self.defrosting = False
        self.mains = True
        self.last_reason = codec.COMPRESSOR_THERMOSTAT
        self.defrost_reason = codec.DEFROST_SCHEDULE
        self._changed_ms = _NEVER  # as if off for ever: may start at once
        self._held_by_min_off = False
        self._start_reason = codec.COMPRESSOR_THERMOSTAT  # for the next start
        self._defrost_end_ms = 0
        self._air_ok_ms = now_ms  # last usable air reading
        self.configure(cfg, now_ms)

    def configure(self, cfg: "dict[str, Any]", now_ms: int) -> None:
        self.set_c = cfg["set_point_tenths"] / 10
        self.half_c = cfg["hysteresis_tenths"] / 20
        self.min_off_ms = cfg["min_off_s"] * 1000
        self.defrost_ms = cfg["defrost_minutes"] * 60000
        self.defrost_every_ms = cfg["defrost_every_min"] * 60000
        self.heater_fitted = cfg["defrost_heater"]
        self.evaporator_fitted = cfg["evaporator_probe"]
        self.defrost_end_c = cfg["defrost_end_tenths"] / 10
        self.fault_after_ms = cfg["probe_fault_s"] * 1000
        self.fault_on_ms = cfg["fault_on_s"] * 1000
        self.fault_off_ms = cfg["fault_off_s"] * 1000
        self._next_defrost_ms = now_ms + self.defrost_every_ms if self.defrost_every_ms else -1

    def step(
        self, now_ms: int, air_c: "float | None", mains: bool = True, evap_c: "float | None" = None
    ) -> "list[Event]":
        """One control pass; `air_c` None when the air probe gave no usable reading, `evap_c`
        likewise for the evaporator probe (or None when none is fitted).

        Returns events in order: ("compressor", on, reason) and ("defrost", active, reason).
        """
        out: list[Event] = []
        if mains != self.mains:
            self.mains = mains
            if not mains:
                self.heater_on = False
                if self.compressor_on:
                    self._set(now_ms, False, codec.COMPRESSOR_POWER, out)
                self._start_reason = codec.COMPRESSOR_POWER
            else:
                self.heater_on = self.defrosting and self.heater_fitted
        self._defrost(now_ms, out, evap_c)
        if air_c is not None:
            self._air_ok_ms = now_ms
        if self.mains and not self.defrosting:
            if air_c is not None:
                self._regulate(now_ms, air_c, out)
            elif now_ms - self._air_ok_ms >= self.fault_after_ms:
                self._duty_cycle(now_ms, out)
        return out

    def defrost_now(self, now_ms: int, minutes: int) -> "list[Event] | None":
        """Start a defrost on command; None when one is already running."""
        if self.defrosting:
            return None
        out: list[Event] = []
        ms = minutes * 60000 if minutes else self.defrost_ms
        self._start_defrost(now_ms, ms, codec.DEFROST_COMMAND, out)
        if self.defrost_every_ms:
            self._next_defrost_ms = now_ms + self.defrost_every_ms
        return out

    def _defrost(self, now_ms: int, out: "list[Event]", evap_c: "float | None") -> None:
        if self.defrosting:
            warm = self.evaporator_fitted and evap_c is not None and evap_c >= self.defrost_end_c
            if warm or now_ms >= self._defrost_end_ms:
                reason = codec.DEFROST_TEMPERATURE if warm else codec.DEFROST_TIMEOUT
                self.defrosting = False
                self.heater_on = False
                self.defrost_reason = reason
                self._start_reason = codec.COMPRESSOR_DEFROST_END
                out.append(("defrost", False, reason))
        elif 0 <= self._next_defrost_ms <= now_ms:
            self._next_defrost_ms += self.defrost_every_ms
            self._start_defrost(now_ms, self.defrost_ms, codec.DEFROST_SCHEDULE, out)

    def _start_defrost(self, now_ms: int, ms: int, reason: int, out: "list[Event]") -> None:
        self.defrosting = True
        self.defrost_reason = reason
        self._defrost_end_ms = now_ms + ms
        self.heater_on = self.heater_fitted and self.mains
        out.append(("defrost", True, reason))
        if self.compressor_on:
            self._set(now_ms, False, codec.COMPRESSOR_DEFROST_START, out)

    def _regulate(self, now_ms: int, air_c: float, out: "list[Event]") -> None:
        if self.compressor_on:
            if air_c <= self.set_c - self.half_c:
                self._set(now_ms, False, codec.COMPRESSOR_THERMOSTAT, out)
            return
        if air_c < self.set_c + self.half_c:
            self._held_by_min_off = False  # demand went away while waiting
            return
        if now_ms - self._changed_ms < self.min_off_ms:
            self._held_by_min_off = True
            return
        reason = codec.COMPRESSOR_MIN_OFF_TIME if self._held_by_min_off else self._start_reason
        self._set(now_ms, True, reason, out)

    def _duty_cycle(self, now_ms: int, out: "list[Event]") -> None:
        held = now_ms - self._changed_ms
        if self.compressor_on and held >= self.fault_on_ms:
            self._set(now_ms, False, codec.COMPRESSOR_FAULT, out)
        elif not self.compressor_on and held >= max(self.fault_off_ms, self.min_off_ms):
            self._set(now_ms, True, codec.COMPRESSOR_FAULT, out)

    def _set(self, now_ms: int, on: bool, reason: int, out: "list[Event]") -> None:
        self.compressor_on = on
        self.last_reason = reason
        self._changed_ms = now_ms
        self._held_by_min_off = False
        if on:
            self._start_reason = codec.COMPRESSOR_THERMOSTAT
        out.append(("compressor", on, reason))
