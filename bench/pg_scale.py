"""A store's 24 h chart and a month's HACCP record among 10,000 stores x 90 days of readings,
PostgreSQL: `python -m bench.pg_scale [--smoke]`.

The fleet of #18 (10,000 stores x 4 fridges at 10 s for 90 days) is 31 billion readings, some
6 TB with its indexes: far beyond a 2-core machine with tens of GB of disk. What is built
instead, straight into a private PostgreSQL on disk (generate_series, day by day, in time
order as ingest writes them, so one fridge's readings lie scattered among the others'):

- the QUERIED store(s) at the full density, 10 s for all 90 days: every row the chart and
  the HACCP record read is there, and the old query reads a fridge's whole history;
- the rest of the fleet, every other store x 4 fridges x 90 days, at a coarse interval
  (`--fleet-interval-s`, 8 h): the store and device keys, the monthly partitions and their
  indexes hold 10,000 stores, at a fraction of the full row count.

Baseline, same rows and same run: the queries as they were before (time as
COALESCE(wall_corrected, wall), so no partition is skipped; only the primary key, whose
(store, device) prefix leads to the fridge's whole history, every row visited for its time)
with the new index not yet built. Then the new index is built, and the current code
(`haccp.history`, `haccp.report`) is timed on the same data. Both after VACUUM ANALYZE.
The old HACCP record reads a fridge's whole history for every day, ~10 s a fridge-day
here, so it is timed on the month's last `--baseline-days` (7) only, once, beside the new
code on the same days; the new code is also timed on the whole month.

What it proves and what not is printed at the end: the rows a query reads are those of full
scale; a partition's index is shallower than at full scale (the arithmetic is printed);
the cache is warm (the machine has RAM for all of this, a full-scale server would not).
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from cloud_gateway import haccp, sql
from cloud_gateway.db import Database, migrations, partitions

from .common import Table, check_figures, note

FRIDGES = 4
FULL_S = 10  # the agents' sampling interval
TZ = "Asia/Shanghai"
STORE_FMT = "store-{:05d}"
# Server memory for the run: a production server has more; what matters here is that the
# baseline and the new queries run with the same.
SETTINGS = ("shared_buffers=1GB", "maintenance_work_mem=512MB", "work_mem=64MB",
            "max_wal_size=8GB", "checkpoint_timeout=30min", "wal_level=minimal",
            "max_wal_senders=0", "autovacuum=off")

# The queries before this change (haccp.py at 9d3ddd7), for the baseline.
OLD_T = "COALESCE(wall_corrected, wall)"
OLD_FRIDGES = "SELECT DISTINCT device FROM readings WHERE store = ? ORDER BY device"
OLD_LATEST = (f"SELECT {OLD_T}, product_c, air_c FROM readings WHERE store = ? AND device = ?"
              f" ORDER BY {OLD_T} DESC LIMIT 1")
OLD_SAMPLES = (f"SELECT {OLD_T} AS t, product_c, air_c FROM readings WHERE store = ?"
               f" AND device = ? AND {OLD_T} >= ? AND {OLD_T} < ? ORDER BY t")


@dataclass(frozen=True)
class Plan:
    stores: int
    days: int
    queried: int  # stores at full density (store-00001 ...)
    fleet_interval_s: int

    @property
    def queried_rows(self) -> int:
        return self.queried * FRIDGES * self.days * 86400 // FULL_S

    @property
    def fleet_rows(self) -> int:
        return (self.stores - self.queried) * FRIDGES * self.days * 86400 // self.fleet_interval_s

    @property
    def full_rows(self) -> int:
        return self.stores * FRIDGES * self.days * 86400 // FULL_S


GENERATE = """
INSERT INTO readings (store, device, boot, seq, fseq, dev_ms, wall, synced, air_c, product_c,
                      probes, received_at, wall_corrected, time_method)
SELECT format('store-%s', lpad(g.st::text, 5, '0')), 'fridge-' || g.f, 1, g.seq,
       g.seq % 65536, g.seq * 10000, g.t, TRUE, g.c - 1.5, g.c,
       format('[[0,"ok",%s],[1,"ok",%s]]', g.c - 1.5, g.c), g.t + 2.0, g.t, 'terminal'
