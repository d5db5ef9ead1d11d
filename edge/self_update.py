"""The terminal's own update, the agent's half: verify, judge, hand over, watch.

The installer of the `update` command's kind "agent" (edge/artefact_update.py fetches the
release file first). It checks the signed release (xiaodian/agent_release.py) with the
`[agent_update] keys` and judges it against the running agent (version, machine, Python):
a refusal is reported from here, before the root helper is bothered. A release it accepts
is moved into the update directory and `request.json` written beside it, atomically; the
root helper (edge/release_switch.py, a systemd path unit) takes both, checks again with its
own keys, switches releases, restarts the agent and judges the new one by its health
statement (edge/health_file.py). Its progress and verdict come back in `status.json`,
which the job here only reads (docs/contracts.md, "Self-update files").

The switch restarts the agent, so the job outlives the run that started it: the next run
(the new release, or the old one after a rollback) takes the update up again from
edge/update_jobs.py and `attach`es to it, watching status.json only; it never writes a
request again. A helper that never takes the request (no path unit) gets it withdrawn
after HANDOVER_S; one that took it but never says a verdict is reported as `timeout`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import platform
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.config import EdgeConfig
from edge.durable_file import fsync_dir, write_atomically
from xiaodian import __version__, agent_release
from xiaodian.pki.keys import load_command_public_key
from xiaodian.wire import update_reasons
from xiaodian.wire.update_reasons import NeverTaken, NoVerdict, Reason

log = logging.getLogger(__name__)

REQUEST = "request.json"
# States the root helper writes in status.json; the last three are its verdicts.
FINAL = frozenset({"confirmed", "rolled_back", "refused"})
PERCENT = {"installing": 20, "trial": 60}  # of the `updating` stage; 0 until taken
# The path unit starts the helper at once: a request not taken by then never will be.
HANDOVER_S = 300.0
# After the helper took it: unpacking (~30 MB of xz on a slow terminal), two restarts, a
# rollback; the health window comes on top. The cloud's rollout waits longer than
# HANDOVER_S + SETTLE_S + health_window_s for the terminal's `done`.
SETTLE_S = 600.0
READ_EVERY_S = 1.0  # progress() is asked every pass of the main loop


class SelfUpdateRefused(ValueError):
    """An update this agent will not hand over; `reason` is the result code reported."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class SelfUpdateSetup:
    keys: list[Ed25519PublicKey]  # agent-signing public keys; empty: no self-update
    update_dir: Path  # the agent's; the helper takes the request from here
    status_file: Path  # the helper's; read only
    health_window_s: float = 180.0


def setup(config: EdgeConfig) -> SelfUpdateSetup:
    au = config.agent_update
    return SelfUpdateSetup([load_command_public_key(k) for k in au.keys], config.update_dir,
                           au.status_file, au.health_window_s)


def release_name(version: str) -> str:
    return f"xiaodian-agent_{version}.xdrel"


def dpkg_arch(machine: str | None = None) -> str:
    """This machine in Debian's naming, as a release's manifest says it (amd64, arm64)."""
    m = (machine or platform.machine()).lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
            "armv7l": "armhf", "i686": "i386", "i386": "i386"}.get(m, m)


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def request_doc(command_id: str, version: str, sha256: str, running: str,
                at: float) -> dict[str, Any]:
    return {"command": command_id, "version": version, "file": release_name(version),
            "sha256": sha256, "from": running, "at": at}


def read_status(path: Path) -> dict[str, Any] | None:
    """The helper's status, or None when there is none (yet) or it cannot be read: it is
    replaced atomically, so an unreadable one is damaged, not half-written."""
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


