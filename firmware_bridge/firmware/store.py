"""Configuration that survives a reboot: one small JSON file, written atomically.

A bad or missing value falls back to its default and is counted (`store.errors`), so a
corrupt file never stops the controller from cooling. Writes go to a temporary file that
is then renamed over the old one; a power cut mid-write leaves the old file intact.
"""

import json
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FILE = "config.json"

# key: (default, min, max); booleans and strings have no range.
DEFAULTS: "dict[str, tuple[Any, int | None, int | None]]" = {
    "device_id": ("", None, None),
    "set_point_tenths": (30, -300, 200),  # tenths of °C
    "hysteresis_tenths": (20, 2, 100),
    "min_off_s": (240, 0, 1800),
    "sample_interval_s": (60, 1, 3600),  # TEMP records
    "heartbeat_interval_s": (60, 1, 3600),
    "probe_period_ms": (2000, 800, 60000),  # one bus conversion per period
    "defrost_every_min": (360, 0, 2880),  # 0 = never
    "defrost_minutes": (25, 0, 240),
    "defrost_heater": (False, None, None),
    # A termination probe on the evaporator coil (probe 2, same 1-Wire bus): a defrost
    # ends when it reads defrost_end_tenths, else on defrost_minutes.
    "evaporator_probe": (False, None, None),
    "defrost_end_tenths": (80, -100, 300),
    "probe_fault_s": (120, 10, 3600),  # no usable air reading this long: duty cycle
    "fault_on_s": (600, 60, 3600),
    "fault_off_s": (900, 60, 3600),
    "log_capacity": (2048, 16, 8192),
    "retransmit_after_s": (30, 1, 3600),
    "lanes": (0, 0, 8),  # load cells fitted
    "lock": (False, None, None),
    "power_monitor": (False, None, None),
    "probe_roms": ([], None, None),  # hex ROM codes, index = probe number
    "lane_offsets": ([], None, None),  # raw counts at zero, per lane
    "lane_scales": ([], None, None),  # raw counts per gram, per lane
    "lane_deadband_g": (5, 1, 10000),  # a stable lane moving more than this is reported
    # The seq of a REBOOT being executed, so a retry of it after the restart is answered
    # `duplicate` instead of rebooting again; -1 = none. Cleared by the next GET_HELLO.
    "reboot_seq": (-1, -1, 0xFFFF),
    "boot_count": (0, 0, 0xFFFFFFFF),
}


def _check(key: str, value: "Any") -> bool:
    default, lo, hi = DEFAULTS[key]
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            return False
        return (lo is None or lo <= value) and (hi is None or value <= hi)
    if isinstance(default, str):
        return isinstance(value, str) and len(value.encode()) <= 232
    return isinstance(value, list)


class Store:
    def __init__(self, directory: str = "") -> None:
        self.path = directory + "/" + FILE if directory else FILE
        self.errors = 0  # values replaced by their defaults at the last load
        self.values: dict[str, Any] = {}
        for key in DEFAULTS:
            self.values[key] = _copy(DEFAULTS[key][0])

    def load(self) -> "dict[str, Any]":
        raw = None
        for path in (self.path, self.path + ".tmp"):
            try:
                with open(path) as f:
                    raw = json.load(f)
                break
            except (OSError, ValueError):
                continue
        if not isinstance(raw, dict):
            raw = {}
        self.errors = 0
        for key in DEFAULTS:
            if key not in raw:
                continue
            if _check(key, raw[key]):
                self.values[key] = raw[key]
            else:
                self.errors += 1
        return self.values

    def set(self, key: str, value: "Any") -> bool:
        """Validate, keep and save one value; False (nothing changed) when it is invalid."""
        if key not in DEFAULTS or not _check(key, value):
            return False
        self.values[key] = value
        self.save()
        return True

    def save(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.values, f)
        try:
            os.rename(tmp, self.path)
        except OSError:
            # FAT will not rename over an existing file: remove it first.
            os.remove(self.path)
            os.rename(tmp, self.path)

    def count_boot(self) -> int:
        """Persist and return this boot's number (1 for the first boot)."""
        n = (int(self.values["boot_count"]) + 1) & 0xFFFFFFFF
        self.values["boot_count"] = n
        self.save()
        return n


def _copy(value: "Any") -> "Any":
    return list(value) if isinstance(value, list) else value
