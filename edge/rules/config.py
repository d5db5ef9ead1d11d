"""Cold-chain rule settings: the defaults (docs/design.md, "Cold chain"), overridable per fridge.

`RulesConfig.defaults` holds every threshold; a `[[fridges]]` entry names a fridge and
changes only the keys it sets (the others come from `[defaults]`, not from the built-in
values), so a store can raise one drinks fridge's warm limit without restating the rest.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from xiaodian.wire import ids


@dataclass(frozen=True)
class Thresholds:
    """Every number a rule uses, for one fridge. Units are in the names."""

    set_point_c: float = 3.0
    # Product-like temperature from the air probe when there is no buffered probe.
    product_tau_min: float = 20.0
    # Shared by the rules that clear on a falling/rising value: how long the value must stay
    # back on the safe side, and how far past the threshold (warm has its own:
    # docs/design.md, "Cold chain").
    clear_for_min: float = 10.0
    clear_hysteresis_c: float = 1.0

    warm_above_c: float = 5.0
    warm_for_min: float = 30.0
    warm_clear_below_c: float = 4.0

    hot_above_c: float = 8.0
    hot_for_min: float = 15.0
    hot_cumulative_above_c: float = 5.0
    hot_cumulative_min: float = 240.0
    hot_cumulative_window_h: float = 24.0

    hard_product_above_c: float = 12.0
    hard_air_above_c: float = 15.0
    hard_air_for_min: float = 10.0

    freeze_warning_below_c: float = -0.5
    freeze_warning_for_min: float = 60.0
    freeze_critical_below_c: float = -2.0
    freeze_critical_for_min: float = 30.0

    door_buzzer_min: float = 3.0
    door_owner_min: float = 5.0
    door_escalate_min: float = 15.0

    probe_min_c: float = -40.0
    probe_max_c: float = 60.0
    probe_jump_c_per_min: float = 3.0
    # A bad reading must persist this long before it is a fault: one CRC error on a noisy
    # one-wire bus, or a lone 85.0 at power-up, is discarded rather than reported.
    probe_fault_for_s: float = 60.0
    probe_clear_min: float = 10.0
    flatline_h: float = 4.0
    flatline_band_c: float = 0.05
    flatline_other_moves_c: float = 2.0
    disagree_c: float = 8.0
    disagree_for_min: float = 120.0

    mains_escalate_min: float = 30.0
    link_lost_min: float = 10.0

    defrost_recovery_min: float = 60.0
    defrost_suppress_cap_min: float = 90.0
    defrost_overrun_min: float = 45.0

    drift_above_set_point_c: float = 1.5
    drift_window_h: float = 24.0
    drift_min_coverage: float = 0.75
    drift_hysteresis_c: float = 0.5
    cycle_factor: float = 2.0
    # 0 = learn the usual compressor period (median of recent on-to-on intervals).
    cycle_usual_min: float = 0.0
    cycle_learn_count: int = 3
    # Door load is not a fault: the no-cycling clock stops while the door is open and for
    # this long after it closes, and only cycles begun this settled are learned as usual.
    cycle_door_settle_min: float = 20.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{f.name}: must be a finite number")
            timed = f.name.endswith(("_min", "_h", "_s")) and f.name != "cycle_usual_min"
            if timed and value <= 0:
                raise ValueError(f"{f.name}: must be greater than 0")
        _check(self.cycle_usual_min >= 0, "cycle_usual_min", "must be 0 (learn) or more")
        _check(self.cycle_learn_count >= 1, "cycle_learn_count", "must be at least 1")
        _check(self.cycle_factor > 1, "cycle_factor", "must be greater than 1")
        _check(self.clear_hysteresis_c > 0, "clear_hysteresis_c", "must be greater than 0")
        _check(self.drift_hysteresis_c >= 0, "drift_hysteresis_c", "must be 0 or more")
        _check(0 < self.drift_min_coverage <= 1, "drift_min_coverage", "must be in (0, 1]")
        _check(
            self.warm_clear_below_c <= self.warm_above_c,
            "warm_clear_below_c",
            "must not be above warm_above_c",
        )
        _check(
            self.freeze_critical_below_c <= self.freeze_warning_below_c,
            "freeze_critical_below_c",
            "must not be above freeze_warning_below_c",
        )
        _check(self.probe_min_c < self.probe_max_c, "probe_min_c", "must be below probe_max_c")
        _check(
            self.door_buzzer_min <= self.door_owner_min <= self.door_escalate_min,
            "door_owner_min",
            "door_buzzer_min <= door_owner_min <= door_escalate_min",
        )
        _check(
            self.hot_cumulative_min <= self.hot_cumulative_window_h * 60,
            "hot_cumulative_min",
            "must fit in hot_cumulative_window_h",
        )
        _check(self.flatline_band_c > 0, "flatline_band_c", "must be greater than 0")
        _check(self.disagree_c > self.clear_hysteresis_c, "disagree_c", "must exceed hysteresis")


def _check(ok: bool, name: str, problem: str) -> None:
    if not ok:
        raise ValueError(f"{name}: {problem}")


@dataclass(frozen=True)
class FridgeOverride:
    """One fridge's changes to `[defaults]`; a key left out keeps the default.

    The field list mirrors `Thresholds` (a test keeps them in step)."""

    id: str
    set_point_c: float | None = None
    product_tau_min: float | None = None
    clear_for_min: float | None = None
    clear_hysteresis_c: float | None = None
    warm_above_c: float | None = None
    warm_for_min: float | None = None
    warm_clear_below_c: float | None = None
    hot_above_c: float | None = None
    hot_for_min: float | None = None
    hot_cumulative_above_c: float | None = None
    hot_cumulative_min: float | None = None
    hot_cumulative_window_h: float | None = None
    hard_product_above_c: float | None = None
    hard_air_above_c: float | None = None
    hard_air_for_min: float | None = None
    freeze_warning_below_c: float | None = None
    freeze_warning_for_min: float | None = None
    freeze_critical_below_c: float | None = None
    freeze_critical_for_min: float | None = None
    door_buzzer_min: float | None = None
    door_owner_min: float | None = None
    door_escalate_min: float | None = None
    probe_min_c: float | None = None
    probe_max_c: float | None = None
    probe_jump_c_per_min: float | None = None
    probe_fault_for_s: float | None = None
    probe_clear_min: float | None = None
    flatline_h: float | None = None
    flatline_band_c: float | None = None
    flatline_other_moves_c: float | None = None
    disagree_c: float | None = None
    disagree_for_min: float | None = None
    mains_escalate_min: float | None = None
    link_lost_min: float | None = None
    defrost_recovery_min: float | None = None
    defrost_suppress_cap_min: float | None = None
    defrost_overrun_min: float | None = None
    drift_above_set_point_c: float | None = None
    drift_window_h: float | None = None
    drift_min_coverage: float | None = None
    drift_hysteresis_c: float | None = None
    cycle_factor: float | None = None
    cycle_usual_min: float | None = None
    cycle_learn_count: int | None = None
    cycle_door_settle_min: float | None = None

    def __post_init__(self) -> None:
        _check(ids.is_device_id(self.id), "id",
               "must be a device id: 1-64 of A-Z a-z 0-9 . _ -, first a letter or digit")

    def apply(self, base: Thresholds) -> Thresholds:
        changes = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "id" and getattr(self, f.name) is not None
        }
        return dataclasses.replace(base, **changes)


@dataclass(frozen=True)
class RulesConfig:
    """Rule settings for a store: defaults, per-fridge overrides, and late-data handling."""

    defaults: Thresholds = field(default_factory=Thresholds)
    fridges: tuple[FridgeOverride, ...] = ()
    # Records older than a fridge's newest record are merged and re-evaluated if they are at
    # most this old (relative to that newest record); older ones are counted and dropped.
    reorder_horizon_h: float = 6.0
    # How often (in event time) the engine keeps a copy of a fridge's rule state to
    # re-evaluate from: a late record costs at most this much replay plus what follows it.
    snapshot_every_min: float = 30.0

    def __post_init__(self) -> None:
        _check(self.reorder_horizon_h > 0, "reorder_horizon_h", "must be greater than 0")
        _check(self.snapshot_every_min > 0, "snapshot_every_min", "must be greater than 0")
        seen: set[str] = set()
        for i, override in enumerate(self.fridges):
            _check(override.id not in seen, "fridges", f"fridge {override.id!r} listed twice")
            seen.add(override.id)
            try:
                override.apply(self.defaults)
            except ValueError as exc:
                # Name the entry, so the message points at the right table in the file.
                raise ValueError(f"fridges: [{i}] ({override.id}): {exc}") from None

    def for_fridge(self, fridge: str) -> Thresholds:
        for override in self.fridges:
            if override.id == fridge:
                return override.apply(self.defaults)
        return self.defaults
