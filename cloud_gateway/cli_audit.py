"""The audit row of a write made from the command line (docs/security.md)."""

from __future__ import annotations

import getpass
import time
from typing import Any

from . import accounts, sql


def audit(conn: sql.Connection, action: str, store: str, target: str,
          detail: dict[str, Any]) -> None:
    accounts.audit(conn, f"cli:{getpass.getuser()}", action, store, target, time.time(),
                   "cli", detail)
