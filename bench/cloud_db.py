"""Cloud ingest rate, SQLite vs PostgreSQL: `python -m bench.cloud_db [--pg-url URL]`.

What one worker's database thread does, without the broker: parse, dedupe, insert, gaps,
clock estimate, commit, by 1 and by 2 writers at once (processes, a connection each, like two
workers on one database). Three ways, in the same run:

- baseline: the version-1 JSON messages of 20 readings (one stream each, 8 streams of 4
  stores), one message per transaction (`ingest`), as the worker did before #18;
- compact, one per commit: the compact format's store bundles (4 fridges x 24 readings, a
  240-s interval), one per transaction;
- compact, grouped: the same bundles, up to `--group` (200) per transaction
  (`ingest_many`, what the worker does with whatever is queued).

Bundles come from `--stores` stores (1,000), so two writers meet the same stores only
as often as a shared subscription would make them. SQLite is a file in a temporary directory
(synchronous=FULL, as deployed); PostgreSQL is `--pg-url` (an empty database you own),
or else a private server started like the tests' (devstack/testkit/pg_server.py: in
/dev/shm where possible, fsync off, so its numbers are an upper bound for a real server's disk).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_gateway.db import Database
from cloud_gateway.ingest import Message, ingest, ingest_many
from devstack.fleet_run import machine_busy_s
from xiaodian.wire import compact
from xiaodian.wire.payloads import batch_payload, reading_record

from .common import Table, check_figures

STREAMS = 8  # 4 stores x 2 fridges
FRIDGES = 4
PER_BUNDLE = 24  # readings per fridge in a 240-s bundle at 10 s


def _payloads(batches: int, per_batch: int, prefix: str) -> list[tuple[str, bytes]]:
    """Fresh batches, round robin over STREAMS streams: 2 fridges in each of STORES stores."""
    out = []
    for n in range(batches):
        store = f"{prefix}-{n % STREAMS // 2 + 1}"
        device = f"fridge-{n % 2 + 1}"
        first = (n // STREAMS) * per_batch + 1
        records = [reading_record(s, s, 1000 * s, 1_780_000_000.0 + s, True,
                                  [(0, "ok", 3.0), (1, "ok", 4.0)])
                   for s in range(first, first + per_batch)]
        out.append((f"xd/v1/{store}/telemetry",
                    batch_payload("readings", store, device, 1, records)))
    return out


def _bundles(count: int, stores: int, prefix: str) -> list[tuple[str, bytes]]:
    """Compact bundles (4 fridges x PER_BUNDLE readings), round robin over `stores` stores."""
    out = []
    for n in range(count):
        store = f"{prefix}-{n % stores + 1}"
        first = (n // stores) * PER_BUNDLE + 1
        streams = [("readings", f"fridge-{f}", 1,
                    [reading_record(s, s, 10_000 * s, 1_780_000_000.0 + 10 * s, True,
                                    [(0, "ok", 3.0 + (s % 7) / 16), (1, "ok", 4.0)])
                     for s in range(first, first + PER_BUNDLE)]) for f in range(1, FRIDGES + 1)]
        out.append((f"xd/v1/{store}/{compact.LEAF}",
                    compact.bundle_payload(store, streams)))  # type: ignore[arg-type]
    return out


def _work(target: Path | str, share: list[tuple[str, bytes]], name: str, group: int,
          ready: Any, go: Any, spent: Any) -> None:
    """One writer: its own process and connection, like a worker's database thread; it
    starts when every writer is connected (`go`), so start-up is not timed. It reports the
    CPU seconds it used (`spent`)."""
    with Database.open(target, busy_timeout_s=30) as db:
        ready.put(name)
        go.wait()
        cpu0 = time.process_time()
        if not group:
            for topic, payload in share:
                ingest(db, topic, payload, name, time.time())
        else:
            for i in range(0, len(share), group):
                now = time.time()
                ingest_many(db, [Message(t, p, now, compact.CONTENT_TYPE)
                                 for t, p in share[i:i + group]], name)
        spent.put(time.process_time() - cpu0)


@dataclass
class Took:
    """One timed run: seconds, readings stored, CPU seconds of the writers and of the whole
    machine (every process: the writers, the database server, anything else running)."""

    seconds: float
    stored: int
    writers_cpu_s: float
    machine_cpu_s: float


def _run(target: Path | str, payloads: list[tuple[str, bytes]], writers: int,
         group: int = 0) -> Took:
    """Ingest every payload, split round-robin over `writers` processes, and count the
    readings the database gained. `group` 0: JSON, one message per transaction; else
    compact bundles, `group` per transaction. Processes, not threads: workers are
    processes, and threads would share one interpreter lock. Spawned, not forked: a fork
    would share this process's state (its PostgreSQL test server among it)."""
    with Database.open(target) as db:
        before = db.count("readings")
    ctx = multiprocessing.get_context("spawn")
    ready, go, spent = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_work, args=(target, payloads[i::writers], f"w{i}", group,
                                             ready, go, spent))
             for i in range(writers)]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=120)
    busy0, start = machine_busy_s(), time.perf_counter()
    go.set()
    cpu = [spent.get(timeout=3600) for _ in procs]  # each writer's, before it exits
    took, busy = time.perf_counter() - start, machine_busy_s() - busy0
    for proc in procs:
        proc.join()
    if any(proc.exitcode for proc in procs):
        raise RuntimeError(f"a writer failed: exit codes {[p.exitcode for p in procs]}")
    with Database.open(target) as db:
        assert not db.gaps(state="open"), "a batch went missing"
        stored = db.count("readings") - before
    return Took(took, stored, sum(cpu), busy)


