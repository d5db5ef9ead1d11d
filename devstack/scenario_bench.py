"""The scenario bench's core: every cold-chain scenario through simulator → controller →
wire → edge interpret → Alerting/RuleEngine, in-process on an accelerated clock, judged
against devstack/scenario_expectations.toml. The CLI is `python -m bench.scenarios`; the
tests run the same core (tests/e2e/test_scenario_bench.py).

Each fridge is stepped in 1 s steps; its frames go through a `codec.FrameDecoder` (the
bytes the wire carries), records are RECEIPTed back as the agent does, and fed to
`edge.alerting.Alerting` with a synthetic wall clock (start + simulated seconds). What must
(or must not) alert comes from the expectations file; when each condition became true is
computed from the controller's own records (ground truth, not the wire path). A verdict
fails if a must-alert expectation misses its budget or an unexpected alert is raised
(scenarios marked `known_issue` are reported but expected to fail).

One piece on purpose, though over 600 lines: the stepping loop, the ground-truth timing and
the verdicts read the same per-fridge state every simulated second; split, they would pass
that state back and forth every step of a run that must stay fast.
"""

from __future__ import annotations

import itertools
import os
import re
import statistics
import tomllib
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge import interpret
from edge.alerting import Alerting
from edge.rules import AlertChange, RuleEngine, Thresholds
from edge.store import NewEvent, NewReading
from firmware_bridge import codec
from hw_sim.fridge import SimFridge
from hw_sim.scenario import FridgeSpec, load_scenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIO_DIR = ROOT / "hw_sim" / "scenarios" / "cold_chain"
EXTRA_SCENARIOS = (ROOT / "hw_sim" / "scenarios" / "demo.toml",)
EXPECTATIONS = Path(__file__).with_name("scenario_expectations.toml")
START_WALL = 1_748_736_000.0  # 2025-06-01T00:00:00Z: the synthetic wall clock at sim time 0
STEP_S = 1.0
TICK_EVERY_S = 1.0
DEFAULT_HOURS = 8.0
_HOURS_HINT = re.compile(r"\((\d+(?:\.\d+)?) h simulated")
_SEVERITY_RANK = {"warning": 0, "critical": 1}


# ---------------------------------------------------------------- expectations


@dataclass(frozen=True)
class Expect:
    """One alert that must be raised: `rule` at `severity` (and `audience`, if given), once
    `condition` (a predicate on ground truth) has held for `hold_s`."""

    rule: str
    severity: str
    condition: str  # product_above | product_below | door_open | mains_lost | defrost_active
    #                 | probe_bad | probe_flat | link_silent | compressor_still
    threshold: float = 0.0
    hold_s: float = 0.0
    probe: int = 1
    audience: str | None = None
    fridge: str | None = None
    defrost_suppressed: bool = False  # warm: held back during defrost + recovery


@dataclass(frozen=True)
class ScenarioExpect:
    name: str
    path: Path
    expects: tuple[Expect, ...] = ()
    allow: tuple[str, ...] = ()  # rules that may alert without failing (named reason in TOML)
    ignore_before_h: float = 0.0  # warm-up: alerts raised before this are not judged
    hours: float | None = None
    known_issue: str = ""
    note: str = ""


