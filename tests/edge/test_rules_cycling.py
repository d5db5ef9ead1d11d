"""The door-aware "no compressor cycling" rule (drift / degraded cooling): only settled time
counts (door shut and `cycle_door_settle_min` past its last closing), and the usual period
is learned only from cycles that door traffic did not disturb."""

from __future__ import annotations

import pytest

from edge.rules import AlertChange, RuleEngine, RulesConfig
from edge.rules.config import FridgeOverride

MIN = 60.0
HOUR = 3600.0
F = "fridge-1"
Event = tuple[float, str, dict[str, object]]


def feed(engine: RuleEngine, events: list[Event], until: float, step: float = 10.0) -> list[
    AlertChange
]:
    """Events in time order, a steady 3 °C reading and a tick every `step` seconds."""
    pending = sorted(events, key=lambda e: e[0])
    out: list[AlertChange] = []
    t = 0.0
    while t < until:
        while pending and pending[0][0] <= t:
            et, kind, data = pending.pop(0)
            out += engine.on_event(F, et, kind, data)
        out += engine.on_reading(F, t, 3.0, 3.0)
        out += engine.tick(t)
        t += step
    return [c for c in out if c.rule == "cycling"]


def cycles(start: float, count: int, period_min: float, door: bool = False) -> list[Event]:
    """`count` compressor cycles (on half the period); `door`: a 20 s opening in each."""
    out: list[Event] = []
    for k in range(count):
        on = start + k * period_min * MIN
        out += [(on, "compressor", {"on": True}), (on + period_min / 2 * MIN, "compressor",
                                                   {"on": False})]
        if door:
            out += [(on + 5 * MIN, "door", {"open": True}),
                    (on + 5 * MIN + 20, "door", {"open": False})]
    return out


def rush(start: float, count: int, every_min: float = 3.0) -> list[Event]:
    """Customers: a 20 s opening every `every_min` minutes."""
    out: list[Event] = []
    for k in range(count):
        s = start + k * every_min * MIN
        out += [(s, "door", {"open": True}), (s + 20, "door", {"open": False})]
    return out


QUIET = cycles(0.0, 6, 40)  # six undisturbed 40 min cycles: usual period 40 min
STUCK_ON = 4 * HOUR  # then the compressor switches on and never stops


def test_a_busy_day_at_capacity_is_not_a_fault() -> None:
    # 20 openings an hour all day keep the compressor on for 20 h: door load.
    events = [*QUIET, (STUCK_ON, "compressor", {"on": True}),
              *rush(STUCK_ON + MIN, int(20 * HOUR / (3 * MIN)))]
    assert feed(RuleEngine(), events, 24 * HOUR) == []
    # The same run with the door shut is a compressor that fails to cycle.
    (raised,) = feed(RuleEngine(), [*QUIET, (STUCK_ON, "compressor", {"on": True})], 8 * HOUR)
    assert raised.state == "raised" and raised.at == STUCK_ON + 80 * MIN
    assert raised.message == "compressor on for 1 h 20 min without cycling, usual cycle 40 min"


@pytest.mark.parametrize(("settle_min", "config"), [
    (20.0, RulesConfig()),
    (5.0, RulesConfig(fridges=(FridgeOverride(id=F, cycle_door_settle_min=5),))),
])
def test_after_a_rush_the_clock_runs_on_from_where_it_stopped(
    settle_min: float, config: RulesConfig
) -> None:
    # On at 4 h; 30 min settled, then 2 h of customers, then the door stays shut and the
    # compressor still never stops: 50 more settled minutes reach 2 x 40 min.
    events = [*QUIET, (STUCK_ON, "compressor", {"on": True}), *rush(STUCK_ON + 30 * MIN, 40)]
    last_close = STUCK_ON + 30 * MIN + 39 * 3 * MIN + 20
    changes = feed(RuleEngine(config), events, 12 * HOUR)
    (raised,) = changes
    assert raised.at == pytest.approx(last_close + settle_min * MIN + 50 * MIN)
    assert raised.started_at == STUCK_ON
    assert "(1 h 20 min of it door shut and settled) without cycling" in raised.message
    assert raised.data["settled_s"] == 80 * MIN and raised.data["usual_cycle_s"] == 40 * MIN


def test_cycles_stretched_by_the_door_do_not_teach_the_usual_period() -> None:
    # Five quiet 40 min cycles, then five 60 min ones with a customer in each: the usual
    # period stays 40 min (all ten would make the median of the last eight 60 min).
    quiet, busy = cycles(0.0, 5, 40), cycles(200 * MIN, 5, 60, door=True)
    on = 500 * MIN  # 55 min after the last opening: settled
    (raised,) = feed(RuleEngine(), [*quiet, *busy, (on, "compressor", {"on": True})], 12 * HOUR)
    assert raised.at == on + 80 * MIN
    assert raised.data["usual_cycle_s"] == 40 * MIN


def test_nothing_learned_from_busy_cycles_alone_unless_the_period_is_configured() -> None:
    events = [*cycles(0.0, 6, 60, door=True), (6 * HOUR, "compressor", {"on": True})]
    assert feed(RuleEngine(), events, 14 * HOUR) == []
    config = RulesConfig(fridges=(FridgeOverride(id=F, cycle_usual_min=45),))
    (raised,) = feed(RuleEngine(config), events, 14 * HOUR)
    assert raised.at == 6 * HOUR + 90 * MIN


def test_cycling_again_clears_it() -> None:
    events = [*QUIET, (STUCK_ON, "compressor", {"on": True}),
              (STUCK_ON + 2 * HOUR, "compressor", {"on": False})]
    raised, cleared = feed(RuleEngine(), events, STUCK_ON + 3 * HOUR)
    assert (raised.state, cleared.state) == ("raised", "cleared") and raised.id == cleared.id
    assert cleared.at == STUCK_ON + 2 * HOUR
    assert cleared.message.startswith("compressor cycling again after 2 h")
