"""Cold-chain rules on synthetic traces built in code: each rule fires within its delay and
not before, says so in plain words, clears with hysteresis, and stays quiet on a normal day."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence

import pytest

from edge.rules import AlertChange, RuleEngine, RulesConfig, Thresholds
from edge.rules.config import FridgeOverride
from xiaodian.wire.alert_text import describe, describe_end

MIN = 60.0
HOUR = 3600.0
F = "fridge-1"
Event = tuple[float, str, Mapping[str, object]]


def run(
    engine: RuleEngine,
    until: float,
    product: Callable[[float], float | None] | None,
    air: Callable[[float], float | None] | None = None,
    events: Sequence[Event] = (),
    start: float = 0.0,
    step: float = 10.0,
    fridge: str = F,
    statuses: Callable[[float], tuple[str | None, str | None]] | None = None,
) -> list[AlertChange]:
    """Ticks, events and readings every `step` seconds over [start, until)."""
    pending = sorted(events, key=lambda e: e[0])
    out: list[AlertChange] = []
    n = 0
    while (t := start + n * step) < until:
        out += engine.tick(t)
        while pending and pending[0][0] <= t:
            et, kind, data = pending.pop(0)
            out += engine.on_event(fridge, et, kind, data)
        a = air(t) if air else None
        p = product(t) if product else None
        sa, sp = statuses(t) if statuses else (None, None)
        out += engine.on_reading(fridge, t, a, p, sa, sp)
        n += 1
    for c in out:  # every change's data says it completely (xiaodian.wire.alert_text)
        said = (describe_end(c.rule, c.data, strict=True) if c.state == "cleared"
                else describe(c.rule, c.data, strict=True))
        assert str(said) == c.message, (c.message, c.data)
    return out


def ramp(points: Sequence[tuple[float, float]]) -> Callable[[float], float]:
    """Piecewise-linear temperature through (time, value) points."""

    def f(t: float) -> float:
        if t <= points[0][0]:
            return points[0][1]
        for (t0, v0), (t1, v1) in itertools.pairwise(points):
            if t <= t1:
                return v0 + (v1 - v0) * (t - t0) / (t1 - t0)
        return points[-1][1]

    return f


def only(changes: list[AlertChange], rule: str, state: str | None = None) -> list[AlertChange]:
    return [c for c in changes if c.rule == rule and (state is None or c.state == state)]


def assert_quiet(changes: list[AlertChange]) -> None:
    assert changes == [], [f"{c.state} {c.rule}: {c.message}" for c in changes]


# --- warm / hot / hard / freeze ------------------------------------------------------------


def test_warm_fires_after_30_min_above_5_and_clears_below_4_for_10_min() -> None:
    # 3 → 6 °C in 10 min, hold for an hour, back to 3 °C in 10 min.
    p = ramp(
        [(0, 3.0), (HOUR, 3.0), (HOUR + 10 * MIN, 6.0), (2 * HOUR, 6.0), (2 * HOUR + 10 * MIN, 3.0)]
    )
    changes = run(RuleEngine(), 4 * HOUR, p)
    warm = only(changes, "warm")
    assert [c.state for c in warm] == ["raised", "cleared"]
    raised, cleared = warm
    crossed = HOUR + 20 * MIN / 3  # 5 °C on the way up
    assert raised.severity == "warning" and raised.audience == "owner"
    assert crossed + 30 * MIN <= raised.at <= crossed + 30 * MIN + 10
    assert raised.started_at == pytest.approx(crossed, abs=10)
    assert raised.message == "product 6.0 °C, above 5 °C for 30 min"
    assert raised.data["limit_c"] == 5.0
    # Below 4 °C from 2 h + 6 min 40 s on; cleared 10 min later, not when it dips below 5.
    below4 = 2 * HOUR + 20 * MIN / 3
    assert below4 + 10 * MIN <= cleared.at <= below4 + 10 * MIN + 10
    assert cleared.message.startswith("product 3.0 °C, below 4 °C for 10 min")
    assert "peak 6.0 °C" in cleared.message and cleared.peak == 6.0
    assert raised.id == cleared.id == f"{F}/warm/{round(raised.started_at * 1000)}"
    assert not only(changes, "hot")


def test_warm_hovering_between_4_and_5_does_not_clear() -> None:
    p = ramp([(0, 3.0), (10 * MIN, 6.0), (HOUR, 6.0), (HOUR + 5 * MIN, 4.5)])
    changes = run(RuleEngine(), 5 * HOUR, p)
    assert [c.state for c in only(changes, "warm")] == ["raised"]


def test_short_excursion_is_not_an_alert() -> None:
    # 25 min above 5 °C (peak 7.5) is under every delay.
    p = ramp([(0, 3.0), (10 * MIN, 7.5), (25 * MIN, 7.5), (35 * MIN, 3.0)])
    assert_quiet(run(RuleEngine(), 3 * HOUR, p))


def test_hot_fires_after_15_min_above_8_as_critical() -> None:
    p = ramp([(0, 3.0), (20 * MIN, 8.6)])
    changes = run(RuleEngine(), 2 * HOUR, p)
    (hot,) = only(changes, "hot")
    crossed = 20 * MIN * 5 / 5.6
    assert crossed + 15 * MIN <= hot.at <= crossed + 15 * MIN + 10
    assert hot.severity == "critical" and hot.data["cause"] == "sustained"
    assert hot.message == "product 8.6 °C, above 8 °C for 15 min"


def test_hot_cumulative_4_h_in_24_h() -> None:
    # Five 50-minute spells at 5.6 °C, one every 3 hours: none reaches "hot" on its own,
    # the fifth spends the fourth hour of the day's budget.
    points: list[tuple[float, float]] = [(0, 3.0)]
    for k in range(5):
        s = k * 3 * HOUR + HOUR
        points += [(s, 3.0), (s + MIN, 5.6), (s + 51 * MIN, 5.6), (s + 52 * MIN, 3.0)]
    changes = run(RuleEngine(), 16 * HOUR, ramp(points))
    (hot,) = only(changes, "hot", "raised")
    assert hot.data["cause"] == "cumulative" and hot.severity == "critical"
    fifth = 12 * HOUR + HOUR
    # 4 × ~50 min before; the fifth spell is above 5 °C from about 0.7 min in.
    assert fifth + 35 * MIN < hot.at < fifth + 45 * MIN
    assert "in the last 24 h" in hot.message and "above 5 °C for 4 h" in hot.message
    assert len(only(changes, "warm", "raised")) == 5
    assert only(changes, "hot", "cleared")  # cleared once back below 4 °C


def test_hard_limit_product_at_once() -> None:
    p = ramp([(0, 3.0), (HOUR, 3.0), (HOUR + 10 * MIN, 13.0)])
    changes = run(RuleEngine(), 2 * HOUR, p)
    (hard,) = only(changes, "hard_limit")
    crossed = HOUR + 9 * MIN
    assert crossed < hard.at <= crossed + 10 and hard.severity == "critical"
    assert hard.message.endswith("above 12 °C") and hard.data["cause"] == "product"


def test_hard_limit_air_needs_10_min_with_the_door_closed() -> None:
    air = ramp([(0, 3.0), (HOUR, 3.0), (HOUR + 5 * MIN, 16.0)])
    # Door open from 1 h to 1 h 30: the air is warm but that is the door, not a failure.
    door = [(HOUR, "door", {"open": True}), (HOUR + 30 * MIN, "door", {"open": False})]
    changes = run(RuleEngine(), 2 * HOUR, lambda t: 3.0, air, door)
    (hard,) = only(changes, "hard_limit")
    closed = HOUR + 30 * MIN
    assert closed + 10 * MIN <= hard.at <= closed + 10 * MIN + 10
    assert hard.message == "air 16.0 °C, above 15 °C for 10 min with the door closed"


def test_freeze_warning_then_critical_is_an_update() -> None:
    p = ramp([(0, 3.0), (10 * MIN, -1.0), (2 * HOUR, -1.0), (2 * HOUR + 5 * MIN, -2.5)])
    changes = run(RuleEngine(), 4 * HOUR, p)
    freeze = only(changes, "freeze")
    assert [(c.state, c.severity) for c in freeze] == [
        ("raised", "warning"),
        ("updated", "critical"),
    ]
    below = 10 * MIN * 3.5 / 4.0
    assert below + HOUR <= freeze[0].at <= below + HOUR + 10
    assert freeze[0].message == "product -1.0 °C, below -0.5 °C for 1 h"
    assert freeze[0].id == freeze[1].id
    crit_from = 2 * HOUR + 5 * MIN / 1.5  # -2 °C is reached 3 min 20 s into the fall
    assert crit_from + 30 * MIN <= freeze[1].at <= crit_from + 30 * MIN + 10
    assert freeze[1].peak == -2.5


# --- door, power, link ------------------------------------------------------------------


def test_door_buzzer_owner_escalate_and_close() -> None:
    door = [(HOUR, "door", {"open": True}), (HOUR + 16 * MIN, "door", {"open": False})]
    changes = run(RuleEngine(), 2 * HOUR, lambda t: 3.0, lambda t: 4.0, door)
    steps = [(c.state, c.severity, c.audience, c.at - HOUR) for c in only(changes, "door")]
    assert steps == [
        ("raised", "warning", "terminal", 3 * MIN),
        ("updated", "warning", "owner", 5 * MIN),
        ("updated", "critical", "owner", 15 * MIN),
        ("cleared", "critical", "owner", 16 * MIN),
    ]
    assert only(changes, "door")[0].message == "door open for 3 min (buzzer at the terminal)"
    assert only(changes, "door")[-1].message == "door closed after 16 min"


def test_door_timers_run_on_ticks_between_sparse_readings() -> None:
    engine = RuleEngine()
    engine.on_reading(F, 0.0, 4.0, 3.0)
    engine.on_event(F, 10.0, "door", {"open": True})
    assert engine.tick(189.0) == []
    (buzz,) = engine.tick(200.0)
    assert (buzz.state, buzz.audience, buzz.at) == ("raised", "terminal", 190.0)


def test_frequent_short_door_openings_are_quiet() -> None:
    door: list[Event] = []
    for k in range(40):
        s = k * 6 * MIN + 30
        door += [(s, "door", {"open": True}), (s + 150, "door", {"open": False})]
    air = lambda t: 9.0 if any(e[2]["open"] and e[0] <= t < e[0] + 150 for e in door) else 3.5  # noqa: E731
    assert_quiet(run(RuleEngine(), 4 * HOUR, lambda t: 3.2, air, door))


def test_mains_lost_at_once_escalated_at_30_min_restored_tells() -> None:
    power = [(HOUR, "power", {"mains": False}), (HOUR + 40 * MIN, "power", {"mains": True})]
    changes = run(RuleEngine(), 2 * HOUR, lambda t: 3.0, None, power)
    steps = [(c.state, c.severity, c.at - HOUR) for c in only(changes, "mains")]
    assert steps == [
        ("raised", "warning", 0.0),
        ("updated", "critical", 30 * MIN),
        ("cleared", "critical", 40 * MIN),
    ]
    assert only(changes, "mains")[-1].message == "mains power restored after 40 min"


def test_link_lost_after_10_min_and_back_when_data_resumes() -> None:
    engine = RuleEngine()
    run(engine, HOUR, lambda t: 3.0)
    last = HOUR - 10
    ticks = [c for t in range(int(HOUR), int(HOUR + 20 * MIN), 10) for c in engine.tick(float(t))]
    (lost,) = ticks
    assert (lost.rule, lost.state, lost.at, lost.started_at) == (
        "link",
        "raised",
        last + 10 * MIN,
        last,
    )
    assert lost.message == "monitoring offline: no data for 10 min"
    back = engine.on_reading(F, HOUR + 20 * MIN, None, 3.0)
    assert [(c.rule, c.state) for c in back] == [("link", "cleared")]
    assert back[0].message.startswith("monitoring back after 20 min")


def test_backfill_after_an_outage_is_re_evaluated() -> None:
    # The link drops at 1 h for 70 min; the fridge warms to 6 °C meanwhile and its logged
    # readings arrive after reconnection. The warm alert is raised late, with its real start.
    engine = RuleEngine()
    p = ramp([(0, 3.0), (HOUR + 5 * MIN, 3.0), (HOUR + 15 * MIN, 6.0)])
    run(engine, HOUR, p)
    offline = [c for t in range(int(HOUR), int(HOUR + 70 * MIN), 10) for c in engine.tick(float(t))]
    assert [(c.rule, c.state) for c in offline] == [("link", "raised")]
    now = HOUR + 70 * MIN
    engine.tick(now)
    backfill = run(engine, now + 10, p, start=HOUR)  # the backlog, then live again
    warm = only(backfill, "warm", "raised")
    assert len(warm) == 1 and warm[0].late
    crossed = HOUR + 5 * MIN + 10 * MIN * 2 / 3
    assert warm[0].started_at == pytest.approx(crossed, abs=10)
    assert warm[0].at == pytest.approx(crossed + 30 * MIN, abs=10)
    (back,) = only(backfill, "link", "cleared")
    late_records = back.data["late_records"]
    assert "late records re-evaluated" in back.message
    assert isinstance(late_records, int) and late_records >= 300
    assert [a.rule for a in engine.active()] == ["warm"]


def test_backfill_withdraws_an_extrapolated_door_alert() -> None:
    # The door was open when the link dropped; ticks assume it still is and escalate.
    # The backlog shows it closed after 2 min: the alert is cleared with that explanation.
    engine = RuleEngine()
    run(engine, HOUR, lambda t: 3.0)
    engine.on_event(F, HOUR, "door", {"open": True})
    ticked = [c for t in range(int(HOUR), int(HOUR + 20 * MIN), 10) for c in engine.tick(float(t))]
    assert ("door", "updated", "critical") in [(c.rule, c.state, c.severity) for c in ticked]
    late = engine.on_event(F, HOUR + 2 * MIN, "door", {"open": False})
    (cleared,) = only(late, "door")
    assert cleared.state == "cleared" and cleared.message == "door closed after 2 min"


def test_out_of_order_records_are_merged_and_re_evaluated() -> None:
    # Readings from 1 h to 2 h arrive after everything else: a 50 min warm spell in them
    # is raised and cleared, late, with the same id a timely run gives.
    p = ramp(
        [(0, 3.0), (HOUR, 3.0), (HOUR + 5 * MIN, 6.0), (HOUR + 55 * MIN, 6.0), (2 * HOUR, 3.0)]
    )
    timely = only(run(RuleEngine(), 4 * HOUR, p), "warm")
    engine = RuleEngine()
    held_back: list[float] = []
    for n in range(int(4 * HOUR / 10)):
        t = n * 10.0
        if HOUR <= t < 2 * HOUR:
            held_back.append(t)
        else:
            engine.on_reading(F, t, None, p(t))
    late = [c for t in held_back for c in engine.on_reading(F, t, None, p(t))]
    warm = only(late, "warm")
    assert [c.state for c in warm] == ["raised", "cleared"]
    assert all(c.late for c in warm)
    assert [c.id for c in warm] == [c.id for c in timely]
    assert engine.counters["merged_out_of_order"] == len(held_back)
    assert engine.active() == []


def test_records_older_than_the_horizon_are_dropped_and_counted() -> None:
    engine = RuleEngine(RulesConfig(reorder_horizon_h=1.0))
    run(engine, 5 * HOUR, lambda t: 3.0)
    assert engine.on_reading(F, 10.0, None, 20.0) == []
    assert engine.counters["dropped_too_late"] == 1


# --- probes ---------------------------------------------------------------------------------


def test_lone_85_at_power_up_is_discarded() -> None:
    engine = RuleEngine()
    first = engine.on_reading(F, 0.0, 85.0, 85.0, "suspect", "ok")
    rest = run(engine, 2 * HOUR, lambda t: 3.0, lambda t: 3.5, start=10.0)
    assert_quiet(first + rest)
    assert engine.product_like_c(F) == 3.0


def test_probe_stuck_at_85_is_a_fault() -> None:
    changes = run(RuleEngine(), 10 * MIN, lambda t: 3.0, lambda t: 85.0)
    (fault,) = only(changes, "probe_fault")
    assert fault.at == 60.0 and fault.severity == "critical"
    assert fault.data == {"reason": "probe_fault", "probe": "air", "fault": "power_on_value",
                          "value_c": 85.0}


@pytest.mark.parametrize("status", ["missing", "crc"])
def test_disconnected_probe_after_a_minute_and_a_single_glitch_ignored(status: str) -> None:
    glitch = run(
        RuleEngine(),
        HOUR,
        lambda t: 3.0,
        None,
        statuses=lambda t: (None, status if t == 600 else None),
    )
    assert_quiet(glitch)
    broken = run(
        RuleEngine(),
        HOUR,
        lambda t: 3.0 if t < 600 else None,
        None,
        statuses=lambda t: (None, "ok" if t < 600 else status),
    )
    (fault,) = only(broken, "probe_fault")
    assert fault.at == 660.0 and fault.message == f"product probe disconnected (status {status})"


def test_out_of_range_probe() -> None:
    changes = run(RuleEngine(), HOUR, lambda t: 3.0 if t < 600 else -55.0, lambda t: 4.0)
    (fault,) = only(changes, "probe_fault")
    assert fault.data["fault"] == "out_of_range" and fault.at == 660.0
    assert "outside -40 °C…60 °C" in fault.message


def test_short_spike_is_dropped_but_a_jump_that_stays_is_a_fault() -> None:
    spike = run(RuleEngine(), HOUR, lambda t: 9.5 if 600 <= t < 630 else 3.0, lambda t: 4.0)
    assert_quiet(spike)
    jump = run(RuleEngine(), HOUR, lambda t: 9.5 if t >= 600 else 3.0, lambda t: 4.0)
    (raised,) = only(jump, "probe_fault", "raised")
    assert raised.data["fault"] == "jump" and raised.at == 660.0
    assert raised.message == "product probe jumped from 3.0 °C to 9.5 °C"


def test_flatline_while_the_other_probe_moves() -> None:
    air = lambda t: 3.0 + 2.0 * math.sin(2 * math.pi * t / (40 * MIN))  # noqa: E731
    changes = run(RuleEngine(), 6 * HOUR, lambda t: 3.0, air, step=30.0)
    (fault,) = only(changes, "probe_fault")
    assert fault.data["fault"] == "flatline" and fault.data["probe"] == "product"
    assert 4 * HOUR <= fault.at <= 4 * HOUR + 2 * MIN
    # A steady fridge whose two probes both sit still is not a flatline.
    assert_quiet(run(RuleEngine(), 6 * HOUR, lambda t: 3.0, lambda t: 3.5, step=30.0))


def test_air_and_product_disagreeing_for_two_hours() -> None:
    changes = run(RuleEngine(), 3 * HOUR, lambda t: 3.0, lambda t: 12.0, step=30.0)
    (raised,) = only(changes, "probe_disagree")
    assert raised.severity == "warning" and 2 * HOUR <= raised.at <= 2 * HOUR + 30
    assert raised.message == "air 12.0 °C and product 3.0 °C differ by 9.0 °C for 2 h"


def test_product_like_temperature_filters_the_air_probe_without_a_buffered_probe() -> None:
    engine = RuleEngine()
    run(engine, HOUR, None, lambda t: 3.0)
    run(engine, HOUR + 20 * MIN, None, lambda t: 13.0, start=HOUR)
    # 20 min at 13 °C through a 20 min filter: 3 + 10 (1 - 1/e) ≈ 9.3 °C, not 13.
    assert engine.product_like_c(F) == pytest.approx(3 + 10 * (1 - math.exp(-1)), abs=0.1)


# --- defrost, drift ---------------------------------------------------------------------------


def _defrost_air(start: float, minutes: float, peak: float) -> Callable[[float], float]:
    end = start + minutes * MIN
    return ramp(
        [(0, 3.0), (start, 3.0), (end, peak), (end + 10 * MIN, peak - 5), (end + 35 * MIN, 3.0)]
    )


def test_defrost_suppresses_warm_but_overrun_is_an_alert() -> None:
    # Air-probe-only fridge: a 25 min defrost to 12 °C pushes the filtered temperature over
    # 5 °C for longer than 30 min (peak 7.9 °C), inside the recovery window: no warm alert.
    air = _defrost_air(HOUR, 25, 12.0)
    defrost = [(HOUR, "defrost", {"active": True}), (HOUR + 25 * MIN, "defrost", {"active": False})]
    quiet = run(RuleEngine(), 4 * HOUR, None, air, defrost)
    assert_quiet(quiet)
    unsuppressed = run(RuleEngine(), 4 * HOUR, None, air)
    assert only(unsuppressed, "warm", "raised")
    # A heater stuck for 50 min: the overrun is an alert of its own.
    stuck = [(HOUR, "defrost", {"active": True}), (HOUR + 50 * MIN, "defrost", {"active": False})]
    overrun = only(
        run(RuleEngine(), 4 * HOUR, None, _defrost_air(HOUR, 50, 8.0), stuck), "defrost_overrun"
    )
    assert [(c.state, c.at - HOUR) for c in overrun] == [
        ("raised", 45 * MIN),
        ("cleared", 50 * MIN),
    ]
    assert overrun[0].message == "defrost running for 45 min, limit 45 min"


def test_defrost_suppression_is_capped_at_90_min() -> None:
    # A defrost that never ends and a fridge that stays warm: warm is held back only to the cap.
    p = ramp([(0, 3.0), (HOUR, 3.0), (HOUR + 10 * MIN, 6.0)])
    changes = run(RuleEngine(), 4 * HOUR, p, None, [(HOUR, "defrost", {"active": True})])
    (warm,) = only(changes, "warm", "raised")
    assert HOUR + 90 * MIN <= warm.at <= HOUR + 90 * MIN + 10


def test_defrost_never_suppresses_hot() -> None:
    p = ramp([(0, 3.0), (HOUR, 3.0), (HOUR + 10 * MIN, 9.0)])
    changes = run(RuleEngine(), HOUR + 85 * MIN, p, None, [(HOUR, "defrost", {"active": True})])
    (hot,) = only(changes, "hot", "raised")
    assert hot.at < HOUR + 30 * MIN
    assert not only(changes, "warm")  # held back until the 90 min cap


def test_drift_24_h_mean_above_set_point_plus_1_5() -> None:
    changes = run(RuleEngine(), 26 * HOUR, lambda t: 4.8, step=60.0)
    (drift,) = only(changes, "drift")
    assert drift.severity == "warning"
    assert 17.5 * HOUR <= drift.at <= 18 * HOUR + 10 * MIN  # needs 75 % of the window
    assert drift.message == "24 h mean 4.8 °C, above set point 3 °C + 1.5 °C"
    assert_quiet(run(RuleEngine(), 26 * HOUR, lambda t: 4.3, step=60.0))


def test_no_compressor_cycling_for_twice_the_usual_period() -> None:
    events: list[Event] = []
    for k in range(6):  # on 20 min, off 20 min: a 40 min cycle
        events += [
            (k * 40 * MIN, "compressor", {"on": True}),
            (k * 40 * MIN + 20 * MIN, "compressor", {"on": False}),
        ]
    events.append((6 * 40 * MIN, "compressor", {"on": True}))  # and then it never stops
    changes = run(RuleEngine(), 8 * HOUR, lambda t: 3.0, None, events)
    (cyc,) = only(changes, "cycling")
    assert cyc.at == 6 * 40 * MIN + 80 * MIN
    assert cyc.message == "compressor on for 1 h 20 min without cycling, usual cycle 40 min"


# --- a normal day ---------------------------------------------------------------------------


def _normal_day(with_product_probe: bool) -> list[AlertChange]:
    """24 h of a busy chilled cabinet: compressor cycling (air 2-4.5 °C), a door opening
    every 8 min for 20-70 s (air up to 10 °C), a 25 min defrost every 6 h (air to 9 °C)."""
    events: list[Event] = []
    door_open: list[tuple[float, float]] = []
    for k in range(int(24 * HOUR / (8 * MIN))):
        s = k * 8 * MIN + 100
        d = 20 + (k * 37) % 50
        door_open.append((s, s + d))
        events += [(s, "door", {"open": True}), (s + d, "door", {"open": False})]
    defrosts = [h * HOUR + 2 * HOUR for h in (0, 6, 12, 18)]
    for s in defrosts:
        events += [(s, "defrost", {"active": True}), (s + 25 * MIN, "defrost", {"active": False})]
    for k in range(int(24 * HOUR / (40 * MIN))):
        events += [
            (k * 40 * MIN, "compressor", {"on": True}),
            (k * 40 * MIN + 22 * MIN, "compressor", {"on": False}),
        ]

    def air(t: float) -> float:
        for s in defrosts:
            if s <= t < s + 35 * MIN:
                return min(9.0, 3.0 + (t - s) / (25 * MIN) * 6.0) if t < s + 25 * MIN else 4.0
        if any(a <= t < b for a, b in door_open):
            return 10.0
        phase = (t % (40 * MIN)) / (40 * MIN)
        return 4.5 - 2.5 * phase if phase < 0.55 else 2.0 + 2.5 * (phase - 0.55) / 0.45

    buffered = {"v": 3.2, "t": 0.0}

    def product(t: float) -> float:  # the glycol probe: air through a 15 min lag
        dt = t - buffered["t"]
        buffered["v"] += (air(t) - buffered["v"]) * (1 - math.exp(-dt / (15 * MIN)))
        buffered["t"] = t
        return round(buffered["v"] * 16) / 16  # DS18B20 steps

    return run(RuleEngine(), 24 * HOUR, product if with_product_probe else None, air, events)


@pytest.mark.parametrize("with_product_probe", [True, False])
def test_a_normal_day_with_doors_and_defrosts_raises_nothing(with_product_probe: bool) -> None:
    assert_quiet(_normal_day(with_product_probe))


def test_per_fridge_override_changes_only_that_fridge() -> None:
    config = RulesConfig(fridges=(FridgeOverride(id="drinks", warm_above_c=7.0),))
    engine = RuleEngine(config)
    p = ramp([(0, 3.0), (10 * MIN, 6.0)])
    changes = run(engine, 2 * HOUR, p) + run(engine, 2 * HOUR, p, fridge="drinks")
    assert [c.fridge for c in only(changes, "warm")] == [F]
    assert config.for_fridge("drinks").warm_above_c == 7.0
    assert config.for_fridge("drinks").hot_above_c == Thresholds().hot_above_c


def test_bad_event_data_is_refused_before_it_is_recorded() -> None:
    engine = RuleEngine()
    with pytest.raises(ValueError, match="'open'"):
        engine.on_event(F, 0.0, "door", {"open": "yes"})
    with pytest.raises(ValueError, match="finite"):
        engine.on_reading(F, math.nan, 3.0)
    assert engine.on_event(F, 0.0, "scan", {"line": "x"}) == []
