"""Alert identity and lifecycle: a new excursion is a new alert (its own id) whatever rule
or cause raised it, a changed cause of an open alert updates it (issue #13)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from edge.rules import AlertChange, RuleEngine

MIN = 60.0
HOUR = 3600.0
F = "fridge-2"


def run(engine: RuleEngine, until: float, product: Callable[[float], float],
        step: float = 10.0) -> list[AlertChange]:
    out: list[AlertChange] = []
    t = 0.0
    while t < until:
        out += engine.tick(t)
        out += engine.on_reading(F, t, product(t) - 0.5, product(t))
        t += step
    return out


def ramp(points: Sequence[tuple[float, float]]) -> Callable[[float], float]:
    def f(t: float) -> float:
        for (t0, v0), (t1, v1) in itertools.pairwise(points):
            if t <= t1:
                return v0 + (v1 - v0) * (t - t0) / (t1 - t0)
        return points[-1][1]

    return f


def lifecycles(changes: list[AlertChange]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in changes:
        out.setdefault(c.id, []).append(c.state)
    return out


def test_hot_again_after_an_all_clear_is_a_new_alert_with_its_own_id() -> None:
    # The demo's fridge-2 (issue #13): switched on warm (10 °C), so "hot" (> 8 °C for
    # 15 min) is raised with the start of the data; it cools to 6 °C, "hot" clears (< 7 °C
    # for 10 min) but the product stays above 5 °C, and 4 h after the start the day's
    # budget above 5 °C is spent: "hot" again, for another cause. It used to reuse the
    # first alert's id (both started with the data), and the cloud kept it cleared.
    p = ramp([(0, 10.0), (40 * MIN, 10.0), (70 * MIN, 6.0), (6 * HOUR, 6.0)])
    changes = [c for c in run(RuleEngine(), 6 * HOUR, p) if c.rule == "hot"]
    first, cleared, second = changes
    assert (first.state, cleared.state, second.state) == ("raised", "cleared", "raised")
    assert first.data["reason"] == "hot_sustained" and first.started_at == 0.0
    assert cleared.id == first.id
    assert second.data["reason"] == "hot_cumulative"
    assert "above 5 °C for 4 h in the last 24 h" in second.message
    assert second.id != first.id
    # The new alert starts where the last one ended: its time is not counted twice.
    assert second.started_at == cleared.at and second.at > cleared.at
    assert second.id == f"{F}/hot/{round(cleared.at * 1000)}"


def test_a_new_excursion_of_the_same_cause_also_gets_a_new_id() -> None:
    p = ramp([(0, 3.0), (HOUR, 3.0), (HOUR + 5 * MIN, 9.0), (2 * HOUR, 9.0),
              (2 * HOUR + 10 * MIN, 3.0), (4 * HOUR, 3.0), (4 * HOUR + 5 * MIN, 9.0),
              (5 * HOUR, 9.0), (5 * HOUR + 10 * MIN, 3.0), (7 * HOUR, 3.0)])
    changes = run(RuleEngine(), 7 * HOUR, p)
    hot = lifecycles([c for c in changes if c.rule == "hot"])
    warm = lifecycles([c for c in changes if c.rule == "warm"])
    assert list(hot.values()) == [["raised", "cleared"], ["raised", "cleared"]]
    assert list(warm.values()) == [["raised", "cleared"], ["raised", "cleared"]]


def test_a_changed_cause_of_an_open_alert_updates_that_alert() -> None:
    # 9 °C from the start: "hot" (sustained) at 15 min; 4 h later the day's budget above
    # 5 °C is spent while the alert is still open: the same alert, updated, and from then
    # on it clears only below 5 - 1 °C.
    p = ramp([(0, 9.0), (5 * HOUR, 9.0), (5 * HOUR + 20 * MIN, 4.5), (7 * HOUR, 4.5),
              (7 * HOUR + 10 * MIN, 3.0), (9 * HOUR, 3.0)])
    hot = [c for c in run(RuleEngine(), 9 * HOUR, p) if c.rule == "hot"]
    assert [c.state for c in hot] == ["raised", "updated", "cleared"]
    raised, updated, cleared = hot
    assert raised.id == updated.id == cleared.id
    assert raised.data["reason"] == "hot_sustained"
    assert updated.data["reason"] == "hot_cumulative" and updated.severity == "critical"
    assert 4 * HOUR <= updated.at <= 4 * HOUR + 10
    assert "in the last 24 h" in updated.message
    # Not at 4.5 °C (below 7 °C, but not below 4 °C): only once properly cold.
    assert cleared.at > 7 * HOUR and cleared.data["end_limit_c"] == 4.0


def test_ids_never_repeat_over_a_day_of_repeated_excursions() -> None:
    # Twelve warm spells of varying height: each excursion's alerts are new ones.
    points: list[tuple[float, float]] = [(0, 3.0)]
    for k in range(12):
        s = k * 2 * HOUR + HOUR
        peak = 6.0 + (k % 4)
        points += [(s, 3.0), (s + 5 * MIN, peak), (s + 50 * MIN, peak), (s + 60 * MIN, 3.0)]
    points.append((26 * HOUR, 3.0))
    changes = run(RuleEngine(), 26 * HOUR, ramp(points), step=30.0)
    for aid, states in lifecycles(changes).items():
        assert states[0] == "raised", (aid, states)
        assert states.count("raised") == 1 and states.count("cleared") <= 1, (aid, states)
    assert len(lifecycles([c for c in changes if c.rule == "warm"])) == 12
    # The day's budget above 5 °C is spent after five spells: "hot" (cumulative) from then
    # on, once per spell, each a new alert.
    cumulative = {c.id for c in changes if c.data.get("reason") == "hot_cumulative"}
    assert len(cumulative) >= 5
