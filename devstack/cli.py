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
# as `func` on the parsed namespace and returns the process exit code.
COMMAND_MODULES = (
    "devstack.demo_cli",
    "edge.cli",
    "cloud_gateway.cli",
    "hw_sim.cli",
    "edge.serial_cli",  # `serial`: decode, and sniff/capture through the agent
    "edge.doctor_cli",
    "edge.scan.cli",
    "devstack.security_cli",
    "devstack.firmware_cli",  # `firmware`: build, sign, verify, flash
    "devstack.release_cli",  # `terminal`: the terminal's own signed release files
    "edge.rules.cli",
    "cloud_gateway.pickup_cli",
    "cloud_gateway.users_cli",  # adds to `cloud`: after cloud_gateway.cli
    "devstack.supply_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xiaodian",
        description="Fresh-food programme for convenience stores: simulator, edge agent, cloud.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
