"""The order cycle's pure core: which wave an order rides, the steps, pre-sale minimums."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from cloud_gateway.supply.cycles import (
    CycleError,
    Schedule,
    below_minimum,
    parse_hhmm,
    step,
    takes_orders,
)


def at(y: int, mo: int, d: int, h: int, mi: int = 0) -> float:
    """A UTC instant as unix seconds (Shanghai is UTC+8, no DST)."""
    return datetime(y, mo, d, h, mi, tzinfo=UTC).timestamp()


def test_an_order_before_the_local_cutoff_rides_that_days_wave() -> None:
    s = Schedule()  # 23:00 Asia/Shanghai, next day
    assert s.wave_of(at(2026, 12, 7, 14, 59)) == date(2026, 12, 7)  # 22:59 local
    assert s.wave_of(at(2026, 12, 7, 15, 0)) == date(2026, 12, 8)  # 23:00 local: next
    assert s.wave_of(at(2026, 12, 7, 16, 30)) == date(2026, 12, 8)  # 00:30 on the 8th
    assert s.cutoff_at(date(2026, 12, 7)) == at(2026, 12, 7, 15, 0)
    assert s.delivery(date(2026, 12, 7)) == date(2026, 12, 8)
    opens, closes = s.pickup_window(date(2026, 12, 7))
    assert (opens, closes) == (at(2026, 12, 8, 0), at(2026, 12, 8, 13))  # 08:00-21:00 local
    assert s.seconds_to_cutoff(date(2026, 12, 7), at(2026, 12, 7, 14, 0)) == 3600
    assert s.seconds_to_cutoff(date(2026, 12, 7), at(2026, 12, 7, 16, 0)) == 0


def test_a_zone_in_another_time_zone_cuts_off_at_its_own_clock() -> None:
    s = Schedule(cutoff=time(20, 30), tz="Asia/Urumqi", lead_time_days=2)  # UTC+6
    assert s.wave_of(at(2026, 12, 7, 14, 29)) == date(2026, 12, 7)
    assert s.wave_of(at(2026, 12, 7, 14, 30)) == date(2026, 12, 8)
    assert s.delivery(date(2026, 12, 7)) == date(2026, 12, 9)


def test_bad_timetables_are_refused_clearly() -> None:
    with pytest.raises(CycleError, match="tz"):
        Schedule(tz="Mars/Olympus")
    with pytest.raises(CycleError, match="window"):
        Schedule(pickup_from=time(21, 0), pickup_until=time(8, 0))
    with pytest.raises(CycleError, match="HH:MM"):
        parse_hhmm("23h", "cutoff")
    with pytest.raises(CycleError, match="HH:MM"):
        parse_hhmm("25:00", "cutoff")


def test_a_cycle_moves_forward_one_step_and_a_repeat_changes_nothing() -> None:
    assert step("open", "cutoff") is True
    assert step("planned", "picked") is True
    assert step("planned", "planned") is False  # run twice: nothing to do
    assert step("dispatched", "cutoff") is False  # already past it
    with pytest.raises(CycleError, match="next is cutoff"):
        step("open", "planned")
    with pytest.raises(CycleError, match="one of"):
        step("open", "shipped")


def test_orders_are_taken_only_while_open_and_before_the_cutoff() -> None:
    assert takes_orders("open", 100.0, 99.9)
    assert not takes_orders("open", 100.0, 100.0)
    assert not takes_orders("cutoff", 100.0, 50.0)  # closed early by the operator


def test_pre_sale_lines_under_their_minimum_are_cancelled() -> None:
    minimums = {"a": 10, "b": 10, "c": 0, "d": 5}
    totals = {"a": 9, "b": 10, "c": 1}
    # a misses by one; b reaches it; c has no minimum; d was not ordered at all.
    assert below_minimum(totals, minimums) == ["a"]
