"""The agent's health statement: a small JSON file the root helper reads after a self-update.

After switching releases the helper (edge/release_switch.py) keeps the new release only if
the agent it started says, within the health window, that it does its job: this file, with
its version and pid, READY sent, the uplink connected, every fridge read in this run, and
the outbox moving (docs/contracts.md, "Self-update files"). It is rewritten from the main
loop every few seconds, so a hung loop stops it and the statement goes stale; a crashed
agent leaves one with a dead pid.

It says something only about the running process, so it lives where such things belong:
in the runtime directory systemd makes for the unit (/run/xiaodian, tmpfs: rewriting it
every 5 s costs the terminal's flash nothing, and it goes when the agent stops), and it is
never fsynced (after a power cut it would name a dead pid anyway). Where no runtime
directory is given (`xiaodian edge run` by hand, a unit file from before it) it stays in
the data directory, rewritten as often: the helper of a release before this one reads it
there and wants it less than 30 s old (edge/config.py, `EdgeConfig.health_path`).

`statement` is pure (what the agent knows -> the document); `HealthFile` keeps what this
run has seen and writes atomically (tmp + rename): the helper never reads half a file. A
failed write is logged once and never stops the agent.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edge.durable_file import write_atomically

log = logging.getLogger(__name__)

MODE = 0o644  # the root helper reads it; nothing in it is secret


def statement(*, version: str, pid: int, started_at: float, at: float, ready: bool,
              connected: bool, devices_read: Iterable[str], devices: Iterable[str],
              confirmed: bool, outbox_empty: bool) -> dict[str, Any]:
    """The document. `confirmed`: the cloud confirmed a record in this run; an empty outbox
    moves too (nothing waits)."""
    return {"version": version, "pid": pid, "started_at": started_at, "at": at,
            "ready": ready, "connected": connected,
            "devices_read": sorted(set(devices_read)), "devices": sorted(set(devices)),
            "outbox_moving": confirmed or outbox_empty}


def write(path: Path, doc: dict[str, Any]) -> None:
    """Atomically: a reader sees the old statement or the new one, never a mix. Not
    durable (no fsync): it is rewritten every few seconds and a lost one costs nothing."""
    data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    write_atomically(path, data, MODE, durable=False)


class HealthFile:
    """What this run has seen (fridges read, the cloud confirming), and the writer."""

    def __init__(self, path: Path, version: str, started_at: float,
                 devices: Iterable[str], pid: int | None = None) -> None:
        self.path = path
        self.version = version
        self.started_at = started_at
        self.devices = tuple(sorted(set(devices)))
        self.pid = os.getpid() if pid is None else pid
        self.devices_read: set[str] = set()
        self._failing = False

    def saw_readings(self, devices: Iterable[str]) -> None:
        self.devices_read.update(d for d in devices if d in self.devices)

    def step(self, *, at: float, ready: bool, connected: bool, confirmed: bool,
             outbox_empty: bool) -> dict[str, Any]:
        doc = statement(version=self.version, pid=self.pid, started_at=self.started_at,
                        at=at, ready=ready, connected=connected,
                        devices_read=self.devices_read, devices=self.devices,
                        confirmed=confirmed, outbox_empty=outbox_empty)
        try:
            write(self.path, doc)
        except OSError as exc:
            if not self._failing:  # once, not every few seconds
                log.warning("health statement: cannot write %s: %s", self.path, exc)
            self._failing = True
        else:
            self._failing = False
        return doc