def _expect(raw: dict[str, Any], thresholds: Thresholds) -> Expect:
    kind = str(raw["condition"])
    # Thresholds and holds default to the engine's configured defaults (docs/design.md).
    defaults: dict[str, tuple[float, float]] = {
        "warm": (thresholds.warm_above_c, thresholds.warm_for_min * 60),
        "hot": (thresholds.hot_above_c, thresholds.hot_for_min * 60),
        "hard_limit": (thresholds.hard_product_above_c, 0.0),
        "defrost_overrun": (0.0, thresholds.defrost_overrun_min * 60),
        "link": (0.0, thresholds.link_lost_min * 60),
        "probe_fault": (0.0, thresholds.probe_fault_for_s),
    }
    thr, hold = defaults.get(str(raw["rule"]), (0.0, 0.0))
    if kind == "cumulative_above":
        thr, hold = thresholds.hot_cumulative_above_c, thresholds.hot_cumulative_min * 60
    if kind == "mean_above":  # hold: the engine averages in 10-min buckets
        thr, hold = thresholds.set_point_c + thresholds.drift_above_set_point_c, 600.0
    if raw["rule"] == "freeze":
        crit = raw["severity"] == "critical"
        thr = thresholds.freeze_critical_below_c if crit else thresholds.freeze_warning_below_c
        hold = thresholds.freeze_critical_for_min if crit else thresholds.freeze_warning_for_min
        hold *= 60
    if raw["rule"] == "door":
        level = {"terminal": thresholds.door_buzzer_min, "owner": thresholds.door_owner_min}
        hold = 60 * (
            thresholds.door_escalate_min
            if raw["severity"] == "critical"
            else level[str(raw.get("audience", "terminal"))]
        )
    if raw["rule"] == "mains" and raw["severity"] == "critical":
        hold = thresholds.mains_escalate_min * 60
    return Expect(
        rule=str(raw["rule"]),
        severity=str(raw["severity"]),
        condition=kind,
        threshold=float(raw.get("threshold", thr)),
        hold_s=float(raw.get("hold_min", hold / 60)) * 60,
        probe=int(raw.get("probe", 1)),
        audience=raw.get("audience"),
        fridge=raw.get("fridge"),
        defrost_suppressed=bool(raw.get("defrost_suppressed", raw["rule"] == "warm")),
    )


def load_expectations(path: Path = EXPECTATIONS) -> dict[str, dict[str, Any]]:
    with path.open("rb") as f:
        data = tomllib.load(f)
    return {str(k): v for k, v in data.get("scenarios", {}).items()}


def scenario_paths() -> list[Path]:
    return sorted(SCENARIO_DIR.glob("*.toml")) + [p for p in EXTRA_SCENARIOS if p.exists()]


def scenario_expect(path: Path, table: dict[str, dict[str, Any]]) -> ScenarioExpect:
    name = path.stem
    raw = table.get(name)
    if raw is None:  # a new scenario nobody has described yet: it must not alert
        raw = {"known_issue": "no expectations in devstack/scenario_expectations.toml yet"}
    t = Thresholds()
    hours = raw.get("hours")
    if hours is None:
        hint = _HOURS_HINT.search(path.read_text(encoding="utf-8"))
        hours = float(hint.group(1)) if hint else None
    return ScenarioExpect(
        name=name,
        path=path,
        expects=tuple(_expect(e, t) for e in raw.get("expect", [])),
        allow=tuple(str(r) for r in raw.get("allow", [])),
        ignore_before_h=float(raw.get("ignore_before_h", 0.0)),
        hours=None if hours is None else float(hours),
        known_issue=str(raw.get("known_issue", "")),
        note=str(raw.get("note", "")),
    )


# ---------------------------------------------------------------- the run


@dataclass
class Truth:
    """What the controller recorded (its log), in simulated seconds, before any wire."""

    temps: list[tuple[float, dict[int, tuple[str, float | None]]]] = field(default_factory=list)
    events: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # when the host got a record


@dataclass
class Emitted:
    sim_s: float  # when the bench saw the change (feed or tick returned it)
    change: AlertChange


class HostLink:
    """The agent's side of one fridge's serial line, without a port: decode, dedupe, RECEIPT."""

    def __init__(self, sim: SimFridge) -> None:
        self.sim = sim
        self.device = sim.spec.id
        self.decoder = codec.FrameDecoder()
        self.host_seq = 0
        self.hello: dict[str, Any] | None = None
        self.seen: set[tuple[int, int, int]] = set()
        self.plugged = True

    def _seq(self) -> int:
        self.host_seq = (self.host_seq + 1) & 0xFFFF
        return self.host_seq

    def attach(self) -> bytes:
        self.hello = None
        self.decoder.reset_sequence()
        return b"\x00" + codec.encode_frame(codec.GET_HELLO, self._seq(), b"", codec.ACK_REQUESTED)

    def receive(self, wire: bytes, wall: float) -> tuple[list[NewReading | NewEvent], bytes]:
        """Fresh records from these wire bytes, and the RECEIPT bytes to send back."""
        fresh: list[NewReading | NewEvent] = []
        durable: dict[int, list[int]] = {}
        for frame in self.decoder.feed(wire):
            if frame.type == codec.HELLO:
                self.hello = codec.decode_message(frame.type, frame.payload)
            elif self.hello is None and frame.type in codec.LOGGED_TYPES:
                continue  # no boot count yet: the device resends after HELLO
            boot = int(self.hello["boot_count"]) if self.hello else 0
            items, _msg = interpret.from_frame(self.device, frame, wall, True, boot)
            for item in items:
                if not isinstance(item, NewReading | NewEvent) or item.fseq is None:
                    continue
                if frame.type in codec.LOGGED_TYPES and not frame.flags & codec.REPLY:
                    durable.setdefault(boot, []).append(item.fseq)
                key = (boot, item.fseq, item.dev_ms or 0)
                if key not in self.seen:
                    self.seen.add(key)
                    fresh.append(item)
        out = b""
        for boot, seqs in durable.items():
            for i in range(0, len(seqs), codec.MAX_RECEIPT_SEQS):
                body = codec.pack_receipt(boot, seqs[i : i + codec.MAX_RECEIPT_SEQS])
                out += codec.encode_frame(codec.RECEIPT, self._seq(), body)
        return fresh, out


