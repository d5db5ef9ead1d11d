"""What an alert says, in words a person reads: one renderer for the edge, the cloud and the pages.

An alert change carries a machine reason and its numbers in `data` (contracts.md, "Alert
changes"): `reason` names what went wrong (`hot_cumulative`, `door_open`, `probe_fault`
with `fault` = `jump`, ...), and on a clearing change `end` names how it ended
(`back_below`, `door_closed`, ...). The parameters are plain numbers (°C, seconds), so any
reader can render them in its own language:

    describe(rule, data)      -> Message   what is (or was) wrong
    describe_end(rule, data)  -> Message | None   how it ended, on a cleared alert's data
    rule_name(rule)           -> Message   "Too warm", "Door open", ...

`str(message)` is the English text: the edge builds its `message` field with it, so the
English a log shows and the words a person reads cannot drift apart. Pages and notices call
`xiaodian.i18n.translator(locale).render(message)` (zh-CN first). Data from an older agent
without `reason` still gets a sentence (`"Fridge alert: Too hot"`), never an error: a
reader must not fail on what a store sent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from xiaodian.i18n import N_, Message

__all__ = ["RULES", "celsius", "describe", "describe_end", "duration", "limit", "rule_name"]

RULES: dict[str, str] = {
    "warm": N_("Too warm"),
    "hot": N_("Too hot"),
    "hard_limit": N_("Far too hot"),
    "freeze": N_("Freezing"),
    "door": N_("Door open"),
    "probe_fault": N_("Probe fault"),
    "probe_disagree": N_("Probes disagree"),
    "mains": N_("Mains power lost"),
    "link": N_("Monitoring offline"),
    "defrost_overrun": N_("Defrost too long"),
    "drift": N_("Running warm"),
    "cycling": N_("Compressor not cycling"),
}
_PROBES = {"air": N_("air probe"), "product": N_("product probe")}
_OTHER = {"air": N_("air"), "product": N_("product")}


def rule_name(rule: str) -> Message:
    """The rule as a short title; an unknown rule is shown as its code."""
    known = RULES.get(rule)
    return Message(known) if known is not None else Message(N_("Alert %(rule)s"), {"rule": rule})


# ---------------------------------------------------------------- numbers


def _num(data: Mapping[str, Any], key: str) -> float | None:
    v = data.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def celsius(value: float) -> str:
    """A measured temperature: one decimal ("8.6 °C"; the same in both languages)."""
    return f"{value:.1f} °C"


def limit(value: float) -> str:
    """A configured limit as written ("5 °C", "-0.5 °C")."""
    return f"{value:g} °C"


def duration(seconds: float) -> Message:
    """"45 s", "12 min", "1 h 20 min", "4 h" (whole minutes; seconds under a minute)."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return Message(N_("%(n)s s"), {"n": int(seconds)})
    minutes = int(seconds // 60)
    if minutes < 60:
        return Message(N_("%(n)s min"), {"n": minutes})
    hours, minutes = divmod(minutes, 60)
    if minutes:
        return Message(N_("%(h)s h %(m)s min"), {"h": hours, "m": minutes})
    return Message(N_("%(h)s h"), {"h": hours})


class _Params:
    """Reads `data` for one sentence; a missing number makes the sentence unusable."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.ok = True

    def n(self, key: str) -> float:
        v = _num(self.data, key)
        if v is None:
            self.ok = False
            return 0.0
        return v

    def c(self, key: str) -> str:
        return celsius(self.n(key))

    def lim(self, key: str) -> str:
        return limit(self.n(key))

    def d(self, key: str) -> Message:
        return duration(self.n(key))

    def word(self, key: str, words: Mapping[str, str]) -> Message:
        v = self.data.get(key)
        if not isinstance(v, str) or v not in words:
            self.ok = False
            return Message("?")
        return Message(words[v])


def _fallback(rule: str) -> Message:
    return Message(N_("Fridge alert: %(rule)s"), {"rule": rule_name(rule)})


# ---------------------------------------------------------------- what is wrong


def describe(rule: str, data: Mapping[str, Any], *, strict: bool = False) -> Message:
    """What the alert is about, from its change's `data` (its `reason` and numbers).

    Data it cannot read (an older agent's, a number missing) gives the generic
    "Fridge alert: <rule>"; with `strict` (the edge, which writes the data) a ValueError."""
    p = _Params(data)
    msg = _cause(rule, str(data.get("reason", "")), p)
    if msg is not None and p.ok:
        return msg
    if strict:
        raise ValueError(f"{rule}: alert data without a readable reason: {dict(data)!r}")
    return _fallback(rule)


def _cause(rule: str, reason: str, p: _Params) -> Message | None:
    if reason in ("warm", "hot_sustained"):
        return Message(N_("product %(value)s, above %(limit)s for %(duration)s"),
                       {"value": p.c("value_c"), "limit": p.lim("limit_c"),
                        "duration": p.d("for_s")})
    if reason == "hot_cumulative":
        return Message(N_("product %(value)s; above %(limit)s for %(total)s in the last "
                          "%(window)s"),
                       {"value": p.c("value_c"), "limit": p.lim("limit_c"),
                        "total": p.d("cumulative_s"), "window": p.d("window_s")})
    if reason == "hard_product":
        return Message(N_("product %(value)s, above %(limit)s"),
                       {"value": p.c("value_c"), "limit": p.lim("limit_c")})
    if reason == "hard_air":
        return Message(N_("air %(value)s, above %(limit)s for %(duration)s with the door closed"),
                       {"value": p.c("value_c"), "limit": p.lim("limit_c"),
                        "duration": p.d("for_s")})
    if reason == "freeze":
        return Message(N_("product %(value)s, below %(limit)s for %(duration)s"),
                       {"value": p.c("value_c"), "limit": p.lim("limit_c"),
                        "duration": p.d("for_s")})
    if reason == "drift":
        return Message(N_("%(window)s mean %(mean)s, above set point %(set_point)s + %(above)s"),
                       {"window": p.d("window_s"), "mean": p.c("mean_c"),
                        "set_point": p.lim("set_point_c"), "above": p.lim("above_c")})
    if reason == "probe_fault":
        return _probe_fault(p)
    if reason == "probe_disagree":
        return Message(N_("air %(air)s and product %(product)s differ by %(gap)s for "
                          "%(duration)s"),
                       {"air": p.c("air_c"), "product": p.c("product_c"),
                        "gap": p.c("gap_c"), "duration": p.d("for_s")})
    if reason == "link_lost":
        return Message(N_("monitoring offline: no data for %(duration)s"),
                       {"duration": p.d("for_s")})
    if reason == "door_open":
        if p.data.get("buzzer") is True:
            return Message(N_("door open for %(duration)s (buzzer at the terminal)"),
                           {"duration": p.d("for_s")})
        return Message(N_("door open for %(duration)s"), {"duration": p.d("for_s")})
    if reason == "mains_lost":
        if p.n("for_s") <= 0:
            return Message(N_("mains power lost"))
        return Message(N_("mains power lost for %(duration)s"), {"duration": p.d("for_s")})
    if reason == "defrost_overrun":
        return Message(N_("defrost running for %(duration)s, limit %(limit)s"),
                       {"duration": p.d("for_s"), "limit": p.d("limit_s")})
    if reason == "no_cycling":
        return _no_cycling(p)
    return None


def _probe_fault(p: _Params) -> Message | None:
    probe = p.word("probe", _PROBES)
    fault = p.data.get("fault")
    if fault == "disconnected":
        if isinstance(p.data.get("status"), str):
            return Message(N_("%(probe)s disconnected (status %(status)s)"),
                           {"probe": probe, "status": p.data["status"]})
        if _num(p.data, "reads_c") is not None:
            return Message(N_("%(probe)s disconnected (reads %(value)s)"),
                           {"probe": probe, "value": p.c("reads_c")})
        return Message(N_("%(probe)s disconnected (no reading)"), {"probe": probe})
    if fault == "power_on_value":
        return Message(N_("%(probe)s stuck at 85.0 °C"), {"probe": probe})
    if fault == "out_of_range":
        reads = p.data.get("reads")
        if not isinstance(reads, str):
            return None
        return Message(N_("%(probe)s reads %(value)s, outside %(min)s…%(max)s"),
                       {"probe": probe, "value": reads, "min": p.lim("min_c"),
                        "max": p.lim("max_c")})
    if fault == "jump":
        return Message(N_("%(probe)s jumped from %(from)s to %(to)s"),
                       {"probe": probe, "from": p.c("from_c"), "to": p.c("value_c")})
    if fault == "flatline":
        return Message(N_("%(probe)s flat at %(value)s for %(duration)s while %(other)s moved "
                          "%(moved)s"),
                       {"probe": probe, "value": p.c("value_c"), "duration": p.d("flat_s"),
                        "other": p.word("other", _OTHER), "moved": p.c("moved_c")})
    return None


def _no_cycling(p: _Params) -> Message:
    on = p.data.get("compressor_on") is True
    after, need = p.n("for_s"), p.n("settled_s")
    params = {"duration": duration(after), "usual": p.d("usual_cycle_s")}
    if after - need >= 1.0:
        params["settled"] = duration(need)
        return Message(N_("compressor on for %(duration)s (%(settled)s of it door shut and "
                          "settled) without cycling, usual cycle %(usual)s") if on else
                       N_("compressor off for %(duration)s (%(settled)s of it door shut and "
                          "settled) without cycling, usual cycle %(usual)s"), params)
    return Message(N_("compressor on for %(duration)s without cycling, usual cycle %(usual)s")
                   if on else
                   N_("compressor off for %(duration)s without cycling, usual cycle %(usual)s"),
                   params)


# ---------------------------------------------------------------- how it ended


def describe_end(rule: str, data: Mapping[str, Any], *, strict: bool = False) -> Message | None:
    """How a cleared alert ended (its `end` and numbers), None if the data does not say
    (with `strict`, a ValueError)."""
    end = data.get("end")
    p = _Params(data)
    msg = _end(rule, end, p, data, strict) if isinstance(end, str) else None
    if msg is None or not p.ok:
        if strict:
            raise ValueError(f"{rule}: clearing data without a readable end: {dict(data)!r}")
        return None
    if _num(data, "active_s") is not None:
        if _num(data, "peak_c") is not None:
            return Message(N_("%(end)s; was active for %(active)s, peak %(peak)s"),
                           {"end": msg, "active": p.d("active_s"), "peak": p.c("peak_c")})
        return Message(N_("%(end)s; was active for %(active)s"),
                       {"end": msg, "active": p.d("active_s")})
    return msg


def _end(rule: str, end: str, p: _Params, data: Mapping[str, Any],
         strict: bool) -> Message | None:
    back = {"value": p.c("end_value_c"), "limit": p.lim("end_limit_c"),
            "duration": p.d("end_for_s")} if end in ("back_below", "back_above") else {}
    if end == "back_below":
        return Message(N_("product %(value)s, below %(limit)s for %(duration)s"), back)
    if end == "back_above":
        return Message(N_("product %(value)s, above %(limit)s for %(duration)s"), back)
    if end == "hard_back":
        if data.get("end_probe") == "air":
            return Message(N_("air %(value)s, back under the hard limit"),
                           {"value": p.c("end_value_c")})
        return Message(N_("product %(value)s, back under the hard limit"),
                       {"value": p.c("end_value_c")})
    if end == "probe_ok":
        return Message(N_("%(probe)s reads normally again (%(value)s for %(duration)s)"),
                       {"probe": p.word("probe", _PROBES), "value": p.c("end_value_c"),
                        "duration": p.d("end_for_s")})
    if end == "probes_agree":
        return Message(N_("air and product agree again (%(gap)s apart)"),
                       {"gap": p.c("end_gap_c")})
    if end == "drift_back":
        return Message(N_("%(window)s mean back to %(mean)s"),
                       {"window": p.d("window_s"), "mean": p.c("end_mean_c")})
    timers = {
        "door_closed": N_("door closed after %(duration)s"),
        "mains_restored": N_("mains power restored after %(duration)s"),
        "defrost_ended": N_("defrost ended after %(duration)s"),
        "cycling_again": N_("compressor cycling again after %(duration)s"),
    }
    if end in timers:
        return Message(timers[end], {"duration": p.d("end_for_s")})
    if end == "link_back":
        late = int(p.n("late_records"))
        if late:
            return Message(N_("monitoring back after %(duration)s; %(n)s late records "
                              "re-evaluated"), {"duration": p.d("end_for_s"), "n": late})
        return Message(N_("monitoring back after %(duration)s"), {"duration": p.d("end_for_s")})
    if end == "withdrawn":
        return Message(N_("%(cause)s: withdrawn, late records show otherwise"),
                       {"cause": describe(rule, data, strict=strict)})
    return None
