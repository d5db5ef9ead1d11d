"""The `xiaodian` command run in-process, for tests that drive it as a person would."""

from __future__ import annotations

import contextlib
import io
import json
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