@dataclass
class RunResult:
    emitted: list[Emitted]
    truth: dict[str, Truth]
    specs: dict[str, FridgeSpec]
    hours: float


def run_scenario(path: Path, hours: float) -> RunResult:
    scenario = load_scenario(path)
    clock = [0.0]  # simulated seconds since start: the bench's monotonic clock
    alerting = Alerting(RuleEngine(), monotonic=lambda: clock[0])
    sims = [SimFridge(f, scenario.sim.seed) for f in scenario.fridges]
    links = [HostLink(s) for s in sims]
    truth = {s.spec.id: Truth() for s in sims}
    emitted: list[Emitted] = []

    def note(changes: list[AlertChange]) -> None:
        emitted.extend(Emitted(clock[0], c) for c in changes)

    def deliver(link: HostLink, frames: Sequence[Any]) -> None:
        wire = b"".join(f.data for f in frames)
        while wire and link.plugged:
            fresh, receipts = link.receive(wire, START_WALL + clock[0])
            if fresh:
                truth[link.device].arrivals.append(clock[0])
                note(alerting.feed(fresh))
            wire = b"".join(f.data for f in link.sim.receive(receipts)) if receipts else b""

    for link in links:
        deliver(link, link.sim.receive(link.attach()))
    steps = round(hours * 3600 / STEP_S)
    next_tick = 0.0
    try:
        for _ in range(steps):
            for link in links:
                sim = link.sim
                frames = sim.step(STEP_S)
                clock[0] = sim.time_s
                _record_truth(truth[link.device], sim)
                if sim.unplugged and link.plugged:
                    link.plugged = False
                    sim.controller.detach()
                elif not sim.unplugged and not link.plugged:
                    link.plugged = True
                    frames = frames + sim.receive(link.attach())
                deliver(link, frames)
            if clock[0] >= next_tick:
                note(alerting.tick())
                next_tick = clock[0] + TICK_EVERY_S
    finally:
        for s in sims:
            s.close()
    return RunResult(emitted, truth, {s.spec.id: s.spec for s in sims}, hours)


def _record_truth(truth: Truth, sim: SimFridge) -> None:
    new, _lost = sim.controller.take_new_records()
    for rec in new:
        if rec.kind == "temp":
            probes = {
                int(i): (str(s), None if c is None else float(c))
                for i, s, c in rec.fields["probes"]
            }
            truth.temps.append((sim.time_s, probes))
        else:
            truth.events.append((sim.time_s, rec.kind, dict(rec.fields)))


# ---------------------------------------------------------------- judging


Windows = list[tuple[float, float]]


def _spans(points: list[tuple[float, bool]], end: float) -> Windows:
    """The spans [start, end) where the sampled/level predicate was true."""
    out: Windows = []
    since: float | None = None
    for t, ok in points:
        if ok and since is None:
            since = t
        elif not ok and since is not None:
            out.append((since, t))
            since = None
    if since is not None:
        out.append((since, end))
    return out


def _state_points(truth: Truth, kind: str, flag: str) -> list[tuple[float, bool]]:
    return [(t, bool(d[flag])) for t, k, d in truth.events if k == kind and flag in d]


