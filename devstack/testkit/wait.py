"""The one poll-until-true of the tests and the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait(cond: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `cond` until it gives something true and return that; AssertionError naming
    `what` after `timeout` seconds (a bound for a hang, not a timing assertion). `cond` is
    called once more at the deadline, so a slow machine never fails a condition that holds."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
