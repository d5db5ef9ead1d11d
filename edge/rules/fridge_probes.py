"""The probe rules of a fridge: faulty probes (disconnected, 85 °C, out of range, jumps,
flat lines) and air and product probes that disagree."""

from __future__ import annotations

import math

from edge.rules.alerts import DataValue
from edge.rules.fridge_base import (
    DISCONNECTED_VALUE,
    HOUR,
    MIN,
    POWER_ON_VALUE,
    FridgeBase,
    _Probe,
)


class ProbeRules(FridgeBase):
    """Whether a probe's reading may be used, and the probe fault alerts."""

    # --- probes -----------------------------------------------------------------------------

    def _classify(
        self, probe: _Probe, t: float, value: float | None, status: str | None, jumps_ok: bool
    ) -> tuple[float | None, bool]:
        """(value, bad): value None and bad False = not fitted; bad readings set the kind."""
        c = self.cfg
        if status is None and value is None:
            return None, False
        status = status or "ok"
        if (
            status not in ("ok", "suspect")
            or value is None
            or (math.isfinite(value) and value <= DISCONNECTED_VALUE)
        ):
            why: dict[str, DataValue] = {}
            if value is not None and value <= DISCONNECTED_VALUE:
                why = {"reads_c": round(value, 2)}
            elif status not in ("ok", "suspect"):
                why = {"status": status}
            return self._bad(probe, "disconnected", why)
        if status == "suspect" or value == POWER_ON_VALUE:
            finite = value if math.isfinite(value) else None
            return self._bad(probe, "power_on_value", {}, finite)
        if not math.isfinite(value) or not c.probe_min_c <= value <= c.probe_max_c:
            shown = f"{value:.1f} °C" if math.isfinite(value) else str(value)
            limits: dict[str, DataValue] = {
                "reads": shown, "min_c": c.probe_min_c, "max_c": c.probe_max_c,
            }
            finite = value if math.isfinite(value) else None
            return self._bad(probe, "out_of_range", limits, finite)
        if probe.last_good is not None and not jumps_ok:
            last_t, last_v = probe.last_good
            allowed = c.probe_jump_c_per_min * max(1.0, (t - last_t) / MIN)
            if abs(value - last_v) > allowed:
                # Judged against the last good value, so a lone spike is dropped and the
                # probe is only at fault if it stays away.
                return self._bad(probe, "jump", {"from_c": round(last_v, 2)}, value)
        return value, False

    @staticmethod
    def _bad(
        probe: _Probe, kind: str, detail: dict[str, DataValue], value: float | None = None
    ) -> tuple[float | None, bool]:
        """A bad reading: its kind and the numbers that say why (for the alert's data)."""
        probe.bad_kind, probe.bad_detail = kind, detail
        return value, True

    def _flat(self, probe: _Probe, t: float, value: float, other: float) -> bool:
        c = self.cfg
        if probe.flat_ref is None or abs(value - probe.flat_ref) > c.flatline_band_c:
            probe.flat_ref, probe.flat_since = value, t
            probe.other_min = probe.other_max = other
            return False
        probe.other_min = min(probe.other_min, other)
        probe.other_max = max(probe.other_max, other)
        moved = probe.other_max - probe.other_min
        assert probe.flat_since is not None
        if t - probe.flat_since >= c.flatline_h * HOUR and moved >= c.flatline_other_moves_c:
            probe.bad_kind = "flatline"
            probe.bad_detail = {
                "flat_s": round(t - probe.flat_since, 1),
                "other": "product" if probe.name == "air" else "air",
                "moved_c": round(moved, 2),
                "flat_c": round(value, 2),
            }
            return True
        return False

    def _probe_step(
        self, probe: _Probe, t: float, value: float | None, bad: bool, not_fitted: bool
    ) -> float | None:
        """Fault raise/clear for one probe; returns the value if it may be used."""
        c = self.cfg
        key = f"probe_{probe.name}"
        active = self.active.get(key)
        if not_fitted and value is None and not bad:
            return None
        if bad:
            probe.clean_since = None
            if probe.bad_since is None:
                probe.bad_since = t
            if active is None and t - probe.bad_since >= c.probe_fault_for_s:
                data: dict[str, DataValue] = {
                    "reason": "probe_fault", "probe": probe.name, "fault": probe.bad_kind,
                    **probe.bad_detail,
                }
                if value is not None:
                    data["value_c"] = round(value, 2)
                if probe.bad_kind == "flatline":
                    data["value_c"] = data.pop("flat_c")
                self._raise(key, "probe_fault", probe.bad_since, t, "critical", None, data)
                if probe.bad_kind == "jump" and value is not None:
                    probe.last_good = (t, value)  # the new level is the reference from now on
            return None
        probe.bad_since = None
        assert value is not None
        probe.last_good = (t, value)
        if active is None:
            return value
        if probe.clean_since is None:
            probe.clean_since = t
        if t - probe.clean_since >= c.probe_clear_min * MIN:
            end: dict[str, DataValue] = {
                "end": "probe_ok", "end_value_c": round(value, 2),
                "end_for_s": round(t - probe.clean_since, 1),
            }
            self._clear(key, t, end)
            return value
        return None  # not trusted until it has read normally for a while

    def _disagreement(self, t: float, air: float | None, product: float | None) -> None:
        c = self.cfg
        if air is None or product is None:
            return
        gap = abs(air - product)
        self.disagree.update(gap > c.disagree_c, t)
        if "probe_disagree" not in self.active:
            since = self.disagree.since
            if since is not None and t - since >= c.disagree_for_min * MIN:
                data: dict[str, DataValue] = {
                    "reason": "probe_disagree", "air_c": round(air, 2),
                    "product_c": round(product, 2), "gap_c": round(gap, 2),
                    "for_s": round(t - since, 1),
                }
                self._raise("probe_disagree", "probe_disagree", since, t, "warning", None, data)
        elif self._cleared_for("probe_disagree", gap < c.disagree_c - c.clear_hysteresis_c, t):
            end: dict[str, DataValue] = {"end": "probes_agree", "end_gap_c": round(gap, 2)}
            self._clear("probe_disagree", t, end)
