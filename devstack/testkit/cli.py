"""The `xiaodian` command run in-process, for tests that drive it as a person would: the
whole command (`json_cli`) or only the commands some CLI modules register (`run_commands`)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from collections.abc import Callable, Sequence
from typing import Any


def json_cli(*argv: str) -> Any:
    """`xiaodian ARGV` (a command given --json or printing JSON): its parsed output; fails
    the test, with what it printed, unless it exits 0."""
    from devstack.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    assert code == 0, (argv, out.getvalue())
    return json.loads(out.getvalue())


def run_commands(argv: Sequence[str], *registers: Callable[[Any], None]) -> int:
    """`xiaodian ARGV` through the real argument parser, with only the commands these
    `register` functions (a CLI module's each) add: its exit code."""
    parser = argparse.ArgumentParser(prog="xiaodian")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in registers:
        register(sub)
    args = parser.parse_args(list(argv))
    code: int = args.func(args)
    return code
