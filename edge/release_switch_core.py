"""The release switch's decisions, with no I/O (edge/release_switch.py does the I/O).

- `member_refusal`: may this tar member of a release payload be unpacked?
- `judge_health`: does the agent's health statement show the trial release healthy? (Why
  not: reason codes of xiaodian.wire.update_reasons, which the cloud renders in Chinese.)
- `to_prune`: which release directories go once a release is confirmed?

The file protocol between the agent and the root helper: docs/deploy.md ("Self-update").
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from xiaodian.wire.update_reasons import (
    DevicesNotRead,
    NoFreshStatement,
    NoStatement,
    NotConnected,
    NotHealthyWithin,
    NotReady,
    OutboxNotMoving,
    Reason,
    Restarted,
    StaleStatement,
    WrongPid,
    WrongVersion,
    english,
)

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
    """Healthy, or why not: reason codes with their parameters (xiaodian.wire.update_reasons),
    which the agent carries to the cloud; `detail` is their English, for logs and older
    clouds."""

    healthy: bool
    reasons: tuple[Reason, ...]

    @property
    def detail(self) -> str:
        return "healthy" if self.healthy else english(self.reasons)

    def timed_out(self, window_s: float) -> Verdict:
        """This verdict as the window's last: not healthy within it, and why."""
        if self.healthy:
            return self
        return Verdict(False, (NotHealthyWithin(round(window_s)), *self.reasons))


def judge_health(statement: Mapping[str, object] | None, trial: Trial, unit: Unit,
                 now: float, configured: Sequence[str] = ()) -> Verdict:
    """Healthy: a statement by the trial version's running main process, written since the
    switch and recently, ready, connected, every configured device read, the outbox moving,
    and no restart by systemd (a watchdog kill) since the switch. `configured`: the fridges
    root reads in edge.toml; each must be read whatever devices the statement lists (a
    release must not pass by forgetting one)."""
    missing: list[Reason] = []
    if unit.n_restarts != trial.restarts_before:
        missing.append(Restarted(max(1, unit.n_restarts - trial.restarts_before)))
    if statement is None:
        missing.append(NoStatement())
        return Verdict(False, tuple(missing))
    version = statement.get("version")
    if version != trial.version:
        missing.append(WrongVersion(_shown(version), _shown(trial.version)))
    pid = statement.get("pid")
    if not isinstance(pid, int) or pid != unit.main_pid or pid == 0:
        missing.append(WrongPid(_pid(pid), _pid(unit.main_pid) or 0))
    at = statement.get("at")
    if not isinstance(at, (int, float)) or at < trial.switched_at:
        missing.append(NoFreshStatement())
    elif now - at > STALE_AFTER_S:
        missing.append(StaleStatement(round(now - at)))
    if statement.get("ready") is not True:
        missing.append(NotReady())
    if statement.get("connected") is not True:
        missing.append(NotConnected())
    devices = list(dict.fromkeys([*configured, *_strings(statement.get("devices"))]))
    read = set(_strings(statement.get("devices_read")))
    unread = [d for d in devices if d not in read]
    if unread:
        missing.append(DevicesNotRead(tuple(unread)))
    if statement.get("outbox_moving") is not True:
        missing.append(OutboxNotMoving())
    return Verdict(not missing, tuple(missing))


def _shown(value: object) -> str:
    """A value off the statement (the agent's user writes it) as the reasons may carry it:
    printable ASCII, at most 64 characters."""
    text = value if isinstance(value, str) else repr(value)
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:64]


def _pid(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31:
        return value
    return None


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
