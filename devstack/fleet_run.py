"""A fleet load test end to end: `run_fleet(FleetOptions(...))` -> FleetReport.

Starts, in a work directory: the PKI (a certificate per store, issued in one pass and kept
for the next run), a private PostgreSQL (devstack.testkit.pg_server, as the tests and
bench.cloud_db start it), Mosquitto with the project's generated config and ACL
(devstack.broker.Broker), `workers` real `xiaodian cloud run` processes on one shared
subscription, and `procs` generator processes (devstack.fleet_gen) that split the stores.
Then: every store connects; one store tries to publish on another's topic (the broker must
refuse); the stores publish for the window; they drain; the database is counted.

Everything runs on this machine: generator, broker, workers and PostgreSQL share its CPUs,
so the report gives each one's CPU over the window and what the rest of the machine used.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import re
import resource
import shutil
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.broker import Broker
from devstack.fleet_gen import GenResult, GenSpec, Phase, foreign_publish, generator_main
from devstack.fleet_store import READINGS_INTERVAL_S, SAMPLE_S
from devstack.process import Part, StackError, _free_port, _tail
from devstack.stack_config import _mqtt_toml, _toml_str
from xiaodian.pki import dev_pki, issue_stores

P99_LIMIT_S = 2.0


@dataclass(frozen=True)
class FleetOptions:
    workdir: Path
    stores: int
    minutes: float = 10.0
    # Time compression: each store sends its 240-s bundle every 240/speed s. The payloads
    # are the real ones; the load is that of stores x speed stores (reported as such).
    speed: float = 1.0
    procs: int = 2  # generator processes
    workers: int = 2  # `xiaodian cloud run` ingest workers
    drain_s: float = 60.0
    prefix: str = "fs"
    seed: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.stores <= 50_000:
            raise ValueError("stores: must be between 1 and 50000")
        if not 0 < self.minutes <= 120:
            raise ValueError("minutes: must be more than 0 and at most 120")
        if not 1 <= self.speed <= 240:
            raise ValueError("speed: must be between 1 and 240")
        if not 1 <= self.procs <= 64 or not 1 <= self.workers <= 8:
            raise ValueError("procs: 1..64, workers: 1..8")

    @property
    def store_ids(self) -> list[str]:
        return [f"{self.prefix}-{n:05d}" for n in range(1, self.stores + 1)]


@dataclass
class FleetReport:
    stores: int
    speed: float
    window_s: float
    cert_issue_s: float
    certs_issued: int
    connect_s: float
    connected: int
    accepted_ids: int  # distinct store client ids in the broker's log
    foreign_publish: str  # the broker's answer to a store publishing on another's topic
    bundles: int
    readings_published: int
    events_published: int
    readings_stored: int
    events_stored: int
    duplicates: int
    lost: int
    unconfirmed: int
    republished: int
    refused: int
    disconnects: int
    p50_s: float
    p95_s: float
    p99_s: float
    max_s: float
    db_p99_s: float  # publish -> received_at recorded by the worker
    lag_p99_s: float = 0.0
    msgs_per_s: float = 0.0
    readings_per_s: float = 0.0
    tls_bytes_per_s: float = 0.0
    payload_bytes_per_s: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # % of one core over the window
    machine_cpu_pct: float = 0.0  # all processes, of all cores
    cores: int = 0
    load_before: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def equivalent_stores(self) -> float:
        return self.stores * self.speed

    @property
    def ok(self) -> bool:
        return (self.lost == 0 and self.duplicates == 0 and self.unconfirmed == 0
                and self.connected == self.stores and self.p99_s <= P99_LIMIT_S
                and self.bundles > 0 and self.refused == 0)

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["equivalent_stores"] = self.equivalent_stores
        out["ok"] = self.ok
        return out


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _services(workers: int) -> list[str]:
    from cloud_gateway.commands import downlink_publisher_id

    names = [f"ingest-{n}" for n in range(1, workers + 1)]
    return [*names, *(downlink_publisher_id(n) for n in names)]


def _cloud_toml(broker: Broker, pki: Any, url: str, worker: str, port: int) -> str:
    return (f"[cloud]\ndatabase_url = {_toml_str(url)}\nworker_id = {_toml_str(worker)}\n"
            f'http_host = "127.0.0.1"\nhttp_port = {port}\n'
            + _mqtt_toml(broker, pki, worker, 5.0))


def _http_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


class _Cpu:
    """CPU seconds of named process trees between two samples (psutil)."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids

    def sample(self) -> dict[str, float]:
        import psutil  # type: ignore[import-untyped]  # a test extra: only this tool needs it

        out: dict[str, float] = {}
        for name, roots in self.pids.items():
            total = 0.0
            for pid in roots:
                try:
                    proc = psutil.Process(pid)
                    procs = [proc, *proc.children(recursive=True)]
                except psutil.NoSuchProcess:
                    continue
                for p in procs:
                    try:
                        t = p.cpu_times()
                    except psutil.NoSuchProcess:
                        continue
                    total += t.user + t.system
            out[name] = total
        return out


