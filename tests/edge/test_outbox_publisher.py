"""The outbox publisher's decisions (edge/outbox_publisher.py); the path itself is run end
to end by test_edge_agent.py, test_edge_budget.py and tests/e2e."""

from __future__ import annotations

from edge.outbox_publisher import alerts_first, longer_wait, routine, take, unconfirmed_cap


def test_alerts_go_first_and_the_rest_keep_their_order() -> None:
    streams = [("events", "fridge-1"), ("readings", "fridge-1"), ("events", "alerts"),
               ("events", "ledger")]
    assert alerts_first(streams) == [("events", "alerts"), ("events", "fridge-1"),
                                     ("readings", "fridge-1"), ("events", "ledger")]


def test_routine_streams_wait_for_the_readings_interval() -> None:
    fridges = {"fridge-1"}
    assert routine(("readings", "fridge-9"), fridges)
    assert routine(("events", "fridge-1"), fridges)  # doors, compressor
    assert routine(("events", "health"), fridges)  # hourly vitals
    assert not routine(("events", "alerts"), fridges)
    assert not routine(("events", "ledger"), fridges)


def test_the_cap_limits_a_batch_and_at_the_cap_only_sent_readings_go_again() -> None:
    assert take(500, None) == (500, False)  # not readings: no cap
    assert take(500, 120) == (120, False)
    assert take(50, 120) == (50, False)
    assert take(500, 0) == (500, True)
    assert take(500, -3) == (500, True)  # more out than a since-lowered cap allows


def test_the_cap_is_a_quarter_of_the_disk_budget_over_the_fridges() -> None:
    assert unconfirmed_cap(5000, 512.0, 4) == 5000
    assert unconfirmed_cap(5000, 0.5, 2) == 500_000 // 4 // 200 // 2
    assert unconfirmed_cap(5000, 0.0001, 0) == 1  # never nothing at all


def test_the_wait_for_receipts_doubles_up_to_the_timeout() -> None:
    assert longer_wait(3.0, 30.0) == 6.0
    assert longer_wait(24.0, 30.0) == 30.0
