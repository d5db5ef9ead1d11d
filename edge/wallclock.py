"""The terminal's wall clock and whether the kernel believes it is synchronised (NTP).

A record stamped by an unsynchronised clock is kept, but marked, so the cloud can correct
it instead of trusting it. The kernel's view comes from adjtimex(2): TIME_ERROR means the
clock is not synchronised.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import time
from collections.abc import Callable

_TIME_ERROR = 5


@functools.cache
def _libc() -> ctypes.CDLL | None:
    # Looked up once: find_library runs `ldconfig -p` in a child process, which a reader
    # thread must not do every recheck (a fork of a threaded process, each time).
    libc_name = ctypes.util.find_library("c")
    return None if libc_name is None else ctypes.CDLL(libc_name, use_errno=True)


def _kernel_says_synced() -> bool:
    libc = _libc()
    if libc is None:
        return False
    buf = ctypes.create_string_buffer(512)  # struct timex is ~208 bytes; modes=0 only reads
    state = libc.adjtimex(buf)
    return state not in (-1, _TIME_ERROR)


class WallClock:
    """Wall time plus a cached synchronisation flag (re-read every `recheck_s`)."""

    def __init__(
        self,
        now: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        synced: Callable[[], bool] = _kernel_says_synced,
        recheck_s: float = 10.0,
    ) -> None:
        self._now = now
        self._monotonic = monotonic
        self._synced = synced
        self._recheck_s = recheck_s
        self._checked_at: float | None = None
        self._last = False

    def read(self) -> tuple[float, bool]:
        mono = self._monotonic()
        if self._checked_at is None or mono - self._checked_at >= self._recheck_s:
            try:
                self._last = self._synced()
            except OSError:
                self._last = False
            self._checked_at = mono
        return self._now(), self._last
