from xiaodian.backoff import Backoff


def test_delays_grow_to_the_cap_and_reset() -> None:
    top = Backoff(0.5, 8.0, rand=lambda: 1.0)
    assert [top.next_delay() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    top.reset()
    assert top.next_delay() == 0.5


def test_jitter_stays_within_bounds() -> None:
    low = Backoff(0.5, 8.0, rand=lambda: 0.0)
    assert {low.next_delay() for _ in range(10)} == {0.5}
    mid = Backoff(1.0, 30.0, rand=lambda: 0.5)
    assert [mid.next_delay() for _ in range(4)] == [1.0, 1.5, 2.5, 4.5]