def machine_busy_s() -> float:
    import psutil

    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def _db_counts(url: str, prefix: str) -> tuple[int, int, int, dict[tuple[str, int], float]]:
    """(readings, events, duplicate rows, received_at of each bundle's first fridge-1 row)."""
    import psycopg

    like = f"{prefix}-%"
    with psycopg.connect(url) as conn:
        readings, distinct_r = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT (store, device, boot, seq)) FROM readings"
            " WHERE store LIKE %s", (like,)).fetchone() or (0, 0)
        events, distinct_e = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT (store, device, boot, seq)) FROM events"
            " WHERE store LIKE %s", (like,)).fetchone() or (0, 0)
        per = round(READINGS_INTERVAL_S / SAMPLE_S)
        rows = conn.execute(
            "SELECT store, seq, received_at FROM readings WHERE store LIKE %s AND"
            " device = 'fridge-1' AND seq %% %s = 1", (like, per)).fetchall()
    firsts = {(str(s), int(q)): float(r) for s, q, r in rows}
    return (int(readings), int(events), int(readings - distinct_r + events - distinct_e),
            firsts)


def _accepted_ids(log: Path, prefix: str) -> int:
    pattern = re.compile(rf" as ({re.escape(prefix)}-\d+) \(")
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return 0
    return len(set(pattern.findall(text)))


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # Mosquitto inherits it


def run_fleet(opts: FleetOptions, say: Any = print) -> FleetReport:
    """One window at `opts.speed`."""
    return run_fleet_steps(opts, [opts.speed], say)[0]


def run_fleet_steps(opts: FleetOptions, speeds: list[float], say: Any = print,
                    stop_when_failed: bool = True) -> list[FleetReport]:
    """Connect the fleet once, then one window (and its drain) per speed, in order; the
    next is skipped once one is not sustained (`stop_when_failed`)."""
    from devstack.testkit.pg_server import PgServer

    work = opts.workdir
    for sub in ("broker", "cloud", "logs"):
        shutil.rmtree(work / sub, ignore_errors=True)
        (work / sub).mkdir(parents=True, exist_ok=True)
    _raise_fd_limit()
    stores = opts.store_ids
    t0 = time.perf_counter()
    pki = dev_pki(work / "pki", stores=[], services=_services(opts.workers))
    issued = issue_stores(work / "pki", stores)
    cert_s = time.perf_counter() - t0
    pki = dataclasses.replace(pki, stores=tuple(stores))
    say(f"certificates: {issued} issued in {cert_s:.1f} s ({len(stores)} stores)")
    load_before = os.getloadavg()[0]
    server = PgServer.start()
    broker = Broker(work / "broker", pki, start_timeout=60.0)
    parts: list[Part] = []
    procs: list[Any] = []
    conns: list[Any] = []
    reports: list[FleetReport] = []
    try:
        url = server.create_database("fleet")
        broker.start()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        ports = []
        for n in range(1, opts.workers + 1):
            worker, port = f"ingest-{n}", _free_port()
            toml = work / "cloud" / f"{worker}.toml"
            toml.write_text(_cloud_toml(broker, pki, url, worker, port), encoding="utf-8")
            part = Part(worker, [sys.executable, "-m", "xiaodian", "cloud", "run", "--config",
                                 str(toml)], work / "logs" / f"{worker}.log")
            part.start(env)
            parts.append(part)
            ports.append(port)
        deadline = time.monotonic() + 60
        while not all(_http_ok(p) for p in ports):
            dead = [p for p in parts if not p.alive()]
            if dead or time.monotonic() > deadline:
                name = (dead or parts)[0]
                raise StackError(f"cloud worker {name.name} not ready:\n{_tail(name.log)}")
            time.sleep(0.2)
        say(f"broker on port {broker.port}, {opts.workers} cloud workers, PostgreSQL"
            f" {server.port}")
        # Before the fleet connects: the same identity connecting later takes the session
        # over (use_username_as_clientid), which would count as a store's disconnect.
        a, b = stores[0], stores[min(1, len(stores) - 1)]
        foreign = "not tried (one store)"
        if a != b:
            foreign = foreign_publish(broker.host, broker.port, pki.ca,
                                      work / "pki" / "clients" / f"{a}.crt",
                                      work / "pki" / "clients" / f"{a}.key", a, b)
        say(f"{a} publishing on {b}'s topic: {foreign}")

        ctx = multiprocessing.get_context("spawn")
        for i in range(opts.procs):
            names = tuple(stores[i::opts.procs])
            if not names:
                continue
            parent, child = ctx.Pipe()
            spec = GenSpec(names, broker.host, broker.port, pki.ca, work / "pki" / "clients",
                           opts.seed * 1000 + i)
            proc = ctx.Process(target=generator_main, args=(spec, child), name=f"fleet-gen-{i}")
            proc.start()
            procs.append(proc)
            conns.append(parent)
        connected = failures = 0
        connect_s = 0.0
        errors: list[str] = []
        for c in conns:
            if not c.poll(120 + len(stores) * 0.05):
                raise StackError("a generator did not finish connecting its stores")
            _, ok, failed, took, errs = c.recv()
            connected, failures = connected + ok, failures + failed
            connect_s = max(connect_s, took)
            errors += errs
        say(f"connected: {connected} of {len(stores)} stores in {connect_s:.1f} s"
            f" ({failures} failed)")
        accepted = _accepted_ids(broker.log_path, opts.prefix)
        cpu = _Cpu({"broker": [broker.pid or 0], "postgresql": [server.proc.pid],
                    **{p.name: [p.proc.pid] for p in parts if p.proc is not None},
                    "generators": [p.pid for p in procs]})
        published = 0
        seen = (0, 0)
        for speed in speeds:
            interval = READINGS_INTERVAL_S / speed
            window = opts.minutes * 60
            phase = Phase(time.time() + 2.0, interval, window, opts.drain_s,
                          min(30.0, max(3.0, interval / 2)))
            for c in conns:
                c.send(phase)
            time.sleep(max(0.0, phase.go - time.time()))
            cpu0, busy0, wall0 = cpu.sample(), machine_busy_s(), time.monotonic()
            load = os.getloadavg()[0]
            say(f"speed {speed:g}: for {window:.0f} s, one bundle per store every"
                f" {interval:g} s")
            time.sleep(max(0.0, phase.go + window - time.time()))
            cpu1, busy1, wall1 = cpu.sample(), machine_busy_s(), time.monotonic()
            span = wall1 - wall0
            results: list[GenResult] = []
            for c in conns:
                if not c.poll(opts.drain_s + 120):
                    raise StackError("a generator did not report after its drain")
                results.append(c.recv()[1])
            readings, events, dups, firsts = _db_counts(url, opts.prefix)
            published += sum(r.readings + r.events for r in results)
            report = _report(results, firsts, readings, events, dups, published)
            # This window's rows (lost is counted over every window so far, above).
            report.readings_stored, report.events_stored = readings - seen[0], events - seen[1]
            seen = (readings, events)
            report.speed, report.window_s, report.stores = speed, window, len(stores)
            report.cert_issue_s, report.certs_issued = cert_s, issued
            report.connect_s, report.connected, report.accepted_ids = (connect_s, connected,
                                                                        accepted)
            report.foreign_publish = foreign
            report.cpu = {k: 100 * (cpu1[k] - cpu0[k]) / span for k in cpu0}
            report.machine_cpu_pct = 100 * (busy1 - busy0) / span / (os.cpu_count() or 1)
            report.cores = os.cpu_count() or 1
            report.load_before = load_before if not reports else load
            report.errors = (errors + report.errors)[:20]
            reports.append(report)
            say(f"speed {speed:g}: {'sustained' if report.ok else 'NOT sustained'}, p99"
                f" {report.p99_s:.3f} s, lost {report.lost}")
            if stop_when_failed and not report.ok:
                break
        for c in conns:
            c.send("stop")
        for proc in procs:
            proc.join(30)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
        for part in parts:
            part.stop()
        broker.stop()
        server.stop()
    return reports


