"""`xiaodian sim run SCENARIO [--speed N] [--for SECONDS] [--link-dir DIR] [--truth FILE]`."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from hw_sim.runner import Runner
from hw_sim.scenario import load_scenario

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    sim = subparsers.add_parser("sim", help="hardware simulator: fridges and scanners on ptys")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True, metavar="SUBCOMMAND")
    run = sim_sub.add_parser(
        "run",
        help="run a scenario until SIGTERM/SIGINT (or --for)",
        description="Simulate the scenario's devices on pseudo-terminals; LINK_DIR/<device-id> "
        "links to each pty. Prints one line per device: 'id link -> /dev/pts/N'.",
    )
    run.add_argument("scenario", type=Path, metavar="SCENARIO", help="scenario TOML file")
    run.add_argument("--speed", type=_positive, help="simulated seconds per real second")
    run.add_argument(
        "--for",
        dest="for_s",
        type=_positive,
        metavar="SECONDS",
        help="stop after this many real seconds",
    )
    run.add_argument("--link-dir", type=Path, metavar="DIR", help="directory for the symlinks")
    run.add_argument("--truth", type=Path, metavar="FILE", help="ground-truth JSON-lines file")
    run.add_argument(
        "--flush-s",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="at exit, give attached hosts this long to take what the fridges still hold "
        "(0: stop at once, as on a power cut; default 2)",
    )
    run.set_defaults(func=run_command)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def run_command(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    overrides: dict[str, Any] = {}
    if args.speed is not None:
        overrides["speed"] = args.speed
    if args.link_dir is not None:
        overrides["link_dir"] = args.link_dir.resolve()
    if args.truth is not None:
        overrides["truth"] = args.truth.resolve()
    if overrides:
        scenario = dataclasses.replace(scenario, sim=dataclasses.replace(scenario.sim, **overrides))

    try:
        runner = Runner(scenario)
    except OSError as exc:  # no ptys left, link dir not writable, a real file at a link path
        print(f"xiaodian sim: cannot start: {exc}", file=sys.stderr)
        return 1

    def stop(signum: int, frame: FrameType | None) -> None:
        runner.request_stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for line in runner.links():
            print(line)
        sys.stdout.flush()  # a parent process waits for these lines before opening the ports
        runner.run(args.for_s)
        left = runner.flush(args.flush_s)
        log.info("%s; %d records left on the devices", runner.summary(), left)
    finally:
        runner.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
