"""The staged rollout's decisions (cloud_gateway/rollout.py): one store, then a share, then
all; halted by the canary's failure, by failures past the threshold, by updates that never
report back; never a store started twice or outside the open stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_gateway import rollouts
from cloud_gateway.db import Database
from cloud_gateway.rollout import Decision, Outcome, Plan, State, StoreReport, decide, plan
from xiaodian.wire.commands import key_id_for, sign_command

STORES = tuple(f"store-{i:03d}" for i in range(1, 11))


def ok(at: float = 0.0) -> StoreReport:
    return StoreReport(Outcome.SUCCEEDED, at, "confirmed")


def bad(at: float = 0.0) -> StoreReport:
    return StoreReport(Outcome.FAILED, at, "rolled_back")


def test_the_plan_is_one_store_then_a_share_then_all() -> None:
    p = plan("firmware", STORES)
    assert p.stages == (1, 3, 10) and p.max_failures == 2
    assert plan("firmware", STORES[:1]).stages == (1,)
    assert plan("firmware", STORES[:3], share=0.5).stages == (1, 2, 3)
    with pytest.raises(ValueError):
        Plan("firmware", ("store-001", "store-001"), (1, 2), 0)
    with pytest.raises(ValueError):
        Plan("firmware", STORES[:3], (2, 1, 3), 0)


def test_stages_open_only_when_the_one_before_has_settled() -> None:
    p = plan("firmware", STORES)
    d = decide(p, {}, 0.0)
    assert (d.state, d.stage, d.start) == (State.RUNNING, 0, ("store-001",))
    started = {"store-001": StoreReport(Outcome.STARTED, 0.0)}
    assert decide(p, started, 10.0).start == ()  # the canary is still updating
    reports = {"store-001": ok()}
    d = decide(p, reports, 20.0)
    assert (d.stage, d.start) == (1, ("store-002", "store-003"))
    reports |= {"store-002": ok(), "store-003": StoreReport(Outcome.STARTED, 20.0)}
    assert decide(p, reports, 30.0).start == ()
    reports["store-003"] = bad()  # one failure: within the threshold of 2
    d = decide(p, reports, 40.0)
    assert (d.state, d.stage, d.start) == (State.RUNNING, 2, STORES[3:])
    reports |= {s: ok() for s in STORES[3:]}
    d = decide(p, reports, 50.0)
    assert (d.state, d.failed, d.succeeded) == (State.DONE, 1, 9)


def test_the_canary_failing_halts_at_once() -> None:
    d = decide(plan("firmware", STORES), {"store-001": bad()}, 5.0)
    assert d.state is State.HALTED and d.start == () and "store-001" in d.reason


def test_failures_past_the_threshold_halt_even_mid_stage() -> None:
    p = plan("firmware", STORES)
    reports = {"store-001": ok(), "store-002": ok(), "store-003": ok()}
    reports |= {s: StoreReport(Outcome.STARTED, 100.0) for s in STORES[3:]}
    reports |= {"store-004": bad(), "store-005": bad()}
    assert decide(p, reports, 110.0).state is State.RUNNING  # 2 = the threshold
    reports["store-006"] = bad()
    d = decide(p, reports, 120.0)
    assert (d.state, d.failed, d.start) == (State.HALTED, 3, ())
    assert d.reason == "3 failed, the threshold is 2"


def test_an_update_that_never_reports_back_is_a_failure() -> None:
    p = plan("firmware", STORES, settle_s=600.0)
    started = {"store-001": StoreReport(Outcome.STARTED, 1000.0)}
    assert decide(p, started, 1600.0).state is State.RUNNING
    d = decide(p, started, 1600.5)
    assert d.state is State.HALTED and d.timed_out == ("store-001",)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 40), st.floats(0.01, 1.0), st.floats(0.0, 0.9), st.data())
def test_any_history_starts_each_store_once_in_stage_order(
    n: int, share: float, ratio: float, data: st.DataObject
) -> None:
    """Drive a rollout with random outcomes: stores start in plan order, never twice, a
    stage only after the one before settled, and it ends done or halted, halted only past
    the threshold (or with the canary failed)."""
    stores = tuple(f"store-{i:03d}" for i in range(1, n + 1))
    p = plan("firmware", stores, share=share, max_failure_ratio=ratio)
    reports: dict[str, StoreReport] = {}
    order: list[str] = []
    now = 0.0
    d: Decision = decide(p, reports, now)
    while d.state is State.RUNNING:
        assert set(d.start).isdisjoint(reports)
        settled_before = [s for s, r in reports.items() if r.outcome is not Outcome.STARTED]
        if d.start and d.stage > 0:
            assert len(settled_before) >= p.stages[d.stage - 1]
        for s in d.start:
            reports[s] = StoreReport(Outcome.STARTED, now)
            order.append(s)
        running = [s for s, r in reports.items() if r.outcome is Outcome.STARTED]
        assert running, "running with nothing under way and nothing to start"
        s = data.draw(st.sampled_from(running))
        failed = data.draw(st.booleans())
        reports[s] = bad(now) if failed else ok(now)
        now += 1.0
        d = decide(p, reports, now)
    assert order == list(stores[: len(order)])
    failed_n = sum(r.outcome is Outcome.FAILED for r in reports.values())
    if d.state is State.HALTED:
        assert failed_n > p.max_failures or reports[stores[0]].outcome is Outcome.FAILED
    else:
        assert d.state is State.DONE and len(order) == n and failed_n <= p.max_failures


def test_a_command_that_cannot_be_issued_fails_that_store(db_target: str | Path) -> None:
    """The real signing refuses a version the store would refuse ("1.1"): the canary is
    failed as not sent, the rollout halts, nothing is left pending. SQLite and PostgreSQL."""
    key = Ed25519PrivateKey.generate()

    class Signing:
        def issue(self, store: str, action: str, params: dict[str, Any],
                  now: float | None = None, *, issued_by: str = "") -> str:
            signed = sign_command(key, key_id_for(key.public_key()), target=store,
                                  action=action, params=params, issued_at=int(now or 0))
            return signed.command.command_id

    art = rollouts.Artefact("firmware", "fridge-1", "https://cloud.example/artefacts/x",
                            "ab" * 32, 100, "1.1")
    with Database.open(db_target) as db:
        rid = rollouts.create(db, art, list(STORES[:4]), 1000.0)
        d = rollouts.tick(db, Signing(), rid, 1000.0)
        assert d.start == ("store-001",)
        (row,) = rollouts.store_rows(db, rid)
        assert row["command_id"].startswith(rollouts.NOT_SENT) and "version" in row["command_id"]
        d = rollouts.tick(db, Signing(), rid, 1001.0)
        assert d.state is State.HALTED and d.start == ()
        s = rollouts.summary(db, rid)
        assert s is not None and (s["state"], s["failed"]) == ("halted", 1)
        assert rollouts.running(db) == []
