"""End-to-end alert latency, online: `python -m bench.alert_latency [--alerts N]`.

The whole store runs as real processes (StoreStack: simulator, edge agent, TLS Mosquitto,
cloud worker) with the store owner's webhook pointing at a loopback HTTP server that checks
the HMAC signature. The scenario opens each fridge's door for 10 simulated minutes every
20 minutes, staggered across fridges: the door rule tells the owner at 5 min open
("alert") and the door closing clears it ("all_clear").

Latency of a notice = webhook receipt - the real moment its rule became true. That moment
is the door-open fault's start in ground truth (which carries the real `wall` time) plus
the rule's 5 min converted through the simulation speed; for an all-clear it is the fault's
end. Split from the records' own timestamps:
  rule -> edge   the edge's `wall` on the alert event (rule judged, written to the outbox)
  edge -> cloud  the cloud's `received_at` of that event (MQTT, ingest commit)
  cloud -> hook  webhook receipt (escalation tick, notification outbox, sender, HTTP)
Everything runs on one host, so all these clocks are the same clock.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devstack.stack import StoreStack
from devstack.testkit.webhooks import Received, WebhookReceiver, alerts_toml, truth_faults

from .common import check_figures

DOOR_OWNER_S = 300.0  # door_owner_min (5) of the rules' defaults
CYCLE_S = 1200.0  # one door opening per fridge every 20 simulated minutes ...
# ... for 10 min: past the owner's 5 min, short of the 15 min escalation, and long enough
# (2.5 s real at x120) that the owner hears "alert" and then "all_clear": a clear within
# the same edge publish batch would merge into one "resolved" notice.
OPEN_S = 600.0
FIRST_S = 120.0  # the first opening (simulated s), then staggered across fridges


def alert_event_times(cloud_db: Path, store: str) -> dict[tuple[str, str], tuple[float, float]]:
    """(alert id, change) -> (edge wall, cloud received_at) of the alert events, the first
    copy of each change that was owner-level."""
    con = sqlite3.connect(f"file:{cloud_db}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute(
            "SELECT data, wall, received_at FROM events WHERE store = ? AND type = 'alert'"
            " ORDER BY received_at", (store,)).fetchall()
    finally:
        con.close()
    out: dict[tuple[str, str], tuple[float, float]] = {}
    for data, wall, received_at in rows:
        d = json.loads(data)
        if d.get("audience") == "owner":
            out.setdefault((d["id"], d["change"]), (float(wall), float(received_at)))
    return out


# ------------------------------------------------------------------ the benchmark


@dataclass(frozen=True)
class Sample:
    kind: str  # alert | all_clear | resolved
    total: float
    rule_edge: float | None
    edge_cloud: float | None
    cloud_hook: float | None


def scenario_toml(fridges: int, speed: float) -> str:
    # link_dir and truth are required; StoreStack overrides both on the command line.
    lines = [f'[sim]\nseed = 5\nspeed = {speed}\nlink_dir = "run"\ntruth = "run/truth.jsonl"\n']
    for k in range(fridges):
        lines.append(
            f'[[fridges]]\nid = "fridge-{k + 1}"\nset_point_c = 3.0\ndoor_openings_per_hour = 0\n'
            "defrost_every_h = 0\n"
            f'[[fridges.faults]]\nfault = "door_open"\nat_s = {FIRST_S + k * CYCLE_S / fridges}\n'
            f"for_s = {OPEN_S}\nevery_s = {CYCLE_S}\n"
        )
    return "".join(lines)


def measure(got: list[Received], truth: Path, cloud_db: Path, store: str,
            speed: float) -> tuple[list[Sample], list[str]]:
    """Match each door notice to its fault window (the k-th alert of a fridge by start time
    = its k-th door opening) and compute its latencies; also returns problems seen."""
    problems: list[str] = []
    windows = truth_faults(truth, "door_open")
    events = alert_event_times(cloud_db, store)
    door = [r for r in got if r.body["alert"]["rule"] == "door"]
    others = [r for r in got if r.body["alert"]["rule"] != "door"]
    if others:  # true alerts: a door open half the time warms the cabinet
        problems.append(f"not measured: {len(others)} notices of other rules ("
                        + ", ".join(sorted({r.body["alert"]["rule"] for r in others}))
                        + "; the doors are open half the time)")
    ids: dict[str, list[str]] = {}
    for r in sorted(door, key=lambda r: float(r.body["alert"]["started_at"])):
        fr_ids = ids.setdefault(r.body["alert"]["fridge"], [])
        if r.body["alert"]["id"] not in fr_ids:
            fr_ids.append(r.body["alert"]["id"])
    samples: list[Sample] = []
    seen: set[tuple[str, str]] = set()
    for r in door:
        a = r.body["alert"]
        if (a["id"], r.body["kind"]) in seen:
            problems.append(f"duplicate {r.body['kind']} for {a['id']}")
            continue
        seen.add((a["id"], r.body["kind"]))
        k = ids[a["fridge"]].index(a["id"])
        fw = windows.get(a["fridge"], [])
        if k >= len(fw):
            problems.append(f"{a['id']}: no matching door opening in ground truth")
            continue
        start, end = fw[k]
        if r.body["kind"] == "alert":
            true_at: float | None = start + DOOR_OWNER_S / speed
            change = "updated"
        elif r.body["kind"] in ("all_clear", "resolved"):  # resolved: told only after it ended
            true_at, change = end, "cleared"
        else:
            problems.append(f"{a['id']}: unexpected notice {r.body['kind']}")
            continue
        if true_at is None:
            continue
        ev = events.get((a["id"], change))
        samples.append(Sample(
            r.body["kind"], r.at - true_at,
            None if ev is None else ev[0] - true_at,
            None if ev is None else ev[1] - ev[0],
            None if ev is None else r.at - ev[1]))
    return samples, problems


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


SEGMENTS: tuple[tuple[str, Callable[[Sample], float | None]], ...] = (
    ("total", lambda s: s.total), ("rule->edge", lambda s: s.rule_edge),
    ("edge->cloud", lambda s: s.edge_cloud), ("cloud->hook", lambda s: s.cloud_hook))


def table(samples: list[Sample]) -> list[str]:
    rows = [f"{'notice':<10} {'segment':<14} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} "
            f"{'p99 ms':>8} {'max ms':>8}"]
    for kind in ("alert", "all_clear", "resolved", "all"):
        of_kind = [s for s in samples if kind in ("all", s.kind)]
        for name, get in SEGMENTS:
            vals = [v for v in map(get, of_kind) if v is not None]
            if not vals:
                continue
            ms = [v * 1000 for v in vals]
            rows.append(f"{kind:<10} {name:<14} {len(ms):>4} {pct(ms, 50):>8.0f} "
                        f"{pct(ms, 95):>8.0f} {pct(ms, 99):>8.0f} {max(ms):>8.0f}")
    return rows


@contextmanager
def _workdir(keep: str | None) -> Iterator[Path]:
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield Path(keep)
    else:
        with tempfile.TemporaryDirectory(prefix="xd-alert-latency-") as tmp:
            yield Path(tmp)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.alert_latency", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alerts", type=int, default=32, help="owner alerts to measure (32)")
    ap.add_argument("--fridges", type=int, default=4, help="fridges in the store (4)")
    ap.add_argument("--speed", type=float, default=120.0,
                    help="simulated seconds per real second (120)")
    ap.add_argument("--workdir", help="keep the run here (default: a temporary directory)")
    ap.add_argument("--smoke", action="store_true",
                    help="quick check (~15 s): 2 alerts on 2 fridges; exits 1 unless every "
                    "notice kind gives its latencies")
    args = ap.parse_args(argv)
    if args.smoke:
        args.alerts, args.fridges = 2, 2
    if args.alerts < 1 or args.fridges < 1 or args.speed <= 0:
        ap.error("--alerts, --fridges and --speed must be positive")
    cycles = math.ceil(args.alerts / args.fridges)
    sim_s = FIRST_S + cycles * CYCLE_S + OPEN_S
    timeout = sim_s / args.speed + (20.0 if args.smoke else 60.0)  # start-up and slack
    print(f"{args.alerts} door alerts on {args.fridges} fridges, speed x{args.speed:g} "
          f"(~{sim_s / args.speed:.0f} s of {sim_s / 60:.0f} simulated min); "
          f"sampling every 10 s = {10 / args.speed * 1000:.0f} ms real", flush=True)
    secret = os.urandom(32).hex().encode()  # the cloud wants printable ASCII secrets
    with _workdir(args.workdir) as work, WebhookReceiver(secret) as hook:
        scenario = work / "alert_latency.toml"
        scenario.write_text(scenario_toml(args.fridges, args.speed), encoding="utf-8")
        stack = StoreStack(
            work / "store", speed=args.speed, scenario=scenario, sim_flush_s=0.0,
            cloud_alerts_toml=alerts_toml(work / "secrets", "store-001", hook.url, secret))
        try:
            stack.start()

            def enough(got: list[Received]) -> bool:
                door = [r for r in got if r.body["alert"]["rule"] == "door"]
                alerts = {r.body["alert"]["id"] for r in door if r.body["kind"] == "alert"}
                clears = {r.body["alert"]["id"] for r in door if r.body["kind"] == "all_clear"}
                return len(alerts) >= args.alerts and alerts <= clears

            got = hook.wait(enough, timeout)
        finally:
            stack.stop()
        samples, problems = measure(got, stack.truth, stack.cloud_db, stack.store, args.speed)
    n_alerts = sum(s.kind == "alert" for s in samples)
    if hook.refused:
        problems.append(f"{hook.refused} webhook requests with a bad signature")
    if n_alerts < args.alerts:
        problems.append(f"only {n_alerts} of {args.alerts} alerts arrived in {timeout:.0f} s")
    print("\n".join(table(samples)))
    for p in problems:
        print(p if p.startswith("not measured") else f"problem: {p}")
    if n_alerts < args.alerts or hook.refused:
        return 1
    if not args.smoke:
        return 0
    figures: list[tuple[str, float | None]] = []
    for kind in ("alert", "all_clear"):
        of_kind = [s for s in samples if s.kind == kind]
        for name, get in SEGMENTS:
            vals = [v * 1000 for v in map(get, of_kind) if v is not None]
            figures.append((f"{kind} {name} p50 ms", pct(vals, 50) if vals else None))
    return check_figures(figures)


if __name__ == "__main__":
    raise SystemExit(main())
