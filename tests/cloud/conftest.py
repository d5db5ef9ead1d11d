"""Fixtures of the cloud tests (beside tests/conftest.py's broker and databases)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import resident_world as rw
from webhook_receiver import Receiver


@pytest.fixture
def town(tmp_path: Path) -> Iterator[rw.Town]:
    """The resident town (resident_world) on SQLite, served over HTTP. Modules that need
    more (PostgreSQL too, a payment provider) define their own."""
    world = rw.build(tmp_path)
    with rw.serve(world) as town:
        yield town


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    """`receiver(fail=0)`: a webhook endpoint (webhook_receiver.Receiver) on loopback,
    closed after the test."""
    made: list[Receiver] = []

    def make(fail: int = 0) -> Receiver:
        made.append(Receiver(fail))
        return made[-1]

    yield make
    for r in made:
        r.close()
