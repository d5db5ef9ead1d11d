"""Fixtures of the cloud tests (beside tests/conftest.py's broker and databases)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import resident_world as rw


@pytest.fixture
def town(tmp_path: Path) -> Iterator[rw.Town]:
    """The resident town (resident_world) on SQLite, served over HTTP. Modules that need
    more (PostgreSQL too, a payment provider) define their own."""
    world = rw.build(tmp_path)
    with rw.serve(world) as town:
        yield town

