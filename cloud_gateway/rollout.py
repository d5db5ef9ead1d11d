"""A staged rollout of one artefact (a fridge firmware image today, the terminal's own update
of #19 tomorrow) across stores: one store first, then a share, then all; it halts by itself
when failures pass a threshold. Pure: the caller keeps the outcomes and the clock.

The plan is fixed when the rollout starts: the stores in order (the canary first), the
stages as cumulative counts, the failure threshold. `decide` is given what each store has
reported so far (and `now`) and answers what to do: which stores to start, and the
rollout's state. A stage opens only when every store of the one before has settled and the
failures are within the threshold; a store that was started and has not settled within
`settle_s` counts as failed (`timeout`): an update that never reports back is no success.
The first stage (the canary) must succeed whole: one failure there halts.
Halted and done are final; a halted rollout starts nothing more (a technician makes a new
one, for the rest, after looking).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

DEFAULT_SHARE = 0.25  # the middle stage: a quarter of the stores
DEFAULT_MAX_FAILURE_RATIO = 0.2
DEFAULT_SETTLE_S = 3600.0  # a download, a transfer at 115200 baud, a trial: well under this
# The terminal's own software (kind "agent"): a release of some 30 MB fetched over a shop's
# line (10 min at 400 kbit/s), verified and unpacked by the root helper, the new agent
# started, then its health window (180 s by default, edge.toml [agent_update]) and, when it
# is unhealthy, the switch back and one more restart before the result goes out through the
# outbox. 30 min leaves room for all of that on a slow line; a terminal still silent after
# it is in trouble, and the rollout must not wait on it for an hour per stage.
DEFAULT_AGENT_SETTLE_S = 1800.0


def default_settle_s(kind: str) -> float:
    return DEFAULT_AGENT_SETTLE_S if kind == "agent" else DEFAULT_SETTLE_S


class State(enum.StrEnum):
    RUNNING = "running"  # a stage is under way (or the next one is about to open)
    HALTED = "halted"  # failures passed the threshold: nothing more is started
    DONE = "done"  # every store settled within the threshold


class Outcome(enum.StrEnum):
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class StoreReport:
    outcome: Outcome
    started_at: float
    result: str = ""  # the store's result code (confirmed, rolled_back, bad_hash, ...)


@dataclass(frozen=True)
class Plan:
    kind: str  # what is rolled out ("firmware"; #19: "agent")
    stores: tuple[str, ...]  # in rollout order; stores[0] is the canary
    stages: tuple[int, ...]  # cumulative store counts, strictly rising, the last = all
    max_failures: int  # more failed stores than this halts the rollout
    settle_s: float = DEFAULT_SETTLE_S

    def __post_init__(self) -> None:
        if not self.stores or len(set(self.stores)) != len(self.stores):
            raise ValueError("a rollout needs stores, each once")
        if (not self.stages or self.stages[-1] != len(self.stores) or self.stages[0] < 1
                or any(b <= a for a, b in zip(self.stages, self.stages[1:], strict=False))):
            raise ValueError(f"stages must rise from 1 to {len(self.stores)}: {self.stages}")
        if self.max_failures < 0 or self.settle_s <= 0:
            raise ValueError("max_failures >= 0 and settle_s > 0")


def plan(kind: str, stores: Sequence[str], *, share: float = DEFAULT_SHARE,
         max_failure_ratio: float = DEFAULT_MAX_FAILURE_RATIO,
         settle_s: float = DEFAULT_SETTLE_S) -> Plan:
    """One store, then `share` of them (rounded up), then all; the threshold as a share of
    all stores, rounded down (so with few stores the first failure halts it)."""
    if not 0 < share <= 1 or not 0 <= max_failure_ratio < 1:
        raise ValueError("share in (0, 1], max_failure_ratio in [0, 1)")
    n = len(stores)
    stages = sorted({1, max(1, math.ceil(share * n)), n})
    return Plan(kind, tuple(stores), tuple(stages), int(max_failure_ratio * n), settle_s)


@dataclass(frozen=True)
class Decision:
    state: State
    stage: int  # the open stage, 0-based (the last one once done)
    start: tuple[str, ...] = ()  # stores to start now
    timed_out: tuple[str, ...] = ()  # started stores now counted as failed
    failed: int = 0
    succeeded: int = 0
    reason: str = ""  # why halted, in words for the log (the page shows the counts)
    counts: Mapping[str, int] = field(default_factory=dict)


def decide(p: Plan, reports: Mapping[str, StoreReport], now: float) -> Decision:
    """What to do now, given every store's report so far (stores never started are absent)."""
    unknown = set(reports) - set(p.stores)
    if unknown:
        raise ValueError(f"reports for stores outside the plan: {sorted(unknown)}")
    timed_out = tuple(s for s in p.stores if (r := reports.get(s)) is not None
                      and r.outcome is Outcome.STARTED and now - r.started_at > p.settle_s)
    outcome = {s: (Outcome.FAILED if s in timed_out else r.outcome)
               for s, r in reports.items()}
    failed = sum(1 for o in outcome.values() if o is Outcome.FAILED)
    succeeded = sum(1 for o in outcome.values() if o is Outcome.SUCCEEDED)
    counts = {"stores": len(p.stores), "started": len(outcome), "failed": failed,
              "succeeded": succeeded}
    stage = 0
    while stage < len(p.stages) - 1 and all(
        outcome.get(s, Outcome.STARTED) is not Outcome.STARTED and s in outcome
        for s in p.stores[: p.stages[stage]]
    ):
        stage += 1
    # `stage` is now the first stage not wholly settled (or the last one).
    canary_failed = [s for s in p.stores[: p.stages[0]] if outcome.get(s) is Outcome.FAILED]
    if canary_failed:
        return Decision(State.HALTED, stage, (), timed_out, failed, succeeded,
                        f"the first store failed ({', '.join(canary_failed)})", counts)
    if failed > p.max_failures:
        return Decision(State.HALTED, stage, (), timed_out, failed, succeeded,
                        f"{failed} failed, the threshold is {p.max_failures}", counts)
    if len(outcome) == len(p.stores) and Outcome.STARTED not in outcome.values():
        return Decision(State.DONE, len(p.stages) - 1, (), timed_out, failed, succeeded, "",
                        counts)
    start = tuple(s for s in p.stores[: p.stages[stage]] if s not in reports)
    return Decision(State.RUNNING, stage, start, timed_out, failed, succeeded, "", counts)
