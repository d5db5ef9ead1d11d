"""Cloud ingest rate, SQLite vs PostgreSQL: `python -m bench.cloud_db [--pg-url URL]`.

What one worker's database thread does per message, without the broker: `ingest()` of a
batch of readings (parse, dedupe, insert, gaps, clock estimate, commit), for fresh batches
spread over 8 streams of 4 stores, by 1 and by 2 writers at once (threads, a connection each,
like two workers on one database). SQLite is a file in a temporary directory
(synchronous=FULL, as deployed); PostgreSQL is `--pg-url` (an empty database you own),
or else a private server started like the tests' (devstack/testkit/pg_server.py: in
/dev/shm where possible, fsync off, so its numbers are an upper bound for a real server's disk).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cloud_gateway.db import Database
from cloud_gateway.ingest import ingest
from xiaodian.wire.payloads import batch_payload, reading_record

from .common import Table, check_figures

STREAMS = 8  # 4 stores x 2 fridges


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


def _run(target: Path | str, payloads: list[tuple[str, bytes]], writers: int) -> tuple[float, int]:
    """(seconds to ingest every payload, split round-robin over `writers` threads; readings
    the database gained)."""
    with Database.open(target) as db:
        before = db.count("readings")
    errors: list[BaseException] = []

    def work(share: list[tuple[str, bytes]], name: str) -> None:
        try:
            with Database.open(target, busy_timeout_s=30) as db:
                for topic, payload in share:
                    ingest(db, topic, payload, name, time.time())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(payloads[i::writers], f"w{i}"))
               for i in range(writers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - start
    if errors:
        raise errors[0]
    with Database.open(target) as db:
        assert not db.gaps(state="open"), "a batch went missing"
        stored = db.count("readings") - before
    return took, stored


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
    ap.add_argument("--batches", type=int, default=400)
    ap.add_argument("--per-batch", type=int, default=20, help="readings per message")
    ap.add_argument("--pg-url", default=None, help="an empty PostgreSQL database to use")
    ap.add_argument("--smoke", action="store_true",
                    help="quick check (~5 s): 80 messages; exits 1 unless every run stored "
                    "every reading and gives a rate")
    args = ap.parse_args(argv)
    if args.smoke:
        args.batches = 80
    records = args.batches * args.per_batch
    rows: list[list[object]] = []
    figures: list[tuple[str, float | None]] = []
    with tempfile.TemporaryDirectory() as tmp, _postgres(args.pg_url) as (url, label):
        for name, target in (("SQLite, synchronous=FULL", None), (f"PostgreSQL, {label}", url)):
            for writers in (1, 2):
                # A store of its own per run: the PostgreSQL database is shared by the runs.
                payloads = _payloads(args.batches, args.per_batch, f"bench-{writers}")
                took, stored = _run(target or Path(tmp) / f"cloud-{writers}.sqlite", payloads,
                                    writers)
                rows.append([name, writers, round(args.batches / took),
                             round(records / took)])
                # Readings/s counts only what the database kept: an ingest that drops
                # readings (or stores none) gives no figure.
                figures.append((f"{name.split(',')[0]} {writers} writer(s) readings/s",
                                stored / took if stored == records else 0.0))
    Table(f"cloud ingest: {args.batches} messages of {args.per_batch} readings, {STREAMS}"
          " streams of 4 stores (parse, dedupe, gaps, clock, commit each)",
          ["database", "writers", "messages/s", "readings/s"], rows).print()
    if not args.smoke:
        return 0
    base = figures[0][1] or 0.0  # SQLite, 1 writer: the baseline of the same run
    figures += [(f"{n.replace(' readings/s', '')} x SQLite 1 writer", v / base if base and v
                 else 0.0) for n, v in figures[1:] if v is not None]
    return check_figures(figures)


if __name__ == "__main__":
    raise SystemExit(main())
