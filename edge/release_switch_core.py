"""The release switch's decisions, with no I/O (edge/release_switch.py does the I/O).

- `member_refusal`: may this tar member of a release payload be unpacked?
- `judge_health`: does the agent's health statement show the trial release healthy?
- `to_prune`: which release directories go once a release is confirmed?

The file protocol between the agent and the root helper: docs/deploy.md ("Self-update").
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# The only absolute link a release holds: its venv's interpreter (build.sh).
ALLOWED_ABSOLUTE_LINKS = frozenset({"/usr/bin/python3.11"})
# A statement older than this is a hung main loop's (it rewrites every few seconds).
STALE_AFTER_S = 30.0
RELEASE_NAME = re.compile(r"^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$")


def member_refusal(name: str, kind: str, linkname: str, mode: int) -> str | None:
    """Why a payload member may not be unpacked (None: it may). `kind` is "file", "dir",
    "symlink" or anything else (devices, fifos, hard links: refused). Setuid/setgid bits
    are refused, not stripped: a release never needs them, so one that has them is wrong."""
    if kind not in ("file", "dir", "symlink"):
        return f"{name}: a {kind}, not a file, directory or symbolic link"
    if not _inside(name):
        return f"{name}: outside the release"
    if mode & 0o6000:
        return f"{name}: setuid or setgid"
    if kind == "symlink":
        if linkname.startswith("/"):
            if linkname not in ALLOWED_ABSOLUTE_LINKS:
                return f"{name}: link to {linkname}"
        elif not _inside(posixpath.join(posixpath.dirname(name), linkname)):
            return f"{name}: link out of the release ({linkname})"
    return None


def _inside(path: str) -> bool:
    if path.startswith("/") or path == "":
        return False
    norm = posixpath.normpath(path)
    return norm != "." and norm != ".." and not norm.startswith("../")


@dataclass(frozen=True)
class Trial:
    """What the helper knows of the release on trial."""

    version: str
    switched_at: float  # wall time the agent was restarted on it
    restarts_before: int  # the unit's NRestarts before the switch


@dataclass(frozen=True)
class Unit:
    """The agent unit as systemd reports it now."""

    main_pid: int
    n_restarts: int


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    missing: tuple[str, ...]

    @property
    def detail(self) -> str:
        return "healthy" if self.healthy else "missing: " + "; ".join(self.missing)


def judge_health(statement: Mapping[str, object] | None, trial: Trial, unit: Unit,
                 now: float, configured: Sequence[str] = ()) -> Verdict:
    """Healthy: a statement by the trial version's running main process, written since the
    switch and recently, ready, connected, every configured device read, the outbox moving,
    and no restart by systemd (a watchdog kill) since the switch. `configured`: the fridges
    root reads in edge.toml; each must be read whatever devices the statement lists (a
    release must not pass by forgetting one)."""
    missing: list[str] = []
    if unit.n_restarts != trial.restarts_before:
        missing.append(f"restarted by systemd {unit.n_restarts - trial.restarts_before} "
                       "time(s) (crash or watchdog)")
    if statement is None:
        missing.append("no health statement")
        return Verdict(False, tuple(missing))
    version = statement.get("version")
    if version != trial.version:
        missing.append(f"statement by version {version}, not {trial.version}")
    pid = statement.get("pid")
    if not isinstance(pid, int) or pid != unit.main_pid or pid == 0:
        missing.append(f"statement by pid {pid}, the unit's main pid is {unit.main_pid}")
    at = statement.get("at")
    if not isinstance(at, (int, float)) or at < trial.switched_at:
        missing.append("no statement since the switch")
    elif now - at > STALE_AFTER_S:
        missing.append(f"statement {now - at:.0f} s old (main loop stuck)")
    if statement.get("ready") is not True:
        missing.append("not ready (READY=1 not sent)")
    if statement.get("connected") is not True:
        missing.append("not connected to the cloud")
    devices = list(dict.fromkeys([*configured, *_strings(statement.get("devices"))]))
    read = set(_strings(statement.get("devices_read")))
    unread = [d for d in devices if d not in read]
    if unread:
        missing.append("devices not read: " + ", ".join(unread))
    if statement.get("outbox_moving") is not True:
        missing.append("outbox not moving (no record confirmed by the cloud)")
    return Verdict(not missing, tuple(missing))


def _strings(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def to_prune(entries: Iterable[str], keep: Iterable[str]) -> list[str]:
    """The names under releases/ to delete once a release is confirmed: every release and
    leftover (*.partial, *.failed) but `keep` (the current one and the previous one)."""
    kept = set(keep)
    return sorted(e for e in entries if e not in kept)


def release_of(link: str) -> str | None:
    """The version a `current` link names ("releases/1.2.3" -> "1.2.3"), or None."""
    head, _, name = link.rstrip("/").rpartition("/")
    if head not in ("releases", "/opt/xiaodian/releases"):
        return None
    return name or None
