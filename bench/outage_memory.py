"""Outage memory: the real edge agent's resident memory and database size before, during
and after a long broker outage, with the default disk budget and with a small one.

Processes (all real, through `devstack.stack.StoreStack`): TLS Mosquitto, one `xiaodian
cloud run`, `xiaodian sim run` (4 fridges sampling every 10 s, scenario written to the temp
dir) at an accelerated speed (x600: one real second is ten simulated minutes) and
`xiaodian edge run`. After a warm-up the broker runs for a while (steady state), is stopped
for the outage (persistence kept) and started again on the same port.

psutil samples the agent's RSS every second; the same tick reads, through a read-only
SQLite connection, the pages the edge database uses (what `disk_budget_mb` bounds), the
size of its files (database + WAL) and the outbox depth. Drained = every record that was
in the outbox when the broker came back has been confirmed by the cloud (receipt), so its
row is gone. At the end the simulator is stopped and the outbox emptied, and what the edge
stored is compared with what the cloud holds (raw readings plus what aggregates cover).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # no stubs installed; no installs

from devstack.stack import StoreStack

from .common import BenchError, Table, check_figures, note, wait_for

FRIDGES = 4
SAMPLE_S = 10
DEFAULT_BUDGET_MB = 512.0  # edge.config default
MB = 1e6

# The agent's warning when it publishes again what the cloud did not confirm in time.
REPUBLISHED = re.compile(r"uplink: (\d+) records not confirmed by the cloud")
COMPACTED = re.compile(r"disk budget: dropped \d+ confirmed records, compacted (\d+) "
                       r"readings into (\d+) aggregates")

Stream = tuple[str, str, int]  # (kind, device, boot) of the outbox


def scenario_toml(root: Path) -> str:
    fridges = "".join(
        f'[[fridges]]\nid = "fridge-{i}"\nset_point_c = {2.0 + i}\n'
        f"sample_interval_s = {SAMPLE_S}\n"
        for i in range(1, FRIDGES + 1)
    )
    # link_dir and truth are required by the file; StoreStack overrides both.
    return (f'[sim]\nseed = 11\nlink_dir = "{root / "tty"}"\ntruth = "{root / "truth.jsonl"}"\n'
            + fridges)


@contextlib.contextmanager
def _ro(db: Path) -> Iterator[sqlite3.Connection]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        yield con
    finally:
        con.close()


def _one(con: sqlite3.Connection, sql: str, *args: object) -> int:
    return int(con.execute(sql, args).fetchone()[0] or 0)


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since sampling began
    phase: str  # before | outage | after
    rss_mb: float
    used_mb: float  # database pages in use (what the budget bounds)
    files_mb: float  # edge.sqlite3 + its WAL on disk
    outbox: int


@dataclass
class Run:
    label: str
    budget_mb: float
    samples: list[Sample] = field(default_factory=list)
    outage_sim_h: float = 0.0  # simulated hours of readings stored during the outage
    outage_readings: int = 0
    outbox_at_end: int = 0  # when the broker came back
    first_delivery_s: float | None = None  # broker up -> the cloud stores something again
    drain_s: float | None = None  # broker up -> the outage backlog confirmed by the cloud
    compacted: int = 0  # readings replaced by aggregates at the edge
    aggregates: int = 0
    edge_records: int = 0  # readings the edge numbered (seq), at the end
    cloud_records: int = 0  # in the cloud: raw readings + readings inside aggregates
    open_gaps: int = 0
    overlap: int = 0  # raw readings in the cloud that an aggregate covers too
    settled: bool = False
    republished: int = 0  # records sent again after confirm_timeout_s without a receipt

    def of(self, phase: str) -> list[Sample]:
        return [s for s in self.samples if s.phase == phase]


def _seq_total(con: sqlite3.Connection) -> int:
    """Readings numbered so far (seq is contiguous from 1 per device and boot; an aggregate's
    seq_last covers what it replaced, and dropped history lies below the maximum)."""
    return _one(con, "SELECT sum(m) FROM (SELECT max(coalesce(seq_last, seq)) AS m "
                "FROM readings GROUP BY device, boot)")


def _streams(con: sqlite3.Connection, agg: str) -> dict[Stream, int]:
    rows = con.execute(f"SELECT kind, device, boot, {agg}(seq) FROM outbox "  # agg: min/max
                       "GROUP BY kind, device, boot").fetchall()
    return {(k, d, int(b)): int(s) for k, d, b, s in rows}


def _cloud_raw(db: Path, store: str) -> int:
    if not db.exists():
        return 0
    with _ro(db) as con:
        return _one(con, "SELECT count(*) FROM readings WHERE store=?", store)


def _cloud_covered(db: Path, store: str) -> tuple[int, int, int]:
    """(distinct readings seqs the cloud holds, raw or inside an aggregate; raw readings
    that an aggregate covers too; open gaps)."""
    with _ro(db) as con:
        raw = set(con.execute("SELECT device, boot, seq FROM readings WHERE store=?", (store,)))
        agg = {(d, b, s) for d, b, first, last in con.execute(
            "SELECT device, boot, seq_first, seq_last FROM reading_aggregates WHERE store=?",
            (store,)) for s in range(first, last + 1)}
        gaps = _one(con, "SELECT count(*) FROM data_gaps WHERE store=? AND filled_at IS NULL",
                    store)
    return len(raw | agg), len(raw & agg), gaps


class Sampler:
    def __init__(self, stack: StoreStack, run: Run) -> None:
        proc = stack.parts["edge"].proc
        if proc is None:
            raise BenchError("edge agent not started")
        self.stack, self.run = stack, run
        self.edge = psutil.Process(proc.pid)
        self.t0 = time.monotonic()
        self.tick = 0

    def sample(self, phase: str) -> Sample:
        db = self.stack.edge_db
        with _ro(db) as con:
            page = _one(con, "PRAGMA page_size")
            used = (_one(con, "PRAGMA page_count") - _one(con, "PRAGMA freelist_count")) * page
            outbox = _one(con, "SELECT count(*) FROM outbox")
        files = sum(p.stat().st_size for p in (db, db.with_name(db.name + "-wal")) if p.exists())
        s = Sample(time.monotonic() - self.t0, phase, self.edge.memory_info().rss / MB,
                   used / MB, files / MB, outbox)
        self.run.samples.append(s)
        return s

    def every_second(self, phase: str, seconds: float,
                     stop: Callable[[Sample], bool] = lambda s: False) -> float | None:
        """Sample once a second for `seconds`; returns the seconds elapsed when `stop` said
        so (None if it never did)."""
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            self.tick += 1
            time.sleep(max(0.0, self.t0 + self.tick - time.monotonic()))
            for name in ("edge", "sim", "cloud"):
                if not self.stack.parts[name].alive():
                    raise BenchError(f"{name} exited; see {self.stack.parts[name].log}")
            if stop(self.sample(phase)):
                return time.monotonic() - start
        return None


def outage_run(root: Path, label: str, budget_mb: float, args: argparse.Namespace) -> Run:
    run = Run(label, budget_mb)
    scenario = root / "scenario.toml"
    stack = StoreStack(root / label.split()[0], speed=args.speed, scenario=scenario,
                       edge_disk_budget_mb=budget_mb, sim_flush_s=0.0)
    try:
        stack.start()
        wait_for(lambda: _cloud_raw(stack.cloud_db, stack.store) > 0, 60,
                 f"first readings in the cloud (see {stack.logs})", 0.2)
        time.sleep(args.warmup)
        sampler = Sampler(stack, run)
        sampler.every_second("before", args.before)

        assert stack.broker is not None
        with _ro(stack.edge_db) as con:
            seq0 = _seq_total(con)
        stack.broker.stop()  # persistence kept, as in a Mosquitto restart
        sampler.every_second("outage", args.outage_s)
        with _ro(stack.edge_db) as con:
            run.outage_readings = _seq_total(con) - seq0
            backlog = _streams(con, "max")
        run.outage_sim_h = run.outage_readings / FRIDGES * SAMPLE_S / 3600
        run.outbox_at_end = run.samples[-1].outbox
        cloud0 = _cloud_raw(stack.cloud_db, stack.store)
        stack.broker.start()
        t_up = time.monotonic()

        def drained(_: Sample) -> bool:
            if run.first_delivery_s is None and \
                    _cloud_raw(stack.cloud_db, stack.store) > cloud0:
                run.first_delivery_s = time.monotonic() - t_up
            with _ro(stack.edge_db) as con:
                left = _streams(con, "min")
            if all(left.get(k, top + 1) > top for k, top in backlog.items()):
                run.drain_s = time.monotonic() - t_up
            return run.drain_s is not None

        if sampler.every_second("after", args.drain_cap, drained) is not None:
            sampler.every_second("after", args.after)  # memory once the backlog is gone

        # Stop the fridges, let the edge empty its outbox, then compare edge and cloud.
        stack.parts["sim"].stop()
        with contextlib.suppress(BenchError):
            wait_for(lambda: _edge_outbox(stack.edge_db) == 0, 30, "outbox empty", 0.2)
            run.settled = True
        with _ro(stack.edge_db) as con:
            run.edge_records = _seq_total(con)
        time.sleep(1.0)  # the last receipts are sent after the cloud's commit
        run.cloud_records, run.overlap, run.open_gaps = _cloud_covered(stack.cloud_db,
                                                                       stack.store)
        # Aggregates may be gone from the edge by now (confirmed history is dropped first
        # under the budget), so count them from the agent's own log.
        log_text = stack.parts["edge"].log.read_text(encoding="utf-8", errors="replace")
        run.republished = sum(int(n) for n in REPUBLISHED.findall(log_text))
        for compacted, made in COMPACTED.findall(log_text):
            run.compacted += int(compacted)
            run.aggregates += int(made)
    finally:
        stack.stop()
    return run


def _edge_outbox(db: Path) -> int:
    with _ro(db) as con:
        return _one(con, "SELECT count(*) FROM outbox")


def _x(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def _s(v: float | None) -> object:
    return "-" if v is None else v


def report(runs: list[Run]) -> None:
    rss_rows: list[list[object]] = []
    db_rows: list[list[object]] = []
    for r in runs:
        before, during, after = r.of("before"), r.of("outage"), r.of("after")
        steady = statistics.fmean(s.rss_mb for s in before)
        start, end = during[0].rss_mb, during[-1].rss_mb
        peak = max(s.rss_mb for s in during)
        rss_rows.append([
            r.label, steady, start, peak, end, end - start, _x(peak, steady),
            max(s.rss_mb for s in after) if after else "-", after[-1].rss_mb if after else "-",
        ])
        used_max = max(s.used_mb for s in r.samples)
        db_rows.append([
            r.label, r.outage_sim_h, r.outage_readings, r.outbox_at_end,
            _s(r.first_delivery_s), _s(r.drain_s), r.republished, r.budget_mb, used_max,
            _x(used_max, r.budget_mb), max(s.files_mb for s in r.samples),
            f"{r.compacted:,} / {r.aggregates:,}",
            f"{r.cloud_records:,} / {r.edge_records:,}", r.overlap, r.open_gaps,
        ])
    Table(
        "Edge agent RSS (MB, sampled every 1 s) through the broker outage",
        ["run", "steady (before)", "outage start", "max during", "outage end",
         "growth (end-start)", "max / steady", "max after", "end after"],
        rss_rows,
    ).print()
    Table(
        "Edge agent RSS (MB) during the outage, at each tenth of it",
        ["run", *(f"{10 * i}%" for i in range(11))],
        [[r.label, *(r.of("outage")[round(i * (len(r.of("outage")) - 1) / 10)].rss_mb
                     for i in range(11))] for r in runs],
    ).print()
    Table(
        "Outbox and database (drain = broker up until the cloud confirmed the whole backlog)",
        ["run", "outage sim h", "readings in outage", "outbox at end", "first delivery s",
         "drain s", "republished", "budget MB", "DB used max MB", "used / budget", "files max MB",
         "compacted / aggregates", "in cloud / at edge", "raw+agg overlap",
         "open gaps"],
        db_rows,
    ).print()
    note("steady = mean RSS over the pre-outage window. DB used = pages in use (page_count - "
         "freelist_count), what disk_budget_mb bounds; files = edge.sqlite3 + WAL. in cloud = "
         "distinct readings, raw or inside an aggregate, after the simulator stopped and the "
         "outbox emptied; at edge = readings the agent numbered. republished = records the "
         "agent sent again because no receipt came within confirm_timeout_s (30 s).")
    for r in runs:
        if not r.settled or r.drain_s is None:
            note(f"WARNING {r.label}: the outbox did not drain in time.")
        if r.settled and (r.cloud_records != r.edge_records or r.open_gaps):
            note(f"WARNING {r.label}: cloud has {r.cloud_records:,} of {r.edge_records:,} "
                 f"readings, {r.open_gaps} open gaps.")
        if r.overlap:
            note(f"NOTE {r.label}: {r.overlap:,} readings are in the cloud both raw and inside "
                 "an aggregate (sent raw, not confirmed in time, then compacted and sent again).")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.outage_memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--outage-s", type=float, default=75.0,
                   help="real seconds the broker stays down (default 75)")
    p.add_argument("--speed", type=float, default=600.0,
                   help="simulated seconds per real second (default 600)")
    p.add_argument("--budget-mb", type=float, default=2.0,
                   help="disk budget of the second run (default 2)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds before sampling")
    p.add_argument("--before", type=float, default=15.0,
                   help="seconds sampled before the outage (the steady state)")
    p.add_argument("--after", type=float, default=5.0,
                   help="seconds sampled once the backlog is drained")
    p.add_argument("--drain-cap", type=float, default=150.0,
                   help="seconds allowed for the drain (reconnect backoff included)")
    p.add_argument("--smoke", action="store_true",
                   help="quick check (~30 s): the default budget only, 5 s outage (~50 "
                   "simulated min); exits 1 unless every figure is there")
    args = p.parse_args(argv)
    if args.smoke:
        args.outage_s, args.warmup, args.before, args.after, args.drain_cap = 5, 1, 3, 0, 30
    if not (5 <= args.outage_s <= 1800 and 1 <= args.speed <= 3600 and args.budget_mb > 0
            and 0 <= args.warmup <= 120 and 3 <= args.before <= 600
            and 0 <= args.after <= 600 and 5 <= args.drain_cap <= 600):
        p.error("out of range: --outage-s 5..1800, --speed 1..3600, --warmup 0..120, "
                "--before 3..600, --after 0..600, --drain-cap 5..600")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    note(f"outage memory: {FRIDGES} fridges every {SAMPLE_S} s at x{args.speed:g}, broker down "
         f"{args.outage_s:g} s real (~{args.outage_s * args.speed / 3600:.1f} h simulated), "
         f"{args.before:g} s sampled before; budgets {DEFAULT_BUDGET_MB:g}"
         + ("" if args.smoke else f" and {args.budget_mb:g}") + " MB")
    with tempfile.TemporaryDirectory(prefix="xd-bench-outage-") as tmp:
        root = Path(tmp)
        (root / "scenario.toml").write_text(scenario_toml(root), encoding="utf-8")
        runs = [
            outage_run(root, f"default budget ({DEFAULT_BUDGET_MB:g} MB)", DEFAULT_BUDGET_MB,
                       args),
        ]
        # A small budget only bites after hours of outage: no smoke run can reach it.
        if not args.smoke:
            runs.append(outage_run(root, f"small budget ({args.budget_mb:g} MB)",
                                   args.budget_mb, args))
    report(runs)
    return check_figures(figures(runs[0])) if args.smoke else 0


def figures(r: Run) -> list[tuple[str, float | None]]:
    """The smoke run's headline figures; a drain that never ends or an edge and cloud that
    disagree give none."""
    before, during = r.of("before"), r.of("outage")
    steady = statistics.fmean(s.rss_mb for s in before) if before else None
    peak = max(s.rss_mb for s in during) if during else None
    return [
        ("steady RSS MB", steady),
        ("max RSS during outage MB", peak),
        ("max / steady RSS", peak / steady if peak and steady else None),
        ("readings in outage", r.outage_readings),
        ("outbox at end of outage", r.outbox_at_end),
        ("first delivery s", r.first_delivery_s),
        ("drain s", r.drain_s),
        ("in cloud / at edge", r.cloud_records / r.edge_records
         if r.settled and r.edge_records and not r.open_gaps else None),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