@contextmanager
def _postgres(url: str | None) -> Iterator[tuple[str, str]]:
    """(database URL, label): the given one, or a private server's for this run."""
    if url:
        yield url, "given server"
        return
    from devstack.testkit.pg_server import PgServer

    server = PgServer.start()
    try:
        yield server.create_database(), "private server in /dev/shm, fsync off"
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--batches", type=int, default=400, help="JSON messages (baseline)")
    ap.add_argument("--per-batch", type=int, default=20, help="readings per JSON message")
    ap.add_argument("--bundles", type=int, default=1000, help="compact messages per run")
    ap.add_argument("--stores", type=int, default=1000)
    ap.add_argument("--group", type=int, default=200, help="messages per transaction")
    ap.add_argument("--pg-url", default=None, help="an empty PostgreSQL database to use")
    ap.add_argument("--smoke", action="store_true",
                    help="quick check (~10 s): 80 messages a run; exits 1 unless every run "
                    "stored every reading and gives a rate")
    args = ap.parse_args(argv)
    if args.smoke:
        args.batches, args.bundles = 80, 80
    rows: list[list[object]] = []
    figures: list[tuple[str, float | None]] = []
    rates: dict[tuple[str, str, int], float] = {}
    busy: dict[tuple[str, str, int], float] = {}
    ways = (("JSON 20/message, 1 per commit (baseline)", 0),
            ("compact bundle, 1 per commit", 1),
            (f"compact bundle, {args.group} per commit", args.group))
    with tempfile.TemporaryDirectory() as tmp, _postgres(args.pg_url) as (url, label):
        for name, target in (("SQLite", None), ("PostgreSQL", url)):
            for way, group in ways:
                for writers in (1, 2):
                    # Stores of their own per run: the PostgreSQL database is shared by them.
                    prefix = f"b{len(rows)}"
                    if group:
                        payloads = _bundles(args.bundles, args.stores, prefix)
                        records = args.bundles * FRIDGES * PER_BUNDLE
                    else:
                        payloads = _payloads(args.batches, args.per_batch, prefix)
                        records = args.batches * args.per_batch
                    db = target or Path(tmp) / f"cloud-{len(rows)}.sqlite"
                    run = _run(db, payloads, writers, group)
                    rate = run.stored / run.seconds if run.stored == records else 0.0
                    rates[(name, way, writers)] = rate
                    # CPU in cores (CPU seconds per second): the writers' own, and the
                    # machine's in all, whose rest is the database server (and others).
                    rows.append([name, way, writers, round(len(payloads) / run.seconds),
                                 round(records / run.seconds),
                                 f"{run.writers_cpu_s / run.seconds:.2f}",
                                 f"{run.machine_cpu_s / run.seconds:.2f}",
                                 round(records / run.machine_cpu_s)])
                    figures.append((f"{name} {way} {writers} writer(s) readings/s", rate))
                    busy[(name, way, writers)] = run.machine_cpu_s / run.seconds
    base = {n: rates[(n, ways[0][0], 1)] for n in ("SQLite", "PostgreSQL")}
    grouped = ways[2][0]
    Table(f"cloud ingest ({label} for PostgreSQL; SQLite synchronous=FULL): parse, dedupe, "
          "gaps, clock, commit", ["database", "messages", "writers", "messages/s",
                                  "readings/s", "writers' cores", "machine's cores",
                                  "readings per CPU s"], rows).print()
    cores = os.cpu_count() or 1
    print(f"cores: CPU seconds per second of the run; this machine has {cores}. The machine's"
          " include the database server and anything else running; readings per CPU s are"
          " per second of the whole machine's CPU.")
    for n in ("SQLite", "PostgreSQL"):
        one, two = rates[(n, grouped, 1)], rates[(n, grouped, 2)]
        figures.append((f"{n} grouped 1 writer x baseline", one / base[n] if base[n] else 0.0))
        figures.append((f"{n} grouped 2 writers x 1 writer", two / one if one else 0.0))
        figures.append((f"{n} grouped 1 writer machine cores busy", busy[(n, grouped, 1)]))
        figures.append((f"{n} grouped 2 writers machine cores busy", busy[(n, grouped, 2)]))
    print("targets (#18): grouped, 1 writer >= 50,000 readings/s on each; PostgreSQL 2 writers"
          " >= 1.8x 1 writer")
    code = check_figures(figures)
    return code if args.smoke else 0


if __name__ == "__main__":
    raise SystemExit(main())