def _report(results: list[GenResult], firsts: dict[tuple[str, int], float], readings: int,
            events: int, dups: int, published: int) -> FleetReport:
    """A window's figures from the generators' results and the database's counts;
    `published`: records the fleet published in every window so far (the database holds
    them all)."""
    latencies = [x for r in results for x in r.latencies]
    db_lat = [firsts[(s, q)] - t for r in results for s, q, t in r.first_seqs
              if (s, q) in firsts]
    window = max(1e-9, results[0].window_s) if results else 1.0
    published_r = sum(r.readings for r in results)
    bundles = sum(r.bundles for r in results)
    return FleetReport(
        stores=0, speed=1.0, window_s=window, cert_issue_s=0.0, certs_issued=0,
        connect_s=0.0, connected=0, accepted_ids=0, foreign_publish="",
        bundles=bundles, readings_published=published_r,
        events_published=sum(r.events for r in results),
        readings_stored=readings, events_stored=events, duplicates=dups,
        lost=published - (readings + events - dups),
        unconfirmed=sum(r.unconfirmed_records for r in results),
        republished=sum(r.republished for r in results),
        refused=sum(r.refused for r in results),
        disconnects=sum(r.disconnects for r in results),
        p50_s=percentile(latencies, 50), p95_s=percentile(latencies, 95),
        p99_s=percentile(latencies, 99), max_s=max(latencies, default=math.nan),
        db_p99_s=percentile(db_lat, 99),
        lag_p99_s=percentile([x for r in results for x in r.lags], 99),
        msgs_per_s=bundles / window, readings_per_s=published_r / window,
        tls_bytes_per_s=sum(r.tcp_sent + r.tcp_received for r in results) / window,
        payload_bytes_per_s=sum(r.payload_bytes for r in results) / window,
        errors=[e for r in results for e in r.errors][:20])
