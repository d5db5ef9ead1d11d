"""Run every benchmark once, short settings: `python -m bench.run_all` (~5 minutes)."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable

from . import (
    alert_latency,
    backlog_drain,
    cloud_db,
    decode_rate,
    edge_footprint,
    firmware_update,
    fleet,
    fw_signature_cost,
    maintenance,
    nearest_store,
    outage_memory,
    pg_scale,
    scan_to_verdict,
    scenarios,
    supply,
    wire_cost,
    wire_month,
)

RUNS: tuple[tuple[str, Callable[[list[str]], int], list[str]], ...] = (
    ("wire_cost", wire_cost.main, []),
    # Issue 18: a store's month through the relay (compact vs JSON), one-minute bytes per
    # reading (~1 min), and ingest readings/s grouped vs one message per commit (~2 min).
    ("wire_month", wire_month.main, []),
    ("cloud_db", cloud_db.main, []),
    # Issue 18: the largest fleet one broker, 2 workers and PostgreSQL sustain: 10,000 TLS
    # stores at 1, 2, 4, 8 times the real cadence, 30 s each: ~6-7 min on 2 busy CPUs.
    ("fleet", fleet.main, ["--minutes", "0.5"]),
    # A store's 24 h chart and a month's HACCP record among 10,000 stores x 90 days on
    # PostgreSQL, against the queries before partitions and indexes (~4 min idle, ~8 GB).
    ("pg_scale", pg_scale.main, []),
    ("decode_rate", decode_rate.main, ["--seconds", "1"]),
    ("backlog_drain", backlog_drain.main, ["--cap", "60"]),
    ("edge_footprint", edge_footprint.main, ["--duration", "120", "--warmup", "10"]),
    # Shorter outage than the default (25 s = ~4 simulated hours), so a smaller budget.
    ("outage_memory", outage_memory.main,
     ["--outage-s", "25", "--before", "8", "--warmup", "3", "--after", "2", "--budget-mb", "0.5"]),
    ("alert_latency", alert_latency.main, ["--alerts", "20"]),
    ("scenarios", scenarios.main, []),  # every cold-chain scenario, ~45 s on 2 CPUs
    # A fouling condenser and a healthy month, 24 simulated days each: ~60 s on 2 CPUs.
    ("maintenance", maintenance.main,
     ["--only", "condenser_fouling", "--only", "normal_month", "--days", "24"]),
    ("scan_to_verdict", scan_to_verdict.main, ["--scans", "200"]),  # ~25 s
    ("supply", supply.main, []),  # two markets x 60 days, one 1,000 x 300 cutoff: ~20 s
    ("nearest_store", nearest_store.main, []),  # 10,000 points over 5,000 stores: ~60 s
    ("firmware_update", firmware_update.main, []),  # 60 kB at 115200 baud, windows 1 and 8: ~25 s
    ("fw_signature_cost", fw_signature_cost.main, []),  # Ed25519 under micropython: ~3 s
)


def main() -> int:
    print(f"xiaodian benchmarks, {time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, {platform.platform()}\n", flush=True)
    failed = []
    for name, run, args in RUNS:
        print(f"=== bench.{name} {' '.join(args)}".rstrip(), flush=True)
        t0 = time.monotonic()
        try:
            code = run(args)
        except Exception as exc:  # report and go on: one broken benchmark must not hide the rest
            print(f"bench.{name} failed: {exc.__class__.__name__}: {exc}", file=sys.stderr)
            code = 1
        print(f"=== bench.{name}: exit {code}, {time.monotonic() - t0:.0f} s\n", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