class StatusWatch:
    """The job of one self-update: progress and verdict read from the helper's status.json.
    `progress()` and `done` as edge/artefact_update.InstallJob; main thread only."""

    def __init__(self, setup: SelfUpdateSetup, command_id: str,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.setup = setup
        self.command_id = command_id
        self.monotonic = monotonic
        self.done = threading.Event()
        self.state = ""  # the helper's, once it names this command
        self.result = ""
        self.detail = ""
        # The verdict's reason codes (xiaodian.wire.update_reasons) as the `update` event
        # carries them; None: the result has none (a refusal: its detail is free text).
        self.reasons: list[dict[str, Any]] | None = None
        now = monotonic()
        self._deadline = now + HANDOVER_S
        self._next_read = now
        self._extended = False

    @property
    def request_path(self) -> Path:
        return self.setup.update_dir / REQUEST

    def _verdict_window(self) -> float:
        return self.setup.health_window_s + SETTLE_S

    def progress(self) -> dict[str, Any]:
        now = self.monotonic()
        if not self.done.is_set() and now >= self._next_read:
            self._next_read = now + READ_EVERY_S
            self._look(now)
        percent = 100 if self.done.is_set() else PERCENT.get(self.state, 0)
        out: dict[str, Any] = {"state": self.state or "requested", "percent": percent,
                               "result": self.result, "detail": self.detail}
        if self.reasons is not None:
            out["reasons"] = self.reasons
        return out

    def _look(self, now: float) -> None:
        status = read_status(self.setup.status_file)
        if status is not None and status.get("command") == self.command_id:
            state = str(status.get("state", ""))
            if state in FINAL:
                self._finish(str(status.get("result") or state), str(status.get("detail", "")),
                             _reasons(status))
                return
            if state != self.state:  # the helper is at it: give it the whole window
                self.state = state
                self._deadline = max(self._deadline, now + self._verdict_window())
        if now < self._deadline:
            return
        if (not self._extended and _names(self.request_path, self.command_id)
                and self._withdraw()):
            self._finish_with(NeverTaken())
            return
        if not self._extended and not self.state:
            # Taken just now (the withdrawal lost the race), or resumed with the helper
            # still unpacking: one more window for its verdict.
            self._extended = True
            self._deadline = now + self._verdict_window()
            return
        self._finish_with(NoVerdict(self.state))

    def _withdraw(self) -> bool:
        """Take the request back unless the helper has taken it: whoever renames it first
        has it, so the helper can never install what was reported as timed out."""
        aside = self.request_path.with_name(REQUEST + ".withdrawn")
        try:
            os.rename(self.request_path, aside)
        except FileNotFoundError:
            return False
        for leftover in (aside, *self.setup.update_dir.glob("*.xdrel")):
            leftover.unlink(missing_ok=True)
        return True

    def _finish(self, result: str, detail: str,
                reasons: list[dict[str, Any]] | None = None) -> None:
        self.result, self.detail, self.reasons = result, detail, reasons
        self.done.set()

    def _finish_with(self, reason: Reason) -> None:
        """A timeout of the agent's own: no verdict came."""
        try:
            data: list[dict[str, Any]] | None = update_reasons.reasons_data([reason])
        except update_reasons.PayloadError:  # a state no helper of ours writes
            data = None
        self._finish("timeout", update_reasons.english([reason]), data)


def _reasons(status: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The helper's reasons, passed on only if the cloud will take them: ones it cannot
    read (a helper of another version, a damaged file) are left out, and the detail,
    always there, says it in English."""
    if "reasons" not in status:
        return None
    try:
        return update_reasons.reasons_data(update_reasons.parse_reasons(status["reasons"],
                                                                        "status.reasons"))
    except update_reasons.PayloadError as exc:
        log.warning("the root helper's reasons left out: %s", exc)
        return None


def _names(request: Path, command_id: str) -> bool:
    try:
        doc = json.loads(request.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("command") == command_id


def install(setup: SelfUpdateSetup, command_id: str, version: str, sha256: str, path: Path,
            *, wall: Callable[[], float] = time.time,
            monotonic: Callable[[], float] = time.monotonic, running: str = __version__,
            arch: str | None = None, python: str | None = None) -> StatusWatch:
    """Check the downloaded release at `path` (its SHA-256 is `sha256`, checked by the
    fetch), hand it to the root helper and return the job watching it. Raises
    SelfUpdateRefused / agent_release.ReleaseRefused (ValueErrors with a `reason`)."""
    try:
        try:
            release = agent_release.verify_file(path, setup.keys)
            agent_release.judge(release.manifest, running=running, arch=arch or dpkg_arch(),
                                python=python or python_version())
            if release.manifest.version != version:
                raise SelfUpdateRefused("bad_version", f"the command says {version}, the "
                                        f"signed release is {release.manifest.version}")
        except ValueError:
            with contextlib.suppress(OSError):
                path.unlink()  # 30 MB nobody will install
            raise
        setup.update_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        for stale in [*setup.update_dir.glob("*.xdrel"), *setup.update_dir.glob("*.tmp")]:
            stale.unlink()  # of an earlier attempt, abandoned or cut by a power loss
        _move(path, setup.update_dir / release_name(version))
        doc = request_doc(command_id, version, sha256, running, wall())
        write_atomically(setup.update_dir / REQUEST,
                         json.dumps(doc, sort_keys=True).encode() + b"\n")
    except OSError as exc:  # never out of the main loop: reported as the result
        raise SelfUpdateRefused("io_error", f"cannot hand the release over: {exc}") from None
    return StatusWatch(setup, command_id, monotonic)


def _move(src: Path, dest: Path) -> None:
    """The downloaded file into the update directory: renamed (no second 30 MB on a small
    disk) when both are on one file system, else copied and the download removed."""
    try:
        os.replace(src, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        tmp = dest.with_name(dest.name + ".tmp")
        with src.open("rb") as fin, tmp.open("wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            fout.flush()
            os.fsync(fout.fileno())
        os.replace(tmp, dest)
        src.unlink()
    os.chmod(dest, 0o644)
    fsync_dir(dest.parent)


def attach(setup: SelfUpdateSetup, command_id: str, reported_state: str,
           monotonic: Callable[[], float] = time.monotonic) -> StatusWatch | None:
    """The job of an update a previous run handed over, to watch without handing it over
    again; None if it never was (that run stopped before; the update starts afresh).
    Handed over: the last report said `updating` (sent only after the request was
    written), or the request or the helper's status names the command."""
    status = read_status(setup.status_file)
    if (reported_state == "updating" or _names(setup.update_dir / REQUEST, command_id)
            or (status is not None and status.get("command") == command_id)):
        return StatusWatch(setup, command_id, monotonic)
    return None
