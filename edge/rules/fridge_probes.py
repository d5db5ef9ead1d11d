"""The probe rules of a fridge: faulty probes (disconnected, 85 °C, out of range, jumps,
flat lines) and air and product probes that disagree."""

from __future__ import annotations

import math

from edge.rules.alerts import (
    DataValue,
    fmt_c,
    fmt_duration,
    fmt_limit,
)
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
            why = f"status {status}" if status not in ("ok", "suspect") else "no reading"
            if value is not None and value <= DISCONNECTED_VALUE:
                why = f"reads {fmt_c(value)}"
            return self._bad(probe, "disconnected", f"disconnected ({why})")
        if status == "suspect" or value == POWER_ON_VALUE:
            finite = value if math.isfinite(value) else None
            return self._bad(probe, "power_on_value", "stuck at 85.0 °C", finite)
        if not math.isfinite(value) or not c.probe_min_c <= value <= c.probe_max_c:
            shown = fmt_c(value) if math.isfinite(value) else str(value)
            limits = f"{fmt_limit(c.probe_min_c)}…{fmt_limit(c.probe_max_c)}"
            finite = value if math.isfinite(value) else None
            return self._bad(probe, "out_of_range", f"reads {shown}, outside {limits}", finite)
        if probe.last_good is not None and not jumps_ok:
            last_t, last_v = probe.last_good
            allowed = c.probe_jump_c_per_min * max(1.0, (t - last_t) / MIN)
            if abs(value - last_v) > allowed:
                # Judged against the last good value, so a lone spike is dropped and the
                # probe is only at fault if it stays away.
                detail = f"jumped from {fmt_c(last_v)} to {fmt_c(value)}"
                return self._bad(probe, "jump", detail, value)
        return value, False

    @staticmethod
    def _bad(
        probe: _Probe, kind: str, detail: str, value: float | None = None
    ) -> tuple[float | None, bool]:
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
            other_name = "product" if probe.name == "air" else "air"
            probe.bad_kind = "flatline"
            probe.bad_detail = (
                f"flat at {fmt_c(value)} for {fmt_duration(t - probe.flat_since)} "
                f"while {other_name} moved {moved:.1f} °C"
            )
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
                message = f"{probe.name} probe {probe.bad_detail}"
                data: dict[str, DataValue] = {"probe": probe.name, "fault": probe.bad_kind}
                if value is not None:
                    data["value_c"] = round(value, 2)
                self._raise(key, "probe_fault", probe.bad_since, t, "critical", None, message, data)
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
            message = (
                f"{probe.name} probe reads normally again "
                f"({fmt_c(value)} for {fmt_duration(t - probe.clean_since)})"
            )
            self._clear(key, t, message)
            return value
        return None  # not trusted until it has read normally for a while

    def _disagreement(self, t: float, air: float | None, product: float | None) -> None:
        c = self.cfg
        if air is None or product is None:
            return
        gap = abs(air - product)
        self.disagree.update(gap > c.disagree_c, t)
        data: dict[str, DataValue] = {"air_c": round(air, 2), "product_c": round(product, 2)}
        if "probe_disagree" not in self.active:
            since = self.disagree.since
            if since is not None and t - since >= c.disagree_for_min * MIN:
                message = (
                    f"air {fmt_c(air)} and product {fmt_c(product)} differ by {gap:.1f} °C "
                    f"for {fmt_duration(t - since)}"
                )
                self._raise(
                    "probe_disagree", "probe_disagree", since, t, "warning", None, message, data
                )
        elif self._cleared_for("probe_disagree", gap < c.disagree_c - c.clear_hysteresis_c, t):
            self._clear("probe_disagree", t, f"air and product agree again ({gap:.1f} °C apart)")