def _suppression(truth: Truth, end: float) -> Windows:
    """Warm is held back from each defrost start to min(end + 60 min, start + 90 min)."""
    return [
        (a, min(b + 3600, a + 5400))
        for a, b in _spans(_state_points(truth, "defrost", "active"), end)
    ]


def _first_due(spans: Windows, hold: float, held_back: Windows) -> tuple[float, float] | None:
    """(start, due) of the first span that lasts `hold`, due pushed past any held-back
    window it falls in; a span that ends before its due alerts never."""
    for a, b in spans:
        t = a + hold
        for wa, wb in held_back:
            if wa <= t < wb:
                t = wb
        if t <= b:
            return a, t
    return None


def _probe_points(truth: Truth, probe: int) -> list[tuple[float, float]]:
    out = []
    for t, probes in truth.temps:
        status, value = probes.get(probe, ("missing", None))
        if status == "ok" and value is not None:
            out.append((t, value))
    return out


def onset(e: Expect, truth: Truth, end: float) -> tuple[float, float] | None:
    """(when the expectation's condition became true, when the alert is due by the rule),
    or None if it never held long enough in the run."""
    held: Windows = _suppression(truth, end) if e.defrost_suppressed else []
    if e.condition == "probe_flat":
        return _probe_flat(truth, e.probe, e.hold_s)
    if e.condition == "probe_bad":
        pts = [
            (t, p.get(e.probe, ("missing", None))[0] in ("crc", "missing")) for t, p in truth.temps
        ]
        return _first_due(_spans(pts, end), e.hold_s, held)
    if e.condition in ("product_above", "product_below"):
        above = e.condition == "product_above"
        pts = [
            (t, v > e.threshold if above else v < e.threshold)
            for t, v in _probe_points(truth, e.probe)
        ]
        return _first_due(_spans(pts, end), e.hold_s, held)
    if e.condition == "cumulative_above":
        # Above `threshold` for 4 h in the last 24 h (the hot rule, docs/design.md), while above it.
        need, window = e.hold_s, 24 * 3600.0
        vals = _probe_points(truth, e.probe)
        for i, (t, v) in enumerate(vals):
            if v <= e.threshold:
                continue
            total = sum(
                b - a
                for (a, va), (b, _) in itertools.pairwise(vals[: i + 1])
                if va > e.threshold and a >= t - window
            )
            if total >= need:
                return t, t
        return None
    if e.condition == "mean_above":
        # The drift rule (docs/design.md): the 24 h mean above `threshold` once 75 % of the
        # window has data; the hold is the engine's bucket granularity.
        vals = _probe_points(truth, e.probe)
        window = 24 * 3600.0
        lo, acc = 0, 0.0
        for i, (t, v) in enumerate(vals):
            acc += v
            while vals[lo][0] <= t - window:
                acc -= vals[lo][1]
                lo += 1
            if t - vals[0][0] >= 0.75 * window and acc / (i + 1 - lo) > e.threshold:
                return t, t + e.hold_s
        return None
    if e.condition == "door_open":
        return _first_due(_spans(_state_points(truth, "door", "open"), end), e.hold_s, held)
    if e.condition == "mains_lost":
        pts = [(t, not v) for t, v in _state_points(truth, "power", "mains")]
        return _first_due(_spans(pts, end), e.hold_s, held)
    if e.condition == "defrost_active":
        spans = _spans(_state_points(truth, "defrost", "active"), end)
        return _first_due(spans, e.hold_s, held)
    if e.condition == "link_silent":
        gaps = list(itertools.pairwise(truth.arrivals))
        if truth.arrivals:
            gaps.append((truth.arrivals[-1], end))
        return _first_due(gaps, e.hold_s, held)
    if e.condition == "compressor_still":
        return _compressor_still(truth, end)
    raise ValueError(f"unknown condition {e.condition!r}")


