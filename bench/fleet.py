"""The largest fleet one broker, two workers and one PostgreSQL sustain: `python -m bench.fleet`.

Connects `--stores` stores (TLS sessions, a certificate each; 10,000 by default, the
target of issue 18) once, then steps the cadence up (`--speeds`: each store sends the
agent's 240-s bundle every 240/SPEED s, the load of STORES x SPEED stores at the real
cadence) for `--minutes` a step, stopping at the first step not sustained: something lost
or duplicated, a store not connected, or publish->receipt p99 over 2 s. Prints a row per
step with each process's CPU (percent of one core), then the largest sustained load and
where it bent: the busiest process at the step that failed (or at the last step).

Generator, broker, workers and PostgreSQL all run on this machine and share its cores: the
generator's own CPU is in every row, so its share can be read off. PostgreSQL is the
private test server (devstack.testkit.pg_server: fsync off, in /dev/shm), an upper bound
for a server writing to disk.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from devstack.fleet_run import FleetOptions, FleetReport, run_fleet_steps

from .common import Table, check_figures, note

DEFAULT_SPEEDS = "1,2,4,8"


def _row(r: FleetReport) -> list[object]:
    cpu = r.cpu
    workers = [v for k, v in cpu.items() if k.startswith("ingest-")]
    return [f"{r.stores}x{r.speed:g}", round(r.equivalent_stores), round(r.msgs_per_s, 1),
            round(r.readings_per_s), round(r.tls_bytes_per_s), round(r.p50_s, 3),
            round(r.p99_s, 3), round(r.db_p99_s, 3), round(r.lag_p99_s, 3), r.lost,
            r.duplicates, r.unconfirmed, round(cpu.get("broker", 0)),
            "+".join(str(round(w)) for w in workers), round(cpu.get("postgresql", 0)),
            round(cpu.get("generators", 0)), round(_others(r)), round(r.load_before, 1),
            "yes" if r.ok else "NO"]


def _others(r: FleetReport) -> float:
    """CPU the rest of the machine used in the window (other users of the host), % of a
    core."""
    return max(0.0, r.machine_cpu_pct * r.cores - sum(r.cpu.values()))


def _stalled(prev: FleetReport, r: FleetReport) -> list[str]:
    """Processes whose CPU grew by less than a fifth of the load's growth from `prev` to
    `r`: on a saturated machine the one that bends stops getting more CPU while work piles
    up for it, long before it shows 100 % of a core."""
    if not prev.msgs_per_s:
        return []
    load = r.msgs_per_s / prev.msgs_per_s
    return [f"{k} {prev.cpu[k]:.0f}->{v:.0f}%" for k, v in r.cpu.items()
            if prev.cpu.get(k) and v / prev.cpu[k] - 1 < (load - 1) / 5]


def _bend(r: FleetReport) -> str:
    busiest = max(r.cpu.items(), key=lambda kv: kv[1])
    ours = sum(r.cpu.values())
    gen = r.cpu.get("generators", 0.0)
    if not ours:
        return "no CPU measured"
    return (f"busiest: {busiest[0]} at {busiest[1]:.0f}% of a core; machine"
            f" {r.machine_cpu_pct:.0f}% busy over {r.cores} cores, {_others(r):.0f}% of a core"
            f" by other processes; generator {gen:.0f}% of a core = {100 * gen / ours:.0f}%"
            f" of the CPU the test used")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--stores", type=int, default=10_000, help="TLS sessions (default 10000)")
    ap.add_argument("--speeds", default=DEFAULT_SPEEDS,
                    help=f"cadence steps, tried in order (default {DEFAULT_SPEEDS})")
    ap.add_argument("--minutes", type=float, default=1.0, help="window per step (default 1)")
    ap.add_argument("--drain-s", type=float, default=60.0)
    ap.add_argument("--workdir", type=Path, default=None,
                    help="certificates are kept here between runs (default: a temporary"
                    " directory)")
    ap.add_argument("--smoke", action="store_true",
                    help="quick check (~30 s): 50 stores x 24 for 20 s; exits 1 unless"
                    " sustained")
    args = ap.parse_args(argv)
    if args.smoke:
        args.stores, args.speeds, args.minutes, args.drain_s = 50, "24", 20 / 60, 30.0
    print(f"fleet benchmark: generator, broker, 2 workers and PostgreSQL on this one machine"
          f" ({os.cpu_count()} cores); load average before: {os.getloadavg()[0]:.2f}",
          flush=True)
    speeds = [float(x) for x in args.speeds.split(",")]
    with tempfile.TemporaryDirectory(prefix="xiaodian-fleet-") as tmp:
        work = args.workdir or Path(tmp)
        reports = run_fleet_steps(FleetOptions(work, args.stores, args.minutes, speeds[0],
                                               drain_s=args.drain_s), speeds, say=note)
    first = reports[0]
    note(f"{first.stores:,} stores connected in {first.connect_s:.0f} s ({first.connected:,}"
         f" ok, {first.accepted_ids:,} client ids in the broker's log); certificates:"
         f" {first.certs_issued:,} issued in {first.cert_issue_s:.1f} s; another store's"
         f" topic: {first.foreign_publish}")
    Table(f"fleet over {args.minutes * 60:.0f} s per step (p in s: publish -> receipt;"
          " recv: publish -> the worker's received_at; late: the generator's lateness; lost:"
          " not in the database when the drain ended; pending: records still in the stores'"
          " outboxes (a store sends them again); CPU: % of one core, others: the rest of the"
          " machine; load: 1-min load average at the step's start)",
          ["step", "equiv. stores", "msg/s", "readings/s", "TLS B/s", "p50", "p99", "recv p99",
           "late p99", "lost", "dup", "pending", "broker", "workers", "postgres", "generator",
           "others", "load", "ok"],
          [_row(r) for r in reports]).print()
    passed = [r for r in reports if r.ok]
    best = max(passed, key=lambda r: r.equivalent_stores) if passed else None
    bent = next((r for r in reports if not r.ok), reports[-1])
    if best is not None:
        print(f"largest sustained: {best.equivalent_stores:,.0f} stores' load"
              f" ({best.stores:,} connections x speed {best.speed:g}), p99 {best.p99_s:.3f} s,"
              f" 0 lost")
    print(f"{'bends at' if not bent.ok else 'at the last step'} {bent.stores}x{bent.speed:g}:"
          f" {_bend(bent)}")
    i = reports.index(bent)
    if i:
        stalled = _stalled(reports[i - 1], bent)
        print(f"CPU that stopped following the load ({reports[i - 1].msgs_per_s:.0f} ->"
              f" {bent.msgs_per_s:.0f} msg/s): {', '.join(stalled) or 'none'}")
    figures: list[tuple[str, float | None]] = [
        ("largest sustained equivalent stores", best.equivalent_stores if best else 0.0),
        ("sustained p99 s", best.p99_s if best else None),
        ("sustained readings/s", best.readings_per_s if best else None),
        ("sustained generator CPU % of a core", best.cpu.get("generators") if best else None),
    ]
    code = check_figures(figures)
    return code if args.smoke else 0


if __name__ == "__main__":
    raise SystemExit(main())