FROM (
    SELECT st, f, t, (t - ?::bigint) / ? + 1 AS seq,
           (3.0 + ((t / ? + st + f) % 48) / 16.0) :: float8 AS c
    FROM generate_series(1, ?) st, generate_series(1, ?) f,
         generate_series(?::bigint, ?::bigint, ?::bigint) t
    UNION ALL
    SELECT st, f, t, (t - ?::bigint) / ? + 1,
           (3.0 + ((t / ? + st + f) % 48) / 16.0) :: float8
    FROM generate_series(? + 1, ?) st, generate_series(1, ?) f,
         generate_series(?::bigint + ((st * 4 + f) * 97) % ?, ?::bigint, ?::bigint) t
) g ORDER BY g.t
"""


def generate(conn: sql.Connection, plan: Plan, start: float,
             progress: Callable[[int], None]) -> int:
    """Every reading of the plan, one day per statement, each day in time order."""
    total = 0
    for d in range(plan.days):
        lo = int(start) + d * 86400
        hi = lo + 86400 - 1
        fi = plan.fleet_interval_s
        total += conn.execute(GENERATE, (
            int(start), FULL_S, FULL_S, plan.queried, FRIDGES, lo, hi, FULL_S,
            int(start), fi, fi, plan.queried, plan.stores, FRIDGES, lo, fi, hi, fi)).rowcount
        progress(d)
    return total


def timed(fn: Callable[[], int], runs: int) -> tuple[float, float, int]:
    """(first run, median of the following `runs`) in milliseconds, and what fn returned
    (the rows it read)."""
    t0 = time.perf_counter()
    n = fn()
    first = (time.perf_counter() - t0) * 1000
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return first, statistics.median(times) if times else first, n


# ---------------------------------------------------------------- the two workloads


def old_chart(conn: sql.Connection, store: str, fridges: list[str]) -> int:
    n = 0
    for f in fridges:
        last = conn.execute(OLD_LATEST, (store, f)).fetchone()
        until = float(last[0])
        n += len(conn.execute(OLD_SAMPLES, (store, f, until - 86400, until + 0.001)
                              ).fetchall())
    return n


def new_chart(conn: sql.Connection, store: str, fridges: list[str]) -> int:
    """The chart's two reads as the current code makes them (haccp.history's)."""
    n = 0
    for f in fridges:
        last = haccp.latest_reading(conn, store, f)
        assert last is not None
        n += len(haccp.load_samples(conn, store, f, last.t - 86400, last.t + 0.001))
    return n


def db_downsampled_chart(conn: sql.Connection, store: str, fridges: list[str]) -> int:
    """The chart's reads as haccp.history makes them now: the newest reading, then the day
    downsampled to 1,000 points by the database (`haccp.load_chart_samples`). Returns the
    readings the database counted in the window (the rows the others return)."""
    n = 0
    for f in fridges:
        last = haccp.latest_reading(conn, store, f)
        assert last is not None
        total, shown = haccp.load_chart_samples(conn, store, f, last.t - 86400, last.t + 0.001)
        assert len(shown) <= haccp.MAX_HISTORY_POINTS
        n += total
    return n


def chart_page(conn: sql.Connection, store: str, fridges: list[str]) -> int:
    """All the chart's data as the page gets it: `haccp.history` (the readings, the door,
    compressor and defrost spans, downsampled to 1,000 points)."""
    return sum(int(haccp.history(conn, store, f, 24)["total"]) for f in fridges)


def month_days(end: float, days: int) -> list[date]:
    """The last `days` whole local days before `end`."""
    last = datetime.fromtimestamp(end, haccp.parse_tz(TZ)).date() - timedelta(days=1)
    return [last - timedelta(days=i) for i in range(days)][::-1]


def old_report(conn: sql.Connection, store: str, days: list[date]) -> int:
    """The HACCP record's reads as they were, with the same statistics computed."""
    tz = haccp.parse_tz(TZ)
    n = 0
    for day in days:
        for (f,) in conn.execute(OLD_FRIDGES, (store,)).fetchall():
            since, until = haccp.day_bounds(day, tz)
            pts = [(float(r[0]), float(r[1])) for r in conn.execute(
                OLD_SAMPLES, (store, f, since, until)).fetchall() if r[1] is not None]
            haccp.day_stats(pts)
            haccp.excursions(pts, haccp.WARM_C)
            haccp.load_alerts(conn, store, f)
            n += len(pts)
    return n


def new_report(conn: sql.Connection, store: str, days: list[date]) -> int:
    tz = haccp.parse_tz(TZ)
    return sum(d.stats.samples if d.stats else 0
               for day in days for d in haccp.report(conn, store, day, tz))


# ---------------------------------------------------------------- sizes and depth


