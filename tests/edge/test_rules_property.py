"""Whatever finite readings and events arrive, in whatever order, the engine never raises
and its reported lifecycle stays consistent."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.rules import AlertChange, RuleEngine, RulesConfig
from xiaodian.i18n import translator
from xiaodian.wire.alert_text import describe, describe_end

temps = st.one_of(
    st.none(),
    st.floats(-200, 200, allow_nan=False, allow_infinity=False),
    st.sampled_from([85.0, -127.0, 3.0, 9.0]),
)
statuses = st.sampled_from([None, "ok", "crc", "missing", "suspect", "weird"])
reading = st.tuples(st.just("r"), temps, temps, statuses, statuses)
event = st.tuples(
    st.just("e"), st.sampled_from(["door", "compressor", "power", "defrost"]), st.booleans()
)
step = st.tuples(
    st.sampled_from(["fridge-1", "fridge-2"]),
    st.floats(-600, 3600, allow_nan=False),  # mostly forward, sometimes back in time
    st.one_of(reading, event, st.just(("tick",))),
)
FLAGS = {"door": "open", "compressor": "on", "power": "mains", "defrost": "active"}


@settings(max_examples=150, deadline=None)
@given(st.lists(step, max_size=120))
def test_arbitrary_input_never_raises_and_lifecycles_are_consistent(
    steps: list[tuple[str, float, tuple[object, ...]]],
) -> None:
    # Short delays so that alerts actually happen within a few hundred steps.
    config = RulesConfig(
        reorder_horizon_h=2.0,
        snapshot_every_min=10.0,
    )
    engine = RuleEngine(config)
    t = 0.0
    active: dict[str, AlertChange] = {}
    for fridge, dt, action in steps:
        t = max(0.0, t + dt)
        if action[0] == "r":
            _, air, product, sa, sp = action
            changes = engine.on_reading(fridge, t, air, product, sa, sp)  # type: ignore[arg-type]
        elif action[0] == "e":
            _, kind, flag = action
            changes = engine.on_event(fridge, t, str(kind), {FLAGS[str(kind)]: flag})
        else:
            changes = engine.tick(t)
        for c in changes:
            if c.state == "raised":
                assert c.id not in active, f"raised twice while active: {c.id}"
                active[c.id] = c
            else:
                assert c.id in active, f"{c.state} of an alert not active: {c.id}"
                if c.state == "updated":
                    assert c.severity == "critical" or c.audience == "owner"
                    active[c.id] = c
                else:
                    del active[c.id]
            assert c.message and c.id.startswith(f"{c.fridge}/")
            # Every change's data says its reason (and end) completely: the shared renderer
            # reads it strictly, its English is the message, and it renders in Chinese.
            said = (describe_end(c.rule, c.data, strict=True) if c.state == "cleared"
                    else describe(c.rule, c.data, strict=True))
            assert said is not None and str(said) == c.message, (c.message, c.data)
            assert translator("zh_CN").render(said)
        now = engine.active()
        assert len({a.id for a in now}) == len(now)
        assert {a.id for a in now} == set(active)
