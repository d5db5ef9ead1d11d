"""Fixtures of the end-to-end tests: whole stores as real processes (devstack/stack.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import StoreStack


@pytest.fixture
def store_stack(tmp_path: Path) -> Iterator[Callable[..., StoreStack]]:
    """`store_stack(**options)`: a StoreStack with these options in tmp_path/store, started;
    stopped when the test ends, whatever its outcome."""
    started: list[StoreStack] = []

    def start(**options: Any) -> StoreStack:
        stack = StoreStack(tmp_path / "store", **options)
        stack.start()  # a part that fails to come up stops those already running itself
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.stop()


@pytest.fixture
def stack(store_stack: Callable[..., StoreStack]) -> StoreStack:
    """The demo store with retail on (pickup key, command key, API token) at speed 60, as
    the retail and supply tests run it; a module that needs other options makes its own
    `stack` with `store_stack`."""
    return store_stack(speed=60, retail=True)