def btree_levels(entries: int, per_leaf: int, fanout: int) -> int:
    """Levels of a B-tree (leaves included) over `entries` keys."""
    pages, levels = max(1, math.ceil(entries / per_leaf)), 1
    while pages > 1:
        pages, levels = math.ceil(pages / fanout), levels + 1
    return levels


def index_shape(conn: sql.Connection, index: str) -> tuple[int, int]:
    """(levels including the leaves, pages) of a B-tree index (pageinspect)."""
    level = conn.execute("SELECT level FROM bt_metap(?)", (index,)).fetchone()[0]
    pages = conn.execute("SELECT pg_relation_size(?::regclass) / 8192", (index,)
                         ).fetchone()[0]
    return int(level) + 1, int(pages)


def gb(n: float) -> float:
    return round(n / 1e9, 2)


@contextmanager
def server(url: str | None) -> Iterator[tuple[str, str]]:
    if url:
        yield url, "given server"
        return
    from devstack.testkit.pg_server import PgServer

    srv = PgServer.start(parent=tempfile.gettempdir(), settings=SETTINGS)
    try:
        yield srv.create_database(), f"private server on disk ({srv.root}), fsync off"
    finally:
        srv.stop()  # the cluster directory goes with it


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


@dataclass
class Run:
    """What one run measured: (first ms, median ms, rows read) per workload, and sizes."""

    rows: int = 0
    load_s: float = 0.0
    pk_s: float = 0.0
    index_s: float = 0.0
    timings: dict[str, tuple[float, float, int]] = field(default_factory=dict)
    plans: tuple[str, str] = ("", "")
    size: int = 0
    index: str = ""
    levels: int = 0
    pages: int = 0
    part_rows: int = 0


def build(conn: sql.PgConnection, plan: Plan, start: float, end: float, run: Run) -> None:
    """The months' partitions, then every reading, then the primary key (built once)."""
    have = set(partitions.partitions(conn))
    m = partitions.month_of(start)
    while m <= partitions.month_of(end):
        if m not in have:
            partitions.create(conn, m)
        m = partitions.add_months(m, 1)
    conn.script("ALTER TABLE readings DROP CONSTRAINT readings_pkey;"
                " DROP INDEX readings_by_time")
    t0 = time.monotonic()
    run.rows = generate(conn, plan, start, lambda d: note(
        f"day {d + 1}/{plan.days} generated, {time.monotonic() - t0:.0f} s")
        if (d + 1) % 15 == 0 else None)
    run.load_s = time.monotonic() - t0
    t0 = time.monotonic()
    conn.script("ALTER TABLE readings ADD PRIMARY KEY (store, device, boot, seq, wall_corrected)")
    conn.script("VACUUM ANALYZE readings")
    run.pk_s = time.monotonic() - t0


def measure(conn: sql.PgConnection, store: str, end: float, args: argparse.Namespace,
            run: Run) -> None:
    """The baseline on the primary key alone, then the new index and the current code."""
    fridges = [f"fridge-{f}" for f in range(1, FRIDGES + 1)]
    days = month_days(end, args.report_days)
    # The old record reads a fridge's whole history for each day (~10 s a fridge-day
    # here): timed on the month's last days only, once, and the new code on the same days.
    week = days[-args.baseline_days:]
    note("baseline: the old queries, primary key only")
    t = run.timings
    b_runs = min(args.runs, 2)  # seconds each: fewer runs
    t["b_chart1"] = timed(lambda: old_chart(conn, store, fridges[:1]), b_runs)
    t["b_chart"] = timed(lambda: old_chart(conn, store, fridges), b_runs)
    t["b_week"] = timed(lambda: old_report(conn, store, week), 0)
    t0 = time.monotonic()
    conn.script(migrations.PG_READINGS_INDEX)
    conn.script("VACUUM ANALYZE readings")
    run.index_s = time.monotonic() - t0
    note("the current code, with the new index")
    t["c_chart1"] = timed(lambda: new_chart(conn, store, fridges[:1]), args.runs)
    t["c_chart"] = timed(lambda: new_chart(conn, store, fridges), args.runs)
    t["d_chart1"] = timed(lambda: db_downsampled_chart(conn, store, fridges[:1]), args.runs)
    t["d_chart"] = timed(lambda: db_downsampled_chart(conn, store, fridges), args.runs)
    t["c_page"] = timed(lambda: chart_page(conn, store, fridges), args.runs)
    t["c_week"] = timed(lambda: new_report(conn, store, week), 1)
    t["c_report"] = timed(lambda: new_report(conn, store, days), 1)
    explain = "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) "
    run.plans = (
        "\n".join(str(r[0]) for r in conn.execute(
            explain + "SELECT wall_corrected, product_c, air_c FROM readings WHERE store = ?"
            " AND device = ? AND wall_corrected >= ? AND wall_corrected < ?"
            " ORDER BY wall_corrected", (store, "fridge-1", end - 86400, end))),
        "\n".join(str(r[0]) for r in conn.execute(
            explain + "SELECT wall_corrected, product_c, air_c FROM readings WHERE store = ?"
            " AND device = ? ORDER BY wall_corrected DESC LIMIT 1", (store, "fridge-1"))))


