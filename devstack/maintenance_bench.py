"""The maintenance bench's core: slow faults (hw_sim/scenarios/slow/*.toml) run for weeks of
simulated time, each fridge's records turned into hourly vitals by the terminal's own code
(`edge.vitals.hour_vitals`), judged hour by hour by the cloud's maintenance rules
(`cloud_gateway.maintenance.evaluate`), while the same records go through the edge's
cold-chain rules (`edge.rules.RuleEngine`). Per scenario: when the first maintenance alert
came and when the first cold-chain alert did, in days. The CLI is `python -m
bench.maintenance`; tests/e2e/test_maintenance_bench.py runs a shortened version.

Fast-forwarded like the scenario bench, with two shortcuts that weeks of time need: the
physics and the controller step 5 simulated seconds at a time (the controller samples every
10 s, door openings last 10-30 s), and records go from the controller to the rules and the
vitals directly, not through the frame codec (the scenario bench covers the wire). A
record's time is the synthetic wall clock at the start plus its device time (the slow
scenarios have no reboots).
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Callable, Collection
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud_gateway import maintenance
from edge.rules import AlertChange, RuleEngine
from edge.vitals import Rec, hour_vitals
from edge.vitals_job import REPORT_DELAY_S
from hw_sim.fridge import SimFridge
from hw_sim.scenario import FridgeSpec, load_scenario
from xiaodian.wire.health import HOUR_S, Vitals

ROOT = Path(__file__).resolve().parent.parent
SLOW_DIR = ROOT / "hw_sim" / "scenarios" / "slow"
START_WALL = 1_748_736_000.0  # 2025-06-01T00:00:00Z, on an hour: sim hour k = epoch hour
STEP_S = 5.0
TICK_S = 60.0  # the cold-chain rules' time-based judging
LOOKBACK_S = 6 * 3600.0  # records kept before an hour (edge/vitals_job.py does the same)
DAY_S = 86_400.0


@dataclass
class FridgeRun:
    """One fridge's outcome: simulated days since the start."""

    fridge: str
    fault: str  # the slow fault's name(s), or "none"
    fault_at_d: float | None
    first_maintenance_d: float | None = None
    maintenance: list[tuple[float, str]] = field(default_factory=list)  # (day, key) raised
    first_cold_chain_d: float | None = None
    cold_chain: str = ""  # rule/severity of the first cold-chain alert
    days: float = 0.0

    @property
    def lead_d(self) -> float | None:
        """Days from the first maintenance alert to the first cold-chain alert (or the run's
        end, when none came: then at least that)."""
        if self.first_maintenance_d is None:
            return None
        end = self.first_cold_chain_d if self.first_cold_chain_d is not None else self.days
        return end - self.first_maintenance_d


