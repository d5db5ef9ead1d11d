"""The maintenance rules (cloud_gateway/maintenance.py) on hand-built hourly vitals: each
fires on its fault and stays silent on normal data, weekday and door variation included."""

from __future__ import annotations

from vitals_series import DAYS, H0, series

from cloud_gateway import maintenance as m
from xiaodian.wire.health import Vitals


def _first(vs: list[Vitals], rule: str) -> int | None:
    """The first day count (from 8, a week of baseline) after which `rule` finds: judged
    at the last hour of day index day - 1."""
    for day in range(8, len(vs) // 24 + 1):
        now = H0 + day * 24 - 1
        if any(f.rule == rule for f in m.evaluate(vs, now)):
            return day
    return None


def _silent(vs: list[Vitals]) -> list[tuple[int, str]]:
    return [(day, f.key) for day in range(8, len(vs) // 24 + 1)
            for f in m.evaluate(vs, H0 + day * 24 - 1)]


def test_normal_data_with_weekday_and_door_variation_is_silent() -> None:
    for seed in range(1, 4):
        assert _silent(series(seed=seed)) == []


def test_a_busy_fortnight_raises_duty_but_no_alert() -> None:
    # Two and a half times the door traffic (a holiday) raises the duty cycle by door
    # activity only: a plain week-against-baseline comparison would alarm.
    busy = series(busy=lambda d: 2.5 if d >= 21 else 1.0)

    def mean(vs: list[Vitals]) -> float:
        return sum(v.duty or 0.0 for v in vs) / len(vs)

    assert mean(busy[-168:]) > 1.1 * mean(busy[-840:-168])
    assert _first(busy, "duty_rising") is None


def test_duty_rising_fires_on_fouling_and_clears_with_hysteresis() -> None:
    vs = series(duty_extra=lambda d: 0.0 if d < 21 else 0.01 * (d - 20))
    day = _first(vs, "duty_rising")
    assert day is not None and 25 <= day <= 31, day
    f = m.duty_rising(vs, H0 + DAYS * 24 - 1)
    assert f is not None and f.evidence["rise_pct"] >= 10
    # A small rise (7 %) does not raise an alert, but keeps an open one.
    small = series(duty_extra=lambda d: 0.0 if d < 28 else 0.045)
    assert m.duty_rising(small, H0 + DAYS * 24 - 1) is None
    assert m.duty_rising(small, H0 + DAYS * 24 - 1, active=True) is not None


def test_defrost_timeouts_need_a_termination_probe() -> None:
    iced = series(defrost_end=lambda d, i: "timeout" if d >= 30 and i % 2 else "temperature")
    assert _first(iced, "defrost_timeouts") == 31
    # A controller without a termination probe ends every defrost on its timer: silent.
    timer_only = series(defrost_end=lambda d, i: "timeout")
    assert _first(timer_only, "defrost_timeouts") is None
    # One timeout in a day is not yet a pattern.
    once = series(defrost_end=lambda d, i: "timeout" if i % 4 == 0 else "temperature")
    assert _first(once, "defrost_timeouts") is None


def test_pulldown_trending_up_fires_and_a_flat_slow_week_does_not() -> None:
    slower = series(pull_s=lambda d: 240.0 if d < 26 else 240.0 + 30 * (d - 25))
    day = _first(slower, "pulldown_slower")
    assert day is not None and 28 <= day <= 32, day
    f = m.pulldown_slower(slower, H0 + DAYS * 24 - 1)
    assert f is not None and f.evidence["slope_s_per_day"] > 0
    # Noise alone (another seed, the same 240 s) never reads as a trend.
    assert _first(series(seed=7), "pulldown_slower") is None


def test_intermittent_probe_fires_but_one_long_outage_does_not() -> None:
    flaky = series(dropouts=lambda d, h: 2 if d >= 25 and h in (3, 15) else 0)
    day = _first(flaky, "probe_dropouts")
    assert day == 27, day  # the third episode: day index 26, 03:00 (judged at its end)
    (f,) = [f for f in m.evaluate(flaky, H0 + DAYS * 24 - 1) if f.rule == "probe_dropouts"]
    assert f.key == "probe_dropouts:0" and f.evidence["episodes"] >= 3
    # Unplugged for 4 hours once: the cold-chain probe fault's business, one episode.
    outage = series(dropouts=lambda d, h: 300 if d == 25 and 8 <= h < 12 else 0)
    assert _first(outage, "probe_dropouts") is None
    # A dead probe (most readings missing) is not "intermittent".
    dead = series(dropouts=lambda d, h: 300 if d >= 25 else 0)
    assert _first(dead, "probe_dropouts") is None


def test_open_dropout_clears_after_quiet_days() -> None:
    flaky = series(dropouts=lambda d, h: 2 if 20 <= d < 23 and h in (3, 15) else 0)
    now = H0 + 27 * 24 - 1  # four quiet days after the last dropout
    assert m.probe_dropouts(flaky, now, active=(0,)) == []
    assert m.probe_dropouts(flaky, H0 + 24 * 24 - 1, active=(0,)) != []


def test_too_little_history_judges_nothing() -> None:
    vs = series(days=5, duty_extra=lambda d: 0.3 * d)
    assert m.evaluate(vs, H0 + 5 * 24 - 1) == []
