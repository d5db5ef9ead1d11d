"""`python -m edge run --config FILE`: the store terminal's entry point.

The installed terminal (docs/deploy.md) carries only the agent's packages and their
dependencies, not the cloud's; `xiaodian` (devstack) composes every part, so the systemd
unit starts the agent through here instead, with the same `edge` subcommands.
"""

from __future__ import annotations

import argparse
import logging
import sys

from edge import cli
from xiaodian.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli.register(sub)
    args = parser.parse_args(["edge", *(sys.argv[1:] if argv is None else argv)])
    # One line per record, no timestamp: journald stamps each line itself.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"python -m edge: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
