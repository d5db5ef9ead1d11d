"""Backlog drain: an outbox left by 24 h offline, drained through TLS Mosquitto into the
cloud database.

Each phase gets a fresh broker, a fresh `xiaodian cloud run` child process (the real
ingest worker: ack after commit, synchronous=FULL) and an outbox written with
EdgeStore.add. The edge side runs in this process:

- agent: the real edge.agent.Agent, driven by Agent.run() with no serial ports, so the
  shipped publish loop (OutboxPublisher.publish every publish_interval_s, batches of max_batch
  records per stream, acknowledge on PUBACK) decides the pace;
- agent, unpaced: the same with publish_interval_s at the minimum the config allows, to
  show how much of the time is the loop's pacing rather than the network or the cloud;
- naive (baseline): the same EdgeStore outbox and Uplink session, but one QoS 1 message per
  reading, published as fast as the in-flight window allows (no pacing at all), acks
  applied like the agent's. It is the best case for one-message-per-reading, so the ratio
  is a lower bound on what batching buys.

Time to empty = from the start of the drain until the cloud database holds every record.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]  # no stubs installed; no installs

from edge.agent import Agent
from edge.store import EdgeStore, RecordKey
from edge.uplink import Uplink
from xiaodian import __version__
from xiaodian.pki import DevPki
from xiaodian.wire import payloads

from .common import (
    STORE,
    CloudProcess,
    Table,
    broker_and_cloud,
    build_outbox,
    check_figures,
    edge_config,
    make_pki,
    mqtt_settings,
    note,
    synthetic_readings,
)

FRIDGES = 4
SAMPLE_S = 10.0
HOURS = 24.0
POLL_S = 0.05  # how often the cloud row count is sampled
STALL_S = 5.0  # no new cloud rows for this long after the edge is done: the rest is lost


@dataclass(frozen=True)
class Phase:
    label: str
    records: int  # in the backlog
    delivered: int  # in the cloud database at the end
    messages: int  # PUBLISH packets the edge sent (excluding its birth/death state)
    outbox_empty_s: float | None  # all PUBACKs received
    cloud_done_s: float | None  # every record committed in the cloud database
    elapsed_s: float  # until the last record arrived in the cloud (== cloud_done_s if all did)
    edge_cpu_s: float
    cloud_cpu_s: float
    ingest: dict[str, Any]  # the cloud worker's counters at the end (GET /api/ingest)

    @property
    def lost(self) -> int:
        """Records the edge saw acknowledged (outbox empty) that never reached the cloud."""
        return self.records - self.delivered if self.outbox_empty_s is not None else 0

    @property
    def rate(self) -> float:
        """Records per second into the cloud database while records were arriving."""
        return self.delivered / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def projected_s(self) -> float:
        return self.records / self.rate if self.rate else float("inf")


class CloudWatch:
    """Samples the cloud's row count from a thread: when it reaches the target, and when it
    last grew (a count that stops growing short of the target means records were lost)."""

    def __init__(self, cloud: CloudProcess, target: int, t0: float) -> None:
        self.cloud, self.target, self.t0 = cloud, target, t0
        self.count = 0
        self.done_at: float | None = None
        self.last_growth = 0.0  # seconds after t0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cloud-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            count = self.cloud.readings()
            now = time.monotonic() - self.t0
            if count != self.count:
                self.count, self.last_growth = count, now
            if count >= self.target:
                self.done_at = now
                return
            self._stop.wait(POLL_S)

    def wait(self, until: float, stall_s: float = STALL_S) -> None:
        """Block until done, until the monotonic time `until`, or until the count has not
        grown for `stall_s` (called once the edge's outbox is empty or the cap is reached)."""
        while self._thread.is_alive() and time.monotonic() < until:
            if time.monotonic() - self.t0 - self.last_growth > stall_s:
                break
            self._thread.join(0.1)
        self._stop.set()
        self._thread.join(1.0)


def _cpu(cloud: CloudProcess) -> float:
    if cloud.proc is None:
        return 0.0
    t = psutil.Process(cloud.proc.pid).cpu_times()
    return float(t.user + t.system)


def agent_phase(
    workdir: Path, pki: DevPki, label: str, records: int, interval_s: float, cap_s: float
) -> Phase:
    readings = synthetic_readings(FRIDGES, SAMPLE_S, HOURS)[:records]
    with broker_and_cloud(workdir, pki) as (broker, cloud):
        cfg = edge_config(
            workdir / "edge",
            mqtt_settings(broker.host, broker.port, pki, STORE),
            publish_interval_s=interval_s,
        )
        build_outbox(cfg.edge.db_path, readings)
        agent = Agent(cfg)
        cloud_cpu0, cpu0 = _cpu(cloud), time.process_time()
        t0 = time.monotonic()
        watch = CloudWatch(cloud, len(readings), t0)
        empty_at: float | None = None
        next_check = t0

        def until() -> bool:
            nonlocal empty_at, next_check
            now = time.monotonic()
            if now - t0 > cap_s:
                return True
            if now < next_check:
                return False
            next_check = now + POLL_S
            if agent.store.db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0:
                empty_at = now - t0
                return True
            return False

        agent.run(until=until)  # its shutdown() sends the offline state and closes the store
        watch.wait(t0 + cap_s + 10.0)
        edge_cpu = time.process_time() - cpu0
        elapsed = watch.done_at if watch.done_at is not None else watch.last_growth
        return Phase(
            label, len(readings), watch.count, agent.uplink.counters.published, empty_at,
            watch.done_at, elapsed, edge_cpu, _cpu(cloud) - cloud_cpu0, cloud.ingest_status(),
        )


def naive_phase(workdir: Path, pki: DevPki, records: int, cap_s: float) -> Phase:
    readings = synthetic_readings(FRIDGES, SAMPLE_S, HOURS)[:records]
    with broker_and_cloud(workdir, pki) as (broker, cloud):
        settings = mqtt_settings(broker.host, broker.port, pki, STORE)
        path = workdir / "edge" / "edge.sqlite3"
        build_outbox(path, readings)
        store = EdgeStore(path)
        uplink = Uplink(settings, STORE, store.boot, [], __version__)
        devices = sorted({r.device for r in readings})
        topic = payloads.topic(STORE, "telemetry")
        cloud_cpu0, cpu0 = _cpu(cloud), time.process_time()
        t0 = time.monotonic()
        watch = CloudWatch(cloud, len(readings), t0)
        acked = 0
        empty_at: float | None = None
        generation = -1
        cursors: dict[str, tuple[int, int]] = {}
        todo: deque[tuple[str, int, dict[str, Any]]] = deque()
        try:
            while time.monotonic() - t0 < cap_s:
                uplink.poll(timeout=0.05)
                keys: list[RecordKey] = uplink.take_acked()
                if keys:
                    acked += store.acknowledge(keys)
                if acked >= len(readings):
                    empty_at = time.monotonic() - t0
                    break
                if uplink.generation != generation:  # new connection: resend from the oldest
                    generation, cursors = uplink.generation, {}
                    todo.clear()
                while uplink.can_publish():
                    if not todo:
                        for dev in devices:
                            batch = store.next_batch("readings", dev, cursors.get(dev, (0, 0)),
                                                     500)
                            if batch is not None:
                                todo.extend((dev, batch.boot, r) for r in batch.records)
                                cursors[dev] = (batch.boot, int(batch.records[-1]["seq"]))
                        if not todo:
                            break
                    dev, boot, rec = todo[0]
                    body = payloads.batch_payload("readings", STORE, dev, boot, [rec])
                    key: RecordKey = ("readings", dev, boot, rec["seq"])
                    if not uplink.publish(topic, body, [key]):
                        break
                    todo.popleft()
        finally:
            uplink.close()
            last = uplink.take_acked()
            if last:
                store.acknowledge(last)
            store.close()
        watch.wait(t0 + cap_s + 10.0)
        edge_cpu = time.process_time() - cpu0
        elapsed = watch.done_at if watch.done_at is not None else watch.last_growth
        return Phase(
            "naive: 1 reading/message", len(readings), watch.count,
            uplink.counters.published, empty_at, watch.done_at, elapsed, edge_cpu,
            _cpu(cloud) - cloud_cpu0, cloud.ingest_status(),
        )


INGEST_COUNTERS = ("received", "stored", "acked", "queue_full", "resyncs", "connects")


def _time_to_empty(ph: Phase) -> object:
    if ph.cloud_done_s is not None:
        return ph.cloud_done_s
    if ph.lost:
        return "never"
    return f">{ph.elapsed_s:.0f} (~{ph.projected_s:,.0f})"


def _s(v: float | None) -> object:
    return "-" if v is None else v


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.backlog_drain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=int(FRIDGES * HOURS * 3600 / SAMPLE_S),
                   help="backlog size (default: 24 h of 4 fridges every 10 s)")
    p.add_argument("--cap", type=float, default=60.0,
                   help="seconds each phase may publish at most (default 60); an unfinished "
                   "phase is reported with its rate and a projected time to empty")
    p.add_argument("--smoke", action="store_true",
                   help="CI's quick run: 2,000 records, 20 s cap; exits 1 unless every phase "
                   "gives a figure and the shipped agent empties the backlog")
    args = p.parse_args(argv)
    if args.smoke:
        args.records, args.cap = 2000, 20.0
    if not 1 <= args.records <= FRIDGES * HOURS * 3600 / SAMPLE_S or not 1 <= args.cap <= 600:
        p.error("--records must be 1..34560 and --cap 1..600")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    note(f"backlog drain: {args.records:,} readings ({FRIDGES} fridges, every {SAMPLE_S:g} s,"
         f" {HOURS:g} h offline), TLS Mosquitto -> `xiaodian cloud run` (child process)")
    with tempfile.TemporaryDirectory(prefix="xd-bench-drain-") as tmp:
        root = Path(tmp)
        pki = make_pki(root)
        phases = [
            agent_phase(root / "agent", pki, "agent (shipped: publish every 1 s)",
                        args.records, 1.0, args.cap),
            agent_phase(root / "agent-fast", pki, "agent (publish_interval_s=0.05)",
                        args.records, 0.05, args.cap),
            naive_phase(root / "naive", pki, args.records, args.cap),
        ]
    base = phases[-1]
    Table(
        "Backlog drain (time to empty = until every record is in the cloud database)",
        ["edge", "records", "in cloud", "LOST", "messages", "rec/msg", "outbox empty s",
         "time to empty s", "records/s", "edge CPU s", "cloud CPU s", "x naive rate"],
        [
            [
                ph.label, ph.records, ph.delivered, ph.lost, ph.messages,
                ph.records / ph.messages if ph.messages else 0.0,
                _s(ph.outbox_empty_s), _time_to_empty(ph), ph.rate, ph.edge_cpu_s,
                ph.cloud_cpu_s, f"{ph.rate / base.rate:.1f}x" if base.rate else "-",
            ]
            for ph in phases
        ],
    ).print()
    Table(
        "Cloud ingest worker counters at the end of each phase",
        ["edge", *INGEST_COUNTERS],
        [[ph.label, *(int(ph.ingest.get(k, 0)) for k in INGEST_COUNTERS)] for ph in phases],
    ).print()
    note("records/s = records in the cloud / seconds until the last of them arrived."
         " LOST = acknowledged to the edge by the broker (so deleted from the outbox) but"
         " never stored by the cloud. CPU = user+system seconds of the edge (this process)"
         " and of the cloud process.")
    for ph in phases:
        if ph.lost:
            note(f"WARNING {ph.label}: {ph.lost:,} of {ph.records:,} records were acknowledged"
                 " to the edge and never reached the cloud database (see docs/benchmarks.md).")
    # A benchmark that measured nothing must not pass for one that measured something.
    problems = [f"{ph.label}: no records/s figure" for ph in phases if not ph.rate]
    shipped = phases[0]
    if shipped.cloud_done_s is None:
        problems.append(f"{shipped.label}: the backlog was not in the cloud within "
                        f"{args.cap:g} s")
    for problem in problems:
        note(f"FAILED {problem}")
    code = 1 if problems else 0
    if args.smoke:  # the figures, for tests/test_bench_smoke.py
        code |= check_figures([
            *((f"{ph.label} records/s", ph.rate) for ph in phases),
            ("shipped x naive rate", shipped.rate / base.rate if base.rate else None),
        ])
    return code


if __name__ == "__main__":
    raise SystemExit(main())