class _Fridge:
    def __init__(self, spec: FridgeSpec, seed: int) -> None:
        self.sim = SimFridge(spec, seed)
        self.recs: deque[Rec] = deque()
        self.series: list[Vitals] = []
        self.active: set[str] = set()
        slow = [f for f in spec.faults if f.slow]
        at = min(f.at_s / DAY_S for f in slow) if slow else None
        self.run = FridgeRun(spec.id, "+".join(f.fault for f in slow) or "none", at)
        self.next_hour = 0  # the next sim hour whose vitals are due

    def take(self, engine: RuleEngine) -> None:
        new, _lost = self.sim.controller.take_new_records()
        fid = self.sim.spec.id
        for r in new:
            data: dict[str, Any] = dict(r.fields)
            t = START_WALL + int(data.get("dev_ms", 0)) / 1000.0
            self.recs.append(Rec(t, r.kind, data))
            if r.kind == "temp":
                probes = {int(i): (str(s), c) for i, s, c in data["probes"]}
                air_s, air = probes.get(0, (None, None))
                prod_s, prod = probes.get(1, (None, None))
                self.cold_chain(engine.on_reading(fid, t, air, prod, air_s, prod_s), t)
            elif r.kind in ("door", "compressor", "power", "defrost"):
                self.cold_chain(engine.on_event(fid, t, r.kind, data), t)

    def cold_chain(self, changes: list[AlertChange], t: float) -> None:
        """Note the first cold-chain alert raised (any rule, any severity)."""
        for c in changes:
            if c.state == "raised" and self.run.first_cold_chain_d is None:
                self.run.first_cold_chain_d = (t - START_WALL) / DAY_S
                self.run.cold_chain = f"{c.rule}/{c.severity}"

    def hourly(self, now_s: float) -> None:
        """Vitals for every hour whose report is due by `now_s`, then the maintenance rules."""
        while (self.next_hour + 1) * HOUR_S + REPORT_DELAY_S <= now_s:
            hour = int(START_WALL // HOUR_S) + self.next_hour
            a = hour * HOUR_S
            while self.recs and self.recs[0].t < a - LOOKBACK_S:
                self.recs.popleft()
            v = hour_vitals(self.sim.spec.id, hour, list(self.recs))
            self.series.append(v)
            self.series = self.series[-(35 * 24 + 24):]  # the rules look back 35 days
            found = maintenance.evaluate(self.series, hour, self.active)
            keys = {f.key for f in found}
            day = (self.next_hour + 1) / 24.0
            for k in sorted(keys - self.active):
                self.run.maintenance.append((day, k))
                if self.run.first_maintenance_d is None:
                    self.run.first_maintenance_d = day
            self.active = keys
            self.next_hour += 1


def run_slow(path: Path, days: float | None = None, stop_after_cold_d: float = 1.0,
             step_s: float = STEP_S) -> list[FridgeRun]:
    """Run a slow scenario for `days` (default: its `# bench: N days` line, else 35); a
    fridge's run stops `stop_after_cold_d` after its first cold-chain alert (nothing more
    to learn). Fewer `days` is the shortened run: the rules' windows are weeks long, so a
    fault cannot be hurried, only watched for less time (then a fault's lead is "at least")."""
    scenario = load_scenario(path)
    total = (days or _days_hint(path)) * DAY_S
    engine = RuleEngine()
    fridges = [_Fridge(f, scenario.sim.seed) for f in scenario.fridges]
    results: list[FridgeRun] = []
    t = 0.0
    next_tick = TICK_S
    while t < total and fridges:
        t += step_s
        for fr in fridges:
            fr.sim.step(step_s)
            fr.take(engine)
            fr.hourly(fr.sim.time_s)
        if t >= next_tick:
            next_tick += TICK_S
            for c in engine.tick(START_WALL + t):
                for f in fridges:
                    if f.sim.spec.id == c.fridge:
                        f.cold_chain([c], START_WALL + t)
        done = [f for f in fridges if f.run.first_cold_chain_d is not None
                and t / DAY_S >= f.run.first_cold_chain_d + stop_after_cold_d]
        for f in done:
            f.run.days = t / DAY_S
            fridges.remove(f)
            results.append(f.run)
    for f in fridges:
        f.run.days = t / DAY_S
        results.append(f.run)
    return sorted(results, key=lambda r: r.fridge)


_DAYS_HINT = re.compile(r"^# bench: (\d+(?:\.\d+)?) days", re.MULTILINE)


def _days_hint(path: Path) -> float:
    hint = _DAYS_HINT.search(path.read_text(encoding="utf-8"))
    return float(hint.group(1)) if hint else 35.0


def scenario_paths() -> list[Path]:
    return sorted(SLOW_DIR.glob("*.toml"))


@dataclass(frozen=True)
class Outcome:
    scenario: str
    runs: list[FridgeRun]
    expect_fault: bool  # a slow fault in it: a maintenance alert must lead the cold chain

    @property
    def passed(self) -> bool:
        for r in self.runs:
            if r.fault == "none":
                if r.maintenance:
                    return False
            elif r.first_maintenance_d is None or (
                    r.first_cold_chain_d is not None
                    and r.first_cold_chain_d <= r.first_maintenance_d):
                return False
        return True


def bench_one(path: Path, days: float | None = None) -> Outcome:
    runs = run_slow(path, days)
    return Outcome(path.stem, runs, any(r.fault != "none" for r in runs))


def run_all(only: str | Collection[str] | None = None, days: float | None = None,
            jobs: int | None = None,
            progress: Callable[[str], None] | None = None) -> list[Outcome]:
    names = {only} if isinstance(only, str) else set(only or ())
    todo = [p for p in scenario_paths() if not names or p.stem in names]
    workers = max(1, min(jobs or os.cpu_count() or 1, len(todo)))
    done: dict[str, Outcome] = {}
    with ProcessPoolExecutor(workers) as pool:
        futures = {pool.submit(bench_one, p, days): p.stem for p in todo}
        for fut in as_completed(futures):
            done[futures[fut]] = fut.result()
            if progress:
                progress(f"{futures[fut]}: done")
    return [done[p.stem] for p in todo]