def _probe_flat(truth: Truth, probe: int, hold: float) -> tuple[float, float] | None:
    """The flatline rule (docs/design.md): `probe` within `flatline_band_c` of one reading
    for `flatline_h` while the other probe moved >= `flatline_other_moves_c` (defaults)."""
    th = Thresholds()
    ref: float | None = None
    since = lo = hi = 0.0
    for t, probes in truth.temps:
        mine, other = probes.get(probe, ("missing", None)), probes.get(1 - probe, ("missing", None))
        if mine[0] != "ok" or other[0] != "ok" or mine[1] is None or other[1] is None:
            ref = None
            continue
        if ref is None or abs(mine[1] - ref) > th.flatline_band_c:
            ref, since, lo, hi = mine[1], t, other[1], other[1]
            continue
        lo, hi = min(lo, other[1]), max(hi, other[1])
        if t - since >= th.flatline_h * 3600 and hi - lo >= th.flatline_other_moves_c:
            return t, t + hold
    return None


def _overlaps(a: float, b: float, windows: Windows) -> bool:
    return any(wa < b and a < wb for wa, wb in windows)


def _settled_until(a: float, need: float, unsettled: Windows, stop: float) -> float | None:
    """The moment the time in [a, stop] outside `unsettled` (sorted) adds up to `need`."""
    t, got = a, 0.0
    for wa, wb in unsettled:
        if wb <= t:
            continue
        if wa > t:
            if got + (wa - t) >= need:
                break
            got += wa - t
        t = max(t, wb)
    due = t + need - got
    return due if due <= stop else None


def _compressor_still(truth: Truth, end: float) -> tuple[float, float] | None:
    """The rule "no compressor cycling for 2x the usual period", judged as the rule judges it
    (docs/alerts.md): only settled time counts (door shut and `cycle_door_settle_min` past its
    last closing, no defrost, mains on); the usual period is the median of the last 8 on-to-on
    intervals that were settled throughout. (start of the still state, when it is due)."""
    th = Thresholds()
    settle = th.cycle_door_settle_min * 60
    doors = [(a, b + settle) for a, b in _spans(_state_points(truth, "door", "open"), end)]
    defrosts = _spans(_state_points(truth, "defrost", "active"), end)
    outages = _spans([(t, not v) for t, v in _state_points(truth, "power", "mains")], end)
    paused = defrosts + outages
    unsettled = sorted(doors + paused)
    changes: list[tuple[float, bool]] = []
    for t, on in _state_points(truth, "compressor", "on"):
        if not changes or changes[-1][1] != on:
            changes.append((t, on))
    ons = [t for t, on in changes if on]
    # A still state starts at a compressor change or when a defrost / mains loss ends.
    starts = sorted({t for t, _ in changes} | {b for _, b in paused if b < end})
    nexts = [t for t, _ in changes]
    for a in starts:
        if _overlaps(a, a, paused):
            continue  # it starts again when the pause ends
        periods = [
            y - x
            for x, y in itertools.pairwise(ons)
            if y <= a and not _overlaps(x, y, unsettled)
        ][-8:]
        if len(periods) < th.cycle_learn_count:
            continue
        need = th.cycle_factor * statistics.median(periods)
        stop = min([t for t in nexts if t > a] + [pa for pa, _ in paused if pa > a] + [end])
        due = _settled_until(a, need, unsettled, stop)
        if due is not None:
            return a, due
    return None


@dataclass
class Row:
    scenario: str
    expected: str
    raised: str
    delay: str
    budget: str
    ok: bool
    false_alerts: str


@dataclass
class Verdict:
    name: str
    passed: bool
    known_issue: str
    note: str
    rows: list[Row]
    failures: list[str]
    hours: float = 0.0  # simulated


def _hm(s: float) -> str:
    sign = "-" if s < 0 else ""
    s = abs(s)
    return f"{sign}{int(s // 3600)}:{int(s % 3600 // 60):02d}:{int(s % 60):02d}"


def _detection(e: Expect, emitted: list[Emitted], fridge: str, start: float) -> Emitted | None:
    """The first matching raise/update at or after `start`, or one made earlier that is
    still active at `start` (an alert cleared before the condition began does not count)."""
    early: dict[str, Emitted] = {}
    for m in emitted:
        if m.sim_s >= start:
            if early:
                return min(early.values(), key=lambda x: x.sim_s)
            if _matches(e, m.change, fridge):
                return m
        elif m.change.state == "cleared":
            early.pop(m.change.id, None)
        elif _matches(e, m.change, fridge):
            early.setdefault(m.change.id, m)
    return min(early.values(), key=lambda x: x.sim_s) if early else None


