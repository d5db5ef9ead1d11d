"""The simulator's line rate (`[sim] baud`): a direction carries baud / 10 bytes a second
(8N1), never saves up more than a FIFO's worth while idle."""

from __future__ import annotations

from hw_sim.ptylink import LineRate


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_busy_line_carries_baud_over_ten_bytes_a_second() -> None:
    clock = Clock()
    line = LineRate(115200, clock)
    carried = 0
    for _ in range(1000):  # looked at every millisecond with plenty waiting
        clock.t += 0.001
        carried += line.take(10_000)
    assert carried in range(11519, 11521)


def test_an_idle_line_saves_up_no_burst() -> None:
    clock = Clock()
    line = LineRate(115200, clock)
    clock.t += 10.0  # ten idle seconds
    assert line.take(1) == 1  # something was waiting: it goes
    assert line.take(1000) == LineRate.CAP  # the rest of the idle time is not a burst
    assert line.take(1000) == 0
    clock.t += 0.01
    assert line.take(1000) == 115  # 10 ms at 11,520 B/s
