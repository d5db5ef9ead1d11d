"""The maintenance bench, shortened (devstack.maintenance_bench, the core of
`python -m bench.maintenance`): a fouling condenser and a busy healthy cabinet for 24
simulated days, through the simulator, the terminal's vitals, the cloud's maintenance rules
and the edge's cold-chain rules. The full run (35 days, every slow fault) is the bench's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from devstack import maintenance_bench as mb

ROOT = Path(__file__).resolve().parents[2]


def test_shortened_bench_prints_the_lead_and_stays_silent_on_normal() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.maintenance", "--only", "condenser_fouling",
         "--only", "normal_busy_no_probe", "--days", "24", "--jobs", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    (fouling,) = [ln for ln in lines if ln.startswith("condenser_fouling ")]
    cells = [c.strip() for c in fouling.split("|")]
    assert cells[1] == "14.0" and cells[2].startswith("duty_rising@"), fouling
    day = float(cells[2].split("@")[1].split(",")[0])
    assert 14 < day < 24, fouling  # after the fault began, within the run
    # Before any cold-chain alert: none came in the 24 days, so the lead is at least the rest.
    assert cells[3] == "none in 24 d" and cells[4] == f">= {24 - day:.1f}", fouling
    (normal,) = [ln for ln in lines if ln.startswith("normal_busy_no_probe ")]
    assert [c.strip() for c in normal.split("|")][2] == "none", normal
    assert "0 maintenance alerts" in proc.stdout and "2 scenarios, 0 failed" in proc.stdout


def test_a_fault_whose_maintenance_alert_comes_late_fails() -> None:
    late = mb.FridgeRun("fridge-1", "condenser_fouling", 14.0, 27.0, [(27.0, "duty_rising")],
                        26.5, "warm/warning", 27.5)
    assert not mb.Outcome("x", [late], True).passed
    early = mb.FridgeRun("fridge-1", "condenser_fouling", 14.0, 20.0, [(20.0, "duty_rising")],
                         26.5, "warm/warning", 27.5)
    assert mb.Outcome("x", [early], True).passed and early.lead_d == 6.5
    noisy = mb.FridgeRun("fridge-1", "none", None, 3.0, [(3.0, "duty_rising")], None, "", 35.0)
    assert not mb.Outcome("x", [noisy], False).passed