def shape(conn: sql.PgConnection, run: Run) -> None:
    """The database's size, and the depth of the biggest partition's chart index."""
    run.size = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])
    parts = [(str(r[0]), int(r[1])) for r in conn.execute(
        "SELECT c.relname, c.reltuples FROM pg_inherits i JOIN pg_class c"
        " ON c.oid = i.inhrelid WHERE i.inhparent = 'readings'::regclass")]
    biggest, run.part_rows = max(parts, key=lambda p: p[1])
    run.index = conn.execute(
        "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = ?::regclass"
        " AND pg_get_indexdef(indexrelid) LIKE '%INCLUDE%'", (biggest,)).fetchone()[0]
    run.levels, run.pages = index_shape(conn, run.index)


def server_ms(plans: tuple[str, str]) -> float:
    """The server's execution time of the chart's two reads (EXPLAIN ANALYZE)."""
    return sum(float(line.split(":")[1].split()[0]) for text in plans
               for line in text.splitlines() if line.strip().startswith("Execution Time"))


def print_run(plan: Plan, run: Run, label: str, store: str, took: float, runs: int,
              report_days: int, baseline_days: int) -> None:
    t = run.timings
    print(f"\nPostgreSQL {label}; {plan.stores:,} stores x {FRIDGES} fridges x {plan.days}"
          f" days; load average after: {loadavg()}")
    Table("rows generated", ["part", "stores", "interval s", "readings"], [
        ["queried store(s), full density", plan.queried, FULL_S, plan.queried_rows],
        ["rest of the fleet, coarse", plan.stores - plan.queried, plan.fleet_interval_s,
         plan.fleet_rows],
        ["total generated", plan.stores, "", run.rows],
        ["the fleet at full density (not built)", plan.stores, FULL_S, plan.full_rows],
    ]).print()
    Table("time and space", ["step", "s", "GB"], [
        ["generate (no indexes)", round(run.load_s), ""],
        ["primary key + vacuum", round(run.pk_s), ""],
        ["chart index + vacuum", round(run.index_s), ""],
        ["database on disk", "", gb(run.size)],
        ["whole run", round(took), ""],
    ]).print()

    def row(name: str, b: str, c: str) -> list[object]:
        base = t[b] if b else (0.0, 0.0, 0)
        ref = base[0] if b == "b_week" else base[1]  # run once: its first run is its figure
        return [name, t[c][2], *(map(round, base[:2]) if b else ("", "")), *map(round, t[c][:2]),
                round(ref / t[c][1], 1) if b else ""]

    b_runs = min(runs, 2)
    Table(f"queries on {store} (ms: first run, median of {runs} more; baseline {b_runs} more)",
          ["query", "rows", "baseline first", "baseline median", "new first", "new median",
           "x faster"], [
        row("24 h chart, one fridge: every reading to Python", "b_chart1", "c_chart1"),
        row("  downsampled to 1,000 points in the database", "b_chart1", "d_chart1"),
        row("24 h chart, the store's 4 fridges: every reading", "b_chart", "c_chart"),
        row("  downsampled in the database", "b_chart", "d_chart"),
        row("  as the page gets it (haccp.history: + spans)", "", "c_page"),
        row(f"HACCP record, {baseline_days} days x 4 fridges (baseline once)", "b_week",
            "c_week"),
        row(f"HACCP record, {report_days} days x 4 fridges", "", "c_report"),
    ]).print()
    if (t["c_chart"][2], t["d_chart"][2], t["c_week"][2]) != (
            t["b_chart"][2], t["b_chart"][2], t["b_week"][2]):
        raise RuntimeError("the old and new queries read different rows")
    print(f"server time of the chart's two reads, one fridge: {server_ms(run.plans):.1f} ms")
    print("plan of the chart's read (one fridge, 24 h):")
    print("\n".join("  " + line for line in run.plans[0].splitlines()))
    print("plan of its newest reading (where the 24 h end):")
    print("\n".join("  " + line for line in run.plans[1].splitlines()))
    full_month = plan.stores * FRIDGES * 30 * 86400 // FULL_S
    per_leaf = max(1, round(run.part_rows / max(1, run.pages)))
    full_levels = btree_levels(full_month, per_leaf, 250)
    print(f"\nB-tree depth: {run.index} ({run.part_rows:,} rows) has {run.levels} levels,"
          f" {run.pages:,} pages (~{per_leaf} entries a page). A month's partition of the"
          f" full fleet has {full_month:,} rows: at {per_leaf} a leaf and a fan-out of ~250"
          f" above, {full_levels} levels, {full_levels - run.levels} more page(s) per descent;"
          f" a fridge-day is ~{math.ceil(8640 / per_leaf)} leaf pages at any size.")
    print(
        "What this proves: the chart and the record read exactly the rows they would at full"
        " scale (the queried store is at full density, scattered among the fleet's rows in"
        " time order), from one or two monthly partitions, through an index whose depth is"
        " the only thing that grows with the fleet (above). What it does not: a full-size"
        " partition's leaves and heap are not in memory as they are here (a cold fridge-day"
        " is its leaf pages read from disk); the fleet's other stores are coarse, so a"
        " fridge's rows share heap pages more than at full scale (this favours the baseline,"
        " which visits the heap); the new index is read after VACUUM (all-visible pages;"
        " partitions are vacuumed every million inserts for this); no events were generated"
        " (door, compressor and alert reads have their own index and are empty here); fsync"
        " is off.")
    print("target (#18): a store's 24 h chart at 10k stores x 90 days <= 50 ms")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--stores", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--queried", type=int, default=1, help="stores at full 10 s density")
    ap.add_argument("--fleet-interval-s", type=int, default=8 * 3600,
                    help="sampling interval of the other stores' readings")
    ap.add_argument("--report-days", type=int, default=30, help="days of the HACCP record")
    ap.add_argument("--baseline-days", type=int, default=7,
                    help="days of the HACCP record timed with the old queries too")
    ap.add_argument("--runs", type=int, default=5, help="timed runs after the first")
    ap.add_argument("--pg-url", default=None, help="an empty PostgreSQL database to use")
    ap.add_argument("--smoke", action="store_true",
                    help="quick check (~1 min): 50 stores x 35 days; exits 1 unless every "
                    "figure was measured")
    args = ap.parse_args(argv)
    if args.smoke:
        (args.stores, args.days, args.fleet_interval_s, args.report_days, args.baseline_days,
         args.runs) = (50, 35, 3600, 3, 2, 1)
    plan = Plan(args.stores, args.days, args.queried, args.fleet_interval_s)
    t_start = time.monotonic()
    end = float(datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
                .timestamp())
    start = end - plan.days * 86400
    store = STORE_FMT.format(1)
    note(f"load average before: {loadavg()}")
    run = Run()
    with server(args.pg_url) as (url, label), Database.open(url) as db:
        conn = db.conn
        assert isinstance(conn, sql.PgConnection)
        conn.script("CREATE EXTENSION IF NOT EXISTS pageinspect")
        build(conn, plan, start, end, run)
        measure(conn, store, end, args, run)
        shape(conn, run)
    print_run(plan, run, label, store, time.monotonic() - t_start, args.runs,
              args.report_days, args.baseline_days)
    t = run.timings
    figures: list[tuple[str, float | None]] = [
        ("rows generated", float(run.rows)),
        ("database GB", gb(run.size)),
        ("chart one fridge new ms", t["c_chart1"][1]),
        ("chart one fridge server ms", server_ms(run.plans)),
        ("chart store new ms", t["c_chart"][1]),
        ("chart one fridge downsampled in the database ms", t["d_chart1"][1]),
        ("chart store downsampled in the database ms", t["d_chart"][1]),
        ("chart page store new ms", t["c_page"][1]),
        ("chart store baseline ms", t["b_chart"][1]),
        ("HACCP month new ms", t["c_report"][1]),
        ("HACCP week new ms", t["c_week"][1]),
        ("HACCP week baseline ms", t["b_week"][0]),
        ("chart store x baseline", t["b_chart"][1] / t["c_chart"][1]),
        ("chart store downsampled x every reading", t["c_chart"][1] / t["d_chart"][1]),
    ]
    code = check_figures(figures)
    return code if args.smoke else 0


if __name__ == "__main__":
    raise SystemExit(main())
