"""An update the cloud started with a signed `update` command: fetch, verify, install, report.

The stages are the same for any kind of artefact, in the spirit of LwM2M's firmware object:

    idle -> downloading -> downloaded -> updating -> done (result)

`downloading`: the bytes come by HTTPS (edge/artefact_fetch.py: the project's CA, the
store's certificate, the command's SHA-256 and size). `downloaded`: they are here and
verified against the command. `updating`: the kind's installer has them; for `firmware` it
is the agent's own `firmware_push.start` (the image's Ed25519 signature, hardware, version
and min_agent judged there, then the transfer to the fridge over the link the reader holds,
the trial and the confirm). `done` carries the result code: `confirmed` (success), a
refusal (`bad_signature`, `downgrade`, `agent_too_old`, ...), `rolled_back`, `timeout`,
or a fetch failure (`bad_hash`, `download_failed`, `tls_failed`, `insecure_url`), and a
job's reason codes if it gives them (`reasons`: the terminal's own update, edge/self_update.py).

An installer is a function (the verified file's path -> a job with `progress()` and
`done`): it reads what it needs (a fridge image of ~100 KB whole, the terminal's own release
of ~30 MB streamed, edge/self_update.py; the agent runs with MemoryMax=300M). An install
that outlives the agent (kind "agent": the switch restarts it) is taken up again after the
restart by `attach`, without the download and without installing twice. The download runs on a
thread of its own (it may take minutes); `poll` runs on the agent's main thread, which owns
SQLite, and says when there is something new to report (a state change, or 10 more
percent), so progress reaches the cloud as `update` events through the outbox.

An update outlives the agent (edge/update_jobs.py): a restarted agent builds it again with
`reported` = what the last run reported, so states are reported in order and each once (a
resumed download passes through `downloading` again without saying it twice). An installer
that cannot start yet (the fridge has not said HELLO to the new agent) raises NotReady: the
file is kept and offered again at the next poll, for at most `ready_s`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.artefact_fetch import FetchError, fetch
from xiaodian.mqtt import TlsSettings

PERCENT_STEP = 10  # report progress every this many percent (and at every state change)
SUCCESS = "confirmed"
STATES = ("idle", "downloading", "downloaded", "updating", "done")  # in the order they come
READY_S = 120.0  # how long a resumed update waits for its device to answer


class NotReady(Exception):
    """The installer cannot start yet (no HELLO from the device): ask again later."""


class InstallJob(Protocol):
    done: threading.Event

    def progress(self) -> dict[str, Any]: ...


# An installer takes the verified file's path and returns the running job, or raises
# ValueError whose `reason` attribute (if any) is the result code (fwimage.ImageRefused
# has one).
Installer = Callable[[Path], InstallJob]
# A resumed update's job, if its install went on without the agent; None: start afresh.
Attach = Callable[[], "InstallJob | None"]


@dataclass(frozen=True)
class UpdateSetup:
    """What the agent needs to take `update` commands: its TLS (the store's certificate and
    the project's CA, as for MQTT), where downloads are kept, the firmware keys it trusts."""

    tls: TlsSettings
    cache: Path
    firmware_keys: list[Ed25519PublicKey]


@dataclass(frozen=True)
class UpdateRequest:
    command_id: str
    device: str
    kind: str
    url: str
    sha256: str
    size: int
    version: str


class ArtefactUpdate:
    def __init__(self, request: UpdateRequest, tls: TlsSettings, cache: Path,
                 installer: Installer, reported: tuple[str, int] | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 ready_s: float = READY_S, attach: Attach | None = None) -> None:
        self.request = request
        self._tls = tls
        self._cache = cache
        self._installer = installer
        self._lock = threading.Lock()
        self.state = "idle"
        self.percent = 0
        self.result = ""
        self.detail = ""
        self.reasons: list[Any] | None = None  # a job's reason codes (the self-update's)
        self._job: InstallJob | None = None
        self._path: Path | None = None  # downloaded and verified, for the installer
        self._attach = attach
        self._reported = reported  # the last report sent (by this run or the one before)
        self._monotonic = monotonic
        self._ready_by = monotonic() + ready_s
        self._thread = threading.Thread(target=self._download, daemon=True,
                                        name=f"update-{request.command_id[:12]}")

    def start(self) -> ArtefactUpdate:
        job = self._attach() if self._attach is not None else None
        with self._lock:
            if job is not None:
                self._job, self.state = job, "updating"
                return self
            self.state = "downloading"
        self._thread.start()
        return self

    @property
    def finished(self) -> bool:
        return self.state == "done"

    def _download(self) -> None:
        r = self.request

        def seen(done: int, total: int) -> None:
            with self._lock:
                self.percent = 100 * done // max(1, total)

        try:
            path = fetch(r.url, r.sha256, r.size, self._tls, self._cache, progress=seen)
        except FetchError as exc:
            self._finish(exc.reason, exc.detail)
            return
        except OSError as exc:
            self._finish("io_error", str(exc))
            return
        with self._lock:
            self._path = path
            self.state, self.percent = "downloaded", 100

    def _finish(self, result: str, detail: str = "", reasons: list[Any] | None = None) -> None:
        with self._lock:
            self.state, self.result, self.detail = "done", result, detail
            self.reasons = reasons

    def poll(self) -> dict[str, Any] | None:
        """Advance (hand the file to the installer, follow its job) and return a report to
        send when there is news; None otherwise. The agent's main thread only."""
        with self._lock:
            # "downloaded" is reported once before the installer takes the file.
            hold = self.state == "downloaded" and _rank(
                (self._reported or ("", 0))[0]) < _rank("downloaded")
            path, self._path = (None, self._path) if hold else (self._path, None)
        if path is not None:
            try:
                started = self._installer(path)
            except NotReady as exc:
                if self._monotonic() < self._ready_by:
                    with self._lock:
                        self._path = path  # again at the next poll
                else:
                    self._finish("timeout", str(exc))
            except ValueError as exc:
                self._finish(str(getattr(exc, "reason", "refused")), str(exc))
            except OSError as exc:  # the file gone or unreadable: reported, never raised
                self._finish("io_error", str(exc))
            else:
                with self._lock:
                    self._job, self.state, self.percent = started, "updating", 0
        job = self._job
        if job is not None and self.state == "updating":
            p = job.progress()
            with self._lock:
                self.percent = int(p.get("percent", 0))
            if job.done.is_set():
                reasons = p.get("reasons")
                self._finish(str(p.get("result") or "failed"), str(p.get("detail") or ""),
                             reasons if isinstance(reasons, list) else None)
        with self._lock:
            now = (self.state, self.percent)
            last = self._reported
            news = (last is None or _rank(now[0]) > _rank(last[0])
                    or (now[0] == last[0] and now[1] >= last[1] + PERCENT_STEP))
            if not news:
                return None
            self._reported = now
            return self.report()

    def report(self) -> dict[str, Any]:
        r = self.request
        out: dict[str, Any] = {"command": r.command_id, "kind": r.kind, "state": self.state,
                               "percent": self.percent, "sha256": r.sha256,
                               "version": r.version}
        if self.state == "done":
            out["result"] = self.result
            out["ok"] = self.result == SUCCESS
            if self.detail:
                out["detail"] = self.detail[:200]
            if self.reasons is not None:  # checked by the job (xiaodian.wire.update_reasons)
                out["reasons"] = self.reasons
        return out


def _rank(state: str) -> int:
    return STATES.index(state) if state in STATES else -1


def request_from(command_id: str, params: Mapping[str, Any]) -> UpdateRequest:
    return UpdateRequest(command_id, str(params["device"]), str(params["kind"]),
                         str(params["url"]), str(params["sha256"]), int(params["size"]),
                         str(params["version"]))
