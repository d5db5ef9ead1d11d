"""The maintenance bench: each slow fault (hw_sim/scenarios/slow/) for weeks of simulated
time; how many days before the first cold-chain alert the first maintenance alert came,
and none on the normal scenarios.

    python -m bench.maintenance [--only NAME]... [--days D] [--jobs N]

The runs are `devstack.maintenance_bench` (shared with tests/e2e/test_maintenance_bench.py).
The baseline, measured in the same run, is the normal scenarios: their maintenance alerts
(must be 0) and cold-chain alerts. Exit 1 if a fault's maintenance alert did not come
before its cold-chain alert, or a normal scenario raised one.
"""

from __future__ import annotations

import argparse
import sys
import time

from devstack.maintenance_bench import Outcome, run_all


def _d(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def print_table(outcomes: list[Outcome]) -> None:
    head = ("scenario", "fault from day", "maintenance alert day (first: all)",
            "cold-chain alert day", "lead days", "ok")
    lines = [head]
    for o in outcomes:
        for r in o.runs:
            raised = ", ".join(f"{k}@{d:.1f}" for d, k in r.maintenance) or "none"
            cold = f"{_d(r.first_cold_chain_d)} {r.cold_chain}".strip() if r.cold_chain else (
                f"none in {r.days:.0f} d")
            lead = _d(r.lead_d) if r.first_cold_chain_d is not None else (
                f">= {_d(r.lead_d)}" if r.lead_d is not None else "-")
            lines.append((o.scenario, _d(r.fault_at_d), raised, cold, lead,
                          "yes" if o.passed else "NO"))
    widths = [min(max(len(line[i]) for line in lines), 70) for i in range(len(head))]
    for n, line in enumerate(lines):
        print(" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if n == 0:
            print("-+-".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.maintenance", description=__doc__)
    parser.add_argument("--only", action="append", help="a scenario (repeatable)")
    parser.add_argument("--days", type=float, help="simulated days (default: each scenario's)")
    parser.add_argument("--jobs", type=int, help="parallel processes (default: CPU count)")
    args = parser.parse_args(argv)
    if args.days is not None and not 1 <= args.days <= 120:
        parser.error("--days: between 1 and 120")
    t0 = time.monotonic()
    outcomes = run_all(args.only, args.days, args.jobs,
                       lambda s: print(s, file=sys.stderr, flush=True))
    took = time.monotonic() - t0
    if not outcomes:
        print(f"no slow scenario named {args.only!r}", file=sys.stderr)
        return 2
    print_table(outcomes)
    normal = [r for o in outcomes for r in o.runs if r.fault == "none"]
    faulty = [r for o in outcomes for r in o.runs if r.fault != "none"]
    leads = [r.lead_d for r in faulty if r.lead_d is not None]
    days = sum(r.days for o in outcomes for r in o.runs)
    print(f"\nbaseline (normal scenarios, same run): {len(normal)} fridges, "
          f"{sum(len(r.maintenance) for r in normal)} maintenance alerts, "
          f"{sum(r.first_cold_chain_d is not None for r in normal)} with a cold-chain alert")
    if leads:
        print(f"slow faults: {len(faulty)}, maintenance first in {len(leads)}, lead days "
              f"min {min(leads):.1f} / max {max(leads):.1f}")
    print(f"{days:.0f} simulated days in {took:.0f} s ({days / took * 24:.1f} simulated h "
          "per real s)")
    bad = [o.scenario for o in outcomes if not o.passed]
    print(f"{len(outcomes)} scenarios, {len(bad)} failed" + (f": {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
