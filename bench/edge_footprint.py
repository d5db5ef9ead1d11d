"""Edge footprint at steady state: CPU and resident memory of the real `xiaodian edge run`
reading 4 simulated fridges at 1 Hz (scanner attached, idle), against the same agent idle.

Processes (all real, all children of this one): TLS Mosquitto, `xiaodian cloud run`,
`xiaodian sim run` (4 fridges, sample_interval_s = 1, speed 1, one scanner with no scans),
the busy agent (store-001, its MQTT connection through a byte-counting loopback relay) and,
at the same time, an idle agent (store-002, no devices, connected to the same broker).

Baseline: the idle agent is the fixed cost of the process (interpreter, paho, TLS session,
SQLite, the 50 ms loop); busy minus idle is what 4 fridges at 1 Hz cost. Both run in the
same window, so machine noise hits them alike. The simulator is shown for reference only.

After a warm-up, psutil samples each process every second: CPU percent of one core (can
exceed 100 with threads) and RSS. Flat memory = RSS at the end close to RSS at the start.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # no stubs installed; no installs

from devstack.broker import Broker

from .common import (
    IDLE_STORE,
    SERVICE,
    STORE,
    ByteRelay,
    CloudProcess,
    Table,
    check_figures,
    edge_config,
    edge_toml,
    make_pki,
    mqtt_settings,
    note,
    start_child,
    stop_child,
    wait_for,
)

FRIDGES = 4
MONTH_S = 30 * 86400


def scenario_toml(link_dir: Path, truth: Path) -> str:
    fridges = "".join(
        f'[[fridges]]\nid = "fridge-{i}"\nset_point_c = {2.0 + i}\nsample_interval_s = 1\n'
        for i in range(1, FRIDGES + 1)
    )
    return (
        f'[sim]\nseed = 7\nspeed = 1.0\nlink_dir = "{link_dir}"\ntruth = "{truth}"\n'
        + fridges
        + '[[scanners]]\nid = "scanner-1"\nscans_per_hour = 0\n'
    )


@dataclass
class Samples:
    name: str
    proc: psutil.Process
    cpu: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)  # MB

    def sample(self) -> None:
        with self.proc.oneshot():
            self.cpu.append(float(self.proc.cpu_percent(interval=None)))
            self.rss.append(self.proc.memory_info().rss / 1e6)

    def row(self, base: Samples | None) -> list[object]:
        cpu, rss = statistics.fmean(self.cpu), statistics.fmean(self.rss)
        if base is None:
            ratio = "(baseline)"
        else:
            base_cpu = statistics.fmean(base.cpu)
            cpu_x = f"{cpu / base_cpu:.1f}x" if base_cpu > 0 else "-"
            ratio = f"{cpu_x} / {rss / statistics.fmean(base.rss):.2f}x"
        return [self.name, cpu, max(self.cpu), rss, max(self.rss), self.rss[0], self.rss[-1],
                self.rss[-1] - self.rss[0], ratio]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.edge_footprint", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    # A whole number of the agent's 60 s readings intervals, or the traffic figures count
    # a fraction of a batch: 90 s showed 2.7 readings/s for the 4 the fridges make.
    p.add_argument("--duration", type=float, default=120.0,
                   help="seconds sampled at steady state (default 120: two readings "
                        "intervals)")
    p.add_argument("--warmup", type=float, default=10.0, help="seconds before sampling")
    p.add_argument("--smoke", action="store_true",
                   help="quick check (~20 s): readings_interval_s = 5 instead of the shipped "
                   "60, 2 s warm-up, 10 s sampled; exits 1 unless every figure is there")
    args = p.parse_args(argv)
    # The shipped agent sends routine readings once a minute: too slow for a smoke run.
    args.readings_interval = 60.0
    if args.smoke:
        args.duration, args.warmup, args.readings_interval = 10.0, 2.0, 5.0
    if not 5 <= args.duration <= 3600 or not 0 <= args.warmup <= 300:
        p.error("--duration must be 5..3600 and --warmup 0..300")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    note(f"edge footprint: {FRIDGES} fridges at 1 Hz + idle scanner, speed 1, "
         f"warm-up {args.warmup:g} s, sampling {args.duration:g} s")
    with tempfile.TemporaryDirectory(prefix="xd-bench-footprint-") as tmp:
        root = Path(tmp)
        pki = make_pki(root)
        children: list[subprocess.Popen[bytes]] = []
        with Broker(root / "broker", pki) as broker, \
                ByteRelay(broker.host, broker.port) as relay:
            cloud = CloudProcess(root / "cloud",
                                 mqtt_settings(broker.host, broker.port, pki, SERVICE))
            try:
                cloud.start()
                result = _run(root, pki, broker, relay, cloud, children, args)
            finally:
                for proc in reversed(children):
                    stop_child(proc)
                cloud.stop()
    procs, stats = result
    busy, idle, sim = procs
    Table(
        "Steady-state footprint (CPU % of one core; RSS in MB; sampled every 1 s)",
        ["process", "CPU mean", "CPU max", "RSS mean", "RSS max", "RSS start", "RSS end",
         "RSS growth", "vs idle agent (CPU / RSS)"],
        [busy.row(idle), idle.row(None), sim.row(idle)],
    ).print()
    Table("What the busy agent moved in the sampling window", ["figure", "value"], stats).print()
    note("busy - idle = the cost of 4 fridges at 1 Hz. The simulator row is for reference (it "
         "runs the thermal models and writes the ground truth).")
    if not args.smoke:
        return 0
    figures: list[tuple[str, float | None]] = [
        ("busy agent CPU % mean", statistics.fmean(busy.cpu) if busy.cpu else None),
        ("busy agent RSS MB mean", statistics.fmean(busy.rss) if busy.rss else None),
        ("idle agent RSS MB mean", statistics.fmean(idle.rss) if idle.rss else None),
        # The idle agent's CPU can round to 0 % in a 10 s window: its RSS is the baseline.
        ("busy / idle agent RSS", statistics.fmean(busy.rss) / statistics.fmean(idle.rss)
         if busy.rss and idle.rss else None),
    ]
    traffic = {str(name): value for name, value in stats}
    for name in ("readings into the cloud / s", "bytes per reading (TLS level, all traffic)"):
        value = traffic.get(name)
        figures.append((name, float(value) if isinstance(value, int | float) else None))
    return check_figures(figures)


def _run(
    root: Path,
    pki: object,
    broker: Broker,
    relay: ByteRelay,
    cloud: CloudProcess,
    children: list[subprocess.Popen[bytes]],
    args: argparse.Namespace,
) -> tuple[list[Samples], list[list[object]]]:
    from xiaodian.pki import DevPki

    assert isinstance(pki, DevPki)
    links, logs = root / "tty", root / "logs"
    links.mkdir()
    logs.mkdir()
    scenario = root / "scenario.toml"
    scenario.write_text(scenario_toml(links, root / "truth.jsonl"), encoding="utf-8")
    sim = start_child(["sim", "run", str(scenario)], logs / "sim.log")
    children.append(sim)
    devices = [f"fridge-{i}" for i in range(1, FRIDGES + 1)]
    wait_for(lambda: all((links / d).exists() for d in [*devices, "scanner-1"]), 20,
             f"simulator links (see {logs / 'sim.log'})")

    busy_cfg = edge_config(
        root / "edge-busy", mqtt_settings("127.0.0.1", relay.port, pki, STORE),
        fridges=[(d, links / d) for d in devices], scanners=[("scanner-1", links / "scanner-1")],
        readings_interval_s=args.readings_interval,
    )
    idle_cfg = edge_config(root / "edge-idle",
                           mqtt_settings(broker.host, broker.port, pki, IDLE_STORE),
                           store=IDLE_STORE)
    procs: list[Samples] = []
    for name, cfg in (("edge agent, 4 fridges @ 1 Hz", busy_cfg), ("edge agent, idle", idle_cfg)):
        toml = root / f"{cfg.edge.store_id}.toml"
        toml.write_text(edge_toml(cfg), encoding="utf-8")
        proc = start_child(["edge", "run", "--config", str(toml)], logs / f"{name[:4]}.log")
        children.append(proc)
        procs.append(Samples(name, psutil.Process(proc.pid)))
    procs.append(Samples("simulator (4 fridges, reference)", psutil.Process(sim.pid)))
    # Routine readings go up once per readings interval (60 s by default, as in a shop).
    first_s = 30 + busy_cfg.edge.readings_interval_s
    wait_for(lambda: cloud.readings() > 0, first_s, f"first readings in the cloud (see {logs})",
             0.2)

    time.sleep(args.warmup)
    for s in procs:
        s.proc.cpu_percent(interval=None)  # primes the counter; the next call covers 1 s
    up0, down0 = relay.snapshot()
    n0, m0 = cloud.readings(), int(cloud.ingest_status()["received"])
    t0 = time.monotonic()
    ticks = int(args.duration)
    for i in range(1, ticks + 1):
        time.sleep(max(0.0, t0 + i - time.monotonic()))
        for s in procs:
            if s.proc.is_running():
                s.sample()
        for c in children:
            if c.poll() is not None:
                raise RuntimeError(f"a child exited early (pid {c.pid}); see {logs}")
    elapsed = time.monotonic() - t0
    up, down = (a - b for a, b in zip(relay.snapshot(), (up0, down0), strict=True))
    readings = cloud.readings() - n0
    messages = int(cloud.ingest_status()["received"]) - m0  # includes the two agents' states
    rate = readings / elapsed
    bytes_s = (up + down) / elapsed
    stats: list[list[object]] = [
        ["window s", elapsed],
        ["readings into the cloud / s", rate],
        ["messages received by the cloud / s", messages / elapsed],
        ["readings per message", readings / messages if messages else 0.0],
        ["bytes on the agent's TLS connection / s (up + down)", bytes_s],
        ["bytes per reading (TLS level, all traffic)", (up + down) / readings if readings else 0.0],
        ["MB per month at this rate (TLS level)", bytes_s * MONTH_S / 1e6],
    ]
    return procs, stats


if __name__ == "__main__":
    raise SystemExit(main())
