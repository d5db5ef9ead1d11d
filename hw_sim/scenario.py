"""Scenario files: which devices to simulate and how, loaded with `xiaodian.config`.

```toml
[sim]
seed = 42
speed = 60.0                  # simulated seconds per real second
link_dir = "run"              # symlinks LINK_DIR/<device-id> -> /dev/pts/N (relative to this file)
truth = "run/truth.jsonl"     # ground-truth JSON lines

[[fridges]]
id = "fridge-1"
set_point_c = 3.0
# optional, with defaults: sample_interval_s = 10, heartbeat_interval_s = 10,
# ambient_c = 28, door_openings_per_hour = 6, door_open_s = 20, door_night_factor = 1
# (the rate from 22:00 to 07:00), door_weekend_factor = 1 (days 5, 6), defrost_every_h = 6
# (0 = never), defrost_minutes = 25, defrost_heater = false (off-cycle defrost),
# min_off_s = 240, initial_air_c = set point, initial_product_c = set point,
# line_noise_ber = 0 (bit error rate on the serial line, both directions),
# drop_byte_rate = 0 (share of bytes lost on the line),
# controller = "python" (or "firmware", "micropython": docs/firmware.md),
# lanes = [] (grams of stock on each load-cell lane at the start, at most 4),
# lock = false (an electronic door lock: while locked the door cannot be opened),
# evaporator_probe = false (a defrost termination probe, probe 2),
# defrost_end_c = 8 (the coil temperature that ends a defrost, with that probe)

# Faults on a timeline of simulated seconds; `every_s` repeats the window (0 = once).
# Window faults: unplug noise door_open door_ajar compressor_fail power_cut
# thermostat_stuck_on heater_stuck_on probe_unplugged probe_flatline probe_85 (the probe
# faults name their `probe`: 0 air, 1 product), lane_drift (names its `lane` and
# `drift_g_per_h`). Instant faults (no for_s): reboot, watchdog (a firmware task hangs
# until the watchdog resets the controller), item_taken and restock (name `lane`, `grams`).
# Slow faults (no for_s: they develop from at_s to `severity` over `ramp_s` and stay):
# condenser_fouling, refrigerant_leak, iced_evaporator, probe_intermittent (names `probe`).
[[fridges.faults]]
fault = "unplug"
at_s = 600
for_s = 60
every_s = 600
[[fridges.faults]]
fault = "noise"               # only noise windows take ber / drop_byte_rate
at_s = 1800
for_s = 300
ber = 1e-3

[[scanners]]
id = "scanner-1"
scans_per_hour = 30
[[scanners.scans]]            # scripted scans, on top of the random ones
at_s = 120
line = "]E06901234567892"     # sent as is, plus CR/LF
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from xiaodian.config import load_config
from xiaodian.wire import ids


def _check_id(device_id: str) -> None:
    # The id becomes a file name in link_dir and a key in ground truth and MQTT topics.
    if not ids.is_device_id(device_id):
        raise ValueError(
            "id: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )


@dataclass(frozen=True)
class SimSettings:
    # Required, so that they are always resolved relative to the scenario file.
    link_dir: Path
    truth: Path
    seed: int = 1
    speed: float = 60.0
    step_s: float = 1.0  # fixed physics step in simulated seconds
    # Line rate of every serial link in real time, 8N1 (10 bits a byte), both directions;
    # 0 = as fast as the pty goes. 115200 makes transfer times mean something (bench).
    baud: int = 0
    # The firmware-signing public keys (hex of the raw 32 bytes) the factory writes into each
    # controller's fwkeys.json (firmware_bridge/fwsig.py): the firmware installs only images
    # they signed. Empty: none written, the controllers refuse every update.
    firmware_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.baud < 0:
            raise ValueError("baud: must be >= 0")
        for key in self.firmware_keys:
            if len(key) != 64 or any(c not in "0123456789abcdefABCDEF" for c in key):
                raise ValueError("firmware_keys: each the hex of a raw 32-byte Ed25519 key")
        if self.speed <= 0:
            raise ValueError("speed: must be > 0")
        if not 0 < self.step_s <= 10:
            raise ValueError("step_s: must be in (0, 10]")


# Which controller runs the fridge: the Python reference (hw_sim/controller.py), the
# MicroPython firmware in-process under CPython, or the firmware in a real `micropython`
# process (fidelity mode, slower; see docs/firmware.md).
ControllerKind = Literal["python", "firmware", "micropython"]

FaultKind = Literal[
    "unplug",
    "noise",
    "door_open",
    "door_ajar",
    "compressor_fail",
    "power_cut",
    "thermostat_stuck_on",
    "heater_stuck_on",
    "probe_unplugged",
    "probe_flatline",
    "probe_85",
    "reboot",
    "watchdog",
    "lane_drift",
    "item_taken",
    "restock",
    "condenser_fouling",
    "refrigerant_leak",
    "iced_evaporator",
    "probe_intermittent",
]
PROBE_FAULTS = frozenset(
    {"probe_unplugged", "probe_flatline", "probe_85", "probe_intermittent"}
)
# Slow faults develop over days: from at_s their `severity` grows linearly over `ramp_s` and
# then holds; nothing repairs them within a run (hw_sim/slow_faults.py says what each does).
SLOW_FAULTS = frozenset(
    {"condenser_fouling", "refrigerant_leak", "iced_evaporator", "probe_intermittent"}
)
LANE_FAULTS = frozenset({"lane_drift", "item_taken", "restock"})
# Happen at one instant (at_s, then every every_s) instead of opening a window.
INSTANT_FAULTS = frozenset({"reboot", "watchdog", "item_taken", "restock"})
PROBE_COUNT = 2  # air (0) and product (1), as every simulated cabinet has
MAX_LANES = 4  # HX711 channels on the controller board (firmware/pins.py)


def _check_rate(name: str, value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"{name}: must be in [0, 1)")


@dataclass(frozen=True)
class FaultSpec:
    """One fault window [at_s, at_s + for_s) of simulated time, repeated every `every_s`;
    an instant fault (reboot) happens at at_s (+ k·every_s) and has no for_s."""

    fault: FaultKind
    at_s: float
    for_s: float = 0.0  # required (> 0) for window faults
    every_s: float = 0.0  # 0 = once
    ber: float = 0.0  # noise only: bit error rate while the window is open
    drop_byte_rate: float = 0.0  # noise only
    probe: int | None = None  # probe faults only: 0 air, 1 product
    lane: int | None = None  # lane faults only
    grams: float = 0.0  # item_taken, restock: how much leaves or arrives
    drift_g_per_h: float = 0.0  # lane_drift: how fast the cell creeps while the window is open
    ramp_s: float = 0.0  # slow faults only: from nothing to `severity` over this long
    severity: float = 1.0  # slow faults only: how bad it gets, 0 < severity <= 1

    def __post_init__(self) -> None:
        if self.at_s < 0:
            raise ValueError("at_s: must be >= 0")
        if self.fault in SLOW_FAULTS:
            if self.for_s or self.every_s:
                raise ValueError(f"for_s: {self.fault} develops and stays: no for_s, every_s")
            if self.ramp_s <= 0:
                raise ValueError(f"ramp_s: {self.fault} needs ramp_s > 0 (how long it develops)")
            if not 0 < self.severity <= 1:
                raise ValueError("severity: must be in (0, 1]")
        elif self.ramp_s or self.severity != 1.0:
            raise ValueError("ramp_s: only slow faults take ramp_s and severity")
        elif self.instant:
            if self.for_s:
                raise ValueError(f"for_s: {self.fault} happens at an instant: no for_s")
        elif self.for_s <= 0:
            raise ValueError("for_s: must be > 0")
        if not self.slow and (self.every_s < 0 or (self.every_s and self.every_s <= self.for_s)):
            raise ValueError("every_s: must be longer than for_s (or 0 = once)")
        if self.fault in PROBE_FAULTS:
            if self.probe is None or not 0 <= self.probe < PROBE_COUNT:
                raise ValueError("probe: a probe fault names its probe: 0 (air) or 1 (product)")
        elif self.probe is not None:
            raise ValueError("probe: only probe faults take a probe")
        if self.fault in LANE_FAULTS:
            if self.lane is None or not 0 <= self.lane < MAX_LANES:
                raise ValueError(f"lane: a lane fault names its lane: 0..{MAX_LANES - 1}")
        elif self.lane is not None:
            raise ValueError("lane: only lane faults take a lane")
        if (self.fault in ("item_taken", "restock")) != (self.grams > 0):
            raise ValueError("grams: item_taken and restock (only) take grams > 0")
        if (self.fault == "lane_drift") != (self.drift_g_per_h != 0):
            raise ValueError("drift_g_per_h: lane_drift (only) takes a non-zero drift_g_per_h")
        _check_rate("ber", self.ber)
        _check_rate("drop_byte_rate", self.drop_byte_rate)
        if self.fault != "noise" and (self.ber or self.drop_byte_rate):
            raise ValueError("ber: only a noise fault takes ber and drop_byte_rate")
        if self.fault == "noise" and not (self.ber or self.drop_byte_rate):
            raise ValueError("ber: a noise fault needs ber or drop_byte_rate > 0")

    @property
    def instant(self) -> bool:
        return self.fault in INSTANT_FAULTS

    @property
    def slow(self) -> bool:
        return self.fault in SLOW_FAULTS

    def level(self, t_s: float) -> float:
        """A slow fault's severity at `t_s`: 0 before at_s, growing to `severity` at
        at_s + ramp_s; 1 for any other fault while its window is open."""
        if not self.slow:
            return 1.0 if self.active(t_s) else 0.0
        return self.severity * min(1.0, max(0.0, (t_s - self.at_s) / self.ramp_s))

    def active(self, t_s: float) -> bool:
        """Whether the window is open at simulated time `t_s` (never, for an instant)."""
        since = t_s - self.at_s
        if since < 0:
            return False
        if self.slow:
            return True
        if self.every_s:
            since %= self.every_s
        return since < self.for_s


@dataclass(frozen=True)
class FridgeSpec:
    id: str
    set_point_c: float = 3.0
    sample_interval_s: float = 10.0
    heartbeat_interval_s: float = 10.0
    ambient_c: float = 28.0
    door_openings_per_hour: float = 6.0
    door_open_s: float = 20.0
    door_night_factor: float = 1.0  # door rate × this from 22:00 to 07:00
    door_weekend_factor: float = 1.0  # × this on days 5 and 6 of each week (0 = a Monday)
    defrost_every_h: float = 6.0
    defrost_minutes: float = 25.0
    defrost_heater: bool = False
    min_off_s: float = 240.0
    initial_air_c: float | None = None
    initial_product_c: float | None = None
    line_noise_ber: float = 0.0
    drop_byte_rate: float = 0.0
    controller: ControllerKind = "python"
    lanes: tuple[float, ...] = ()  # grams on each load-cell lane at the start
    lock: bool = False
    # An evaporator (defrost termination) probe fitted, reported as probe 2: a defrost then
    # ends when the coil reaches defrost_end_c, and on its timer (defrost_minutes) only if
    # it does not (ice, a weak heater). Without one every defrost ends on its timer.
    evaporator_probe: bool = False
    defrost_end_c: float = 8.0
    faults: tuple[FaultSpec, ...] = ()

    def __post_init__(self) -> None:
        _check_id(self.id)
        _check_rate("line_noise_ber", self.line_noise_ber)
        _check_rate("drop_byte_rate", self.drop_byte_rate)
        if not -30 <= self.set_point_c <= 20:
            raise ValueError("set_point_c: must be within -30..20")
        if self.sample_interval_s < 1:
            raise ValueError("sample_interval_s: must be >= 1")
        if self.heartbeat_interval_s < 1:
            raise ValueError("heartbeat_interval_s: must be >= 1")
        if self.door_openings_per_hour < 0:
            raise ValueError("door_openings_per_hour: must be >= 0")
        if not (0 <= self.door_night_factor <= 10 and 0 <= self.door_weekend_factor <= 10):
            raise ValueError("door_night_factor: door factors must be within 0..10")
        if self.door_open_s <= 0:
            raise ValueError("door_open_s: must be > 0")
        if self.defrost_every_h < 0:
            raise ValueError("defrost_every_h: must be >= 0 (0 = never)")
        if self.defrost_minutes < 0:
            raise ValueError("defrost_minutes: must be >= 0")
        if self.defrost_every_h and self.defrost_minutes >= self.defrost_every_h * 60:
            raise ValueError("defrost_minutes: must be shorter than defrost_every_h")
        if self.min_off_s < 0:
            raise ValueError("min_off_s: must be >= 0")
        if not -10 <= self.defrost_end_c <= 30:
            raise ValueError("defrost_end_c: must be within -10..30")
        if len(self.lanes) > MAX_LANES:
            raise ValueError(f"lanes: at most {MAX_LANES} (one HX711 channel each)")
        if any(g < 0 for g in self.lanes):
            raise ValueError("lanes: grams must be >= 0")
        for f in self.faults:
            if f.lane is not None and f.lane >= len(self.lanes):
                raise ValueError(f"faults: {f.fault} names lane {f.lane}, but lanes has "
                                 f"{len(self.lanes)}")
            # The Python reference controller reports every reading as ok: refuse rather
            # than fake a probe fault.
            if f.fault == "probe_intermittent" and self.controller != "python":
                raise ValueError("faults: probe_intermittent runs with controller = \"python\"")
            if f.fault in PROBE_FAULTS - {"probe_intermittent"} and self.controller == "python":
                raise ValueError(
                    f"faults: {f.fault} needs controller = \"firmware\" or \"micropython\" "
                    "(the Python reference controller does not classify probe readings)"
                )

    @property
    def air_start_c(self) -> float:
        return self.set_point_c if self.initial_air_c is None else self.initial_air_c

    @property
    def product_start_c(self) -> float:
        return self.set_point_c if self.initial_product_c is None else self.initial_product_c


_SCAN_LINE = re.compile(r"^[\x20-\x7e]{1,512}$")


@dataclass(frozen=True)
class ScanSpec:
    """A scripted scan: `line` (without CR/LF) sent at simulated time `at_s`."""

    at_s: float
    line: str

    def __post_init__(self) -> None:
        if self.at_s < 0:
            raise ValueError("at_s: must be >= 0")
        # Printable ASCII only: a CR or LF inside would split it into two scans.
        if not _SCAN_LINE.match(self.line):
            raise ValueError("line: 1-512 printable ASCII characters (no CR/LF)")


@dataclass(frozen=True)
class ScannerSpec:
    id: str
    scans_per_hour: float = 30.0
    scans: tuple[ScanSpec, ...] = ()

    def __post_init__(self) -> None:
        _check_id(self.id)
        if self.scans_per_hour < 0:
            raise ValueError("scans_per_hour: must be >= 0")


@dataclass(frozen=True)
class Scenario:
    sim: SimSettings
    fridges: tuple[FridgeSpec, ...] = ()
    scanners: tuple[ScannerSpec, ...] = ()

    def __post_init__(self) -> None:
        ids = [f.id for f in self.fridges] + [s.id for s in self.scanners]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"fridges: device id {dupes[0]!r} used more than once")
        if not ids:
            raise ValueError("fridges: a scenario needs at least one fridge or scanner")


def load_scenario(path: Path | str) -> Scenario:
    """Read a scenario TOML file; raises `xiaodian.config.ConfigError` naming the key."""
    return load_config(path, Scenario)
