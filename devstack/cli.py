"""The `xiaodian` command: each package registers its own subcommands here."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence

from xiaodian.config import ConfigError

# Each module has `register(subparsers)` adding its commands; a command's handler is stored
# as `func` on the parsed namespace and returns the process exit code. Keyed by the top-level
# command: a run imports only the modules of the command it runs (`xiaodian edge run` on a
# terminal never loads the cloud, the simulator or the load generator: ~20 MB of RSS and
# half a second of start-up each time), and all of them only for the top-level help.
COMMANDS: dict[str, tuple[str, ...]] = {
    "demo": ("devstack.demo_cli",),
    "edge": ("edge.cli",),
    "cloud": ("cloud_gateway.cli", "cloud_gateway.users_cli"),  # users add to `cloud`
    "sim": ("hw_sim.cli",),
    "serial": ("edge.serial_cli",),  # decode, and sniff/capture through the agent
    "doctor": ("edge.doctor_cli",),
    "scan": ("edge.scan.cli",),
    "broker": ("devstack.security_cli",),
    "pki": ("devstack.security_cli",),
    "firmware": ("devstack.firmware_cli",),  # build, sign, verify, flash
    "rules": ("edge.rules.cli",),
    "pickup": ("cloud_gateway.pickup_cli",),
    "supply": ("devstack.supply_cli",),
    "fleet": ("devstack.fleet_cli",),  # `fleet run`: the load test of broker, workers, PostgreSQL
    "terminal": ("devstack.release_cli",),  # the terminal's own signed release files
}
COMMAND_MODULES = tuple(dict.fromkeys(m for ms in COMMANDS.values() for m in ms))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for `command` only (its modules imported), or for every command."""
    parser = argparse.ArgumentParser(
        prog="xiaodian",
        description="Fresh-food programme for convenience stores: simulator, edge agent, cloud.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS.get(command or "", COMMAND_MODULES):
        module = importlib.import_module(name)
        module.register(sub)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The top-level command named in argv (the first word that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command(words))
    args = parser.parse_args(words)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        print(f"xiaodian: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): nothing left to say, and nobody to say it to.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
