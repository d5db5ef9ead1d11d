"""Benchmarks that cannot go stale: each smoke run must produce its figures, or fail.

The full runs stay in `make bench`; these small ones run with the suite, so a change that
breaks what a benchmark measures (or the benchmark itself) is seen the day it lands.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def _smoke(module: str, *args: str, timeout: float = 300) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_backlog_drain_smoke_empties_the_backlog_at_once() -> None:
    # The shipped agent once sent nothing for a whole readings interval (60 s) after
    # connecting; the smoke run's 20 s cap fails it then (exit 1, "FAILED ...").
    out = _smoke("bench.backlog_drain", "--smoke")
    shipped = next(line for line in out.splitlines() if line.startswith("agent (shipped"))
    cells = shipped.split()
    assert "2,000" in cells and "FAILED" not in out, out
