"""A store stack whose part fails to come up stops what it had already started: a test's
fixture that fails in start() never reaches its stop(), and the broker and processes it
left behind used to run on for the rest of the test session."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from devstack.process import StackError
from devstack.stack import StoreStack


def _ours(root: Path) -> list[str]:
    """Processes whose command line names a file under `root`."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if any(str(root) in arg for arg in cmd):
            out.append(" ".join(cmd))
    return out


def test_a_cloud_that_cannot_start_leaves_no_broker_behind(tmp_path: Path) -> None:
    # The cloud's TOML gets an [alerts] table that is not TOML: it exits with a
    # configuration error after the broker is already running.
    stack = StoreStack(tmp_path / "store", cloud_alerts_toml="[alerts]\nbroken = = 1")
    with pytest.raises(StackError, match="cloud exited while starting"):
        stack.start()
    assert stack.broker is None
    assert _ours(tmp_path) == []
