"""Cloud-started updates kept in the edge store, so a restarted agent takes them up again.

A row per device with an update running: the signed command's request (what to fetch and
install) and the last progress reported as an `update` event. The row is written in the
same transaction as each event it reports (`EdgeStore.add(..., extra=...)`) and removed in
the one that stores `done`, so after a restart (a crash, a power cut, an upgrade) every
state is reported once: the agent resumes the download (edge/artefact_fetch.py resumes a
`.part` file with Range) or the push (the device reports the offset it holds) and reports
only what is past the row's state (artefact_update.ArtefactUpdate, `reported`).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict
from typing import Any

from edge.artefact_update import UpdateRequest

# The table is in edge/store_schema.py with the others.


def save(db: sqlite3.Connection, request: UpdateRequest, state: str, percent: int) -> None:
    db.execute(
        "INSERT INTO update_jobs (device, request, state, percent) VALUES (?,?,?,?) "
        "ON CONFLICT(device) DO UPDATE SET "
        "request=excluded.request, state=excluded.state, percent=excluded.percent",
        (request.device, json.dumps(asdict(request), sort_keys=True), state, percent),
    )


def drop(db: sqlite3.Connection, device: str) -> None:
    db.execute("DELETE FROM update_jobs WHERE device = ?", (device,))


def load(db: sqlite3.Connection) -> list[tuple[UpdateRequest, str, int]]:
    """The updates a previous run left running: (request, last reported state, percent).
    A row this agent cannot read is dropped (and logged by the caller), not retried forever."""
    out: list[tuple[UpdateRequest, str, int]] = []
    for device, request, state, percent in db.execute(
            "SELECT device, request, state, percent FROM update_jobs ORDER BY device"):
        try:
            fields: dict[str, Any] = json.loads(request)
            req = UpdateRequest(**fields)
        except (ValueError, TypeError):
            drop(db, device)  # autocommit: a statement is its own transaction
            continue
        out.append((req, str(state), int(percent)))
    return out