def _matches(e: Expect, c: AlertChange, fridge: str) -> bool:
    if c.fridge != fridge or c.rule != e.rule or c.state == "cleared":
        return False
    if _SEVERITY_RANK[c.severity] < _SEVERITY_RANK[e.severity]:
        return False
    return e.audience is None or c.audience == e.audience or c.severity == "critical"


def judge(sx: ScenarioExpect, result: RunResult) -> Verdict:
    end = result.hours * 3600
    only = next(iter(result.specs))
    several = len(result.specs) > 1

    def tag(m: Emitted) -> str:
        who = f"{m.change.fridge}:" if several else ""
        return f"{who}{m.change.rule}/{m.change.severity}@{_hm(m.sim_s)}"

    raised = [m for m in result.emitted if m.change.state == "raised"]
    raised_txt = ", ".join(tag(m) for m in raised) or "none"
    rows: list[Row] = []
    failures: list[str] = []
    expected_rules: set[tuple[str, str]] = set()
    for e in sx.expects:
        fridge = e.fridge or only
        expected_rules.add((fridge, e.rule))
        label = (f"{fridge}:" if several else "") + f"{e.rule}/{e.severity}"
        label += f"/{e.audience}" if e.audience else ""
        found = onset(e, result.truth[fridge], end)
        if found is None:
            failures.append(f"{label}: condition {e.condition} never held in {result.hours:g} h")
            rows.append(Row(sx.name, f"{label} (condition never met)", "", "-", "-", False, ""))
            continue
        start, due_at = found
        budget = due_at - start + result.specs[fridge].sample_interval_s
        hit = _detection(e, result.emitted, fridge, start)
        if hit is None:
            ok, delay = False, "missed"
            failures.append(
                f"{label}: condition true at {_hm(start)}, no alert in "
                f"{_hm(end - start)} (budget {_hm(budget)})"
            )
        else:
            ok = hit.sim_s - start <= budget
            delay = _hm(hit.sim_s - start)
            if not ok:
                failures.append(
                    f"{label}: condition true at {_hm(start)}, alert at "
                    f"{_hm(hit.sim_s)}: delay {delay} > budget {_hm(budget)}"
                )
        rows.append(Row(sx.name, f"{label} from {_hm(start)}", "", delay, _hm(budget), ok, ""))
    false = [
        m
        for m in raised
        if (m.change.fridge, m.change.rule) not in expected_rules
        and m.change.rule not in sx.allow
        and m.sim_s >= sx.ignore_before_h * 3600
    ]
    false_txt = ", ".join(tag(m) for m in false)
    if false:
        failures.append(f"false alerts: {false_txt} ({false[0].change.message})")
    if not rows:
        note = f" after {sx.ignore_before_h:g} h warm-up" if sx.ignore_before_h else ""
        rows.append(Row(sx.name, f"no alert{note}", "", "-", "-", not false, ""))
    rows[0].raised = raised_txt
    rows[0].false_alerts = false_txt or "0"
    passed = not failures
    return Verdict(sx.name, passed, sx.known_issue, sx.note, rows, failures, result.hours)


def bench_one(sx: ScenarioExpect, hours: float | None = None) -> Verdict:
    h = hours or sx.hours or DEFAULT_HOURS
    return judge(sx, run_scenario(sx.path, h))


def run_all(
    only: str | Collection[str] | None = None,
    hours: float | None = None,
    jobs: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Verdict]:
    """Every scenario (or `only`: a name or names), in parallel processes (each run is pure
    and seeded)."""
    table = load_expectations()
    names = {only} if isinstance(only, str) else set(only or ())
    todo = [scenario_expect(p, table) for p in scenario_paths() if not names or p.stem in names]
    # Longest first, so the slowest scenario does not start last.
    todo.sort(key=lambda sx: -(hours or sx.hours or DEFAULT_HOURS))
    workers = max(1, min(jobs or os.cpu_count() or 1, len(todo)))
    verdicts: dict[str, Verdict] = {}
    with ProcessPoolExecutor(workers) as pool:
        futures = {pool.submit(bench_one, sx, hours): sx.name for sx in todo}
        for fut in as_completed(futures):
            verdicts[futures[fut]] = fut.result()
            if progress:
                progress(f"{futures[fut]}: done")
    return [verdicts[sx.name] for sx in sorted(todo, key=lambda sx: sx.name)]
