"""The exit codes of the signing commands (`firmware ...`, `terminal ...`): 2 when the
artefact is refused (its reason printed), 1 for a key, file or value error, never a
traceback for what a person typed."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from xiaodian import pki


def guarded(handler: Callable[[argparse.Namespace], Any],
            refused: type[Exception]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(handler(args))
        except refused as exc:  # before ValueError: a refusal is one
            print(f"xiaodian: refused, {exc}", file=sys.stderr)
            return 2
        except (pki.PkiError, ValueError, OSError) as exc:
            print(f"xiaodian: {exc}", file=sys.stderr)
            return 1

    return run
