"""The root helper that switches the terminal to a new release and back (issue 19 point 3).

Run as root by xiaodian-update.service when the agent leaves a request
(/var/lib/xiaodian/update/request.json, xiaodian-update.path), from the release that is
current at that moment: its code is loaded before `current` moves, so it stays the old
code through the health window. One request per run:

1. take it: copy the release file into root's own directory (opened without following
   links; a copy, so the agent's user cannot change it after the check), then delete the
   request and the file (the path unit does not fire again);
2. verify it again with the keys configured in /etc/xiaodian/edge.toml (root's files only,
   never the agent's copy) and judge it against the running release;
3. unpack into releases/V.partial (regular files, directories and links inside the release
   only), rename to releases/V, swap `current` by rename, restart the agent;
4. wait up to the health window for the new agent's health statement
   (edge/release_switch_core.judge_health); healthy: "confirmed" and old releases pruned;
   not: `current` back, the agent restarted on the old release, "rolled_back" with what was
   missing (reason codes, xiaodian.wire.update_reasons, and their English), the failed
   release deleted.

Each step is written to /var/lib/xiaodian-update/status.json (atomically), which the agent
reads and reports. docs/deploy.md ("Self-update") has the whole protocol.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import lzma
import os
import platform
import shutil
import stat
import subprocess
import sys
import tarfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xiaodian import agent_release
from xiaodian.wire import update_reasons
from xiaodian.wire.update_reasons import Interrupted, KeptAfterRestart, Reason, WatchFailed

from .durable_file import fsync_dir, write_atomically
from .release_switch_core import (
    RELEASE_NAME,
    Trial,
    Unit,
    Verdict,
    judge_health,
    member_refusal,
    release_of,
    to_prune,
)

log = logging.getLogger("xiaodian.release_switch")

AGENT_UNIT = "xiaodian-agent.service"
DEFAULT_WINDOW_S = 180.0
MIN_WINDOW_S, MAX_WINDOW_S = 30.0, 1800.0
DEFAULT_KEYS = ("/etc/xiaodian/agent-signing.pub",)
MAX_REQUEST = 4096
MAX_HEALTH = 65536
POLL_S = 1.0
PYTHON = "3.11"  # the interpreter every release's venv links to (packaging/terminal/build.sh)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Paths:
    opt: Path = Path("/opt/xiaodian")
    inbox: Path = Path("/var/lib/xiaodian/update")  # the agent's
    own: Path = Path("/var/lib/xiaodian-update")  # root's
    # The agent's health statement: in its unit's runtime directory (RuntimeDirectory=
    # xiaodian, tmpfs), or in its data directory under a unit from before that.
    health: Path = Path("/run/xiaodian/health.json")
    health_on_disk: Path = Path("/var/lib/xiaodian/health.json")
    config: Path = Path("/etc/xiaodian/edge.toml")


class Refused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class Request:
    command: str
    version: str
    file: str
    sha256: str
    from_version: str


class Systemd:
    """The agent unit through systemctl (the helper runs as root beside PID 1)."""

    def restart(self) -> None:
        # --no-block: a notify unit's restart otherwise waits for READY=1 (or 90 s), and the
        # window measures that wait itself.
        subprocess.run(["systemctl", "restart", "--no-block", AGENT_UNIT], check=True,
                       capture_output=True)

    def unit(self) -> Unit:
        out = subprocess.run(["systemctl", "show", "-p", "MainPID", "-p", "NRestarts",
                              AGENT_UNIT], check=True, capture_output=True, text=True)
        props = dict(line.partition("=")[::2] for line in out.stdout.splitlines())
        return Unit(int(props.get("MainPID") or 0), int(props.get("NRestarts") or 0))


class Switch:
    def __init__(self, paths: Paths, systemd: Systemd, *, clock: Callable[[], float],
                 monotonic: Callable[[], float], sleep: Callable[[float], None],
                 arch: str) -> None:
        # clock: wall time (status, and the statement's `at`); monotonic: the window.
        self.p, self.systemd, self.clock, self.monotonic, self.sleep, self.arch = (
            paths, systemd, clock, monotonic, sleep, arch)
        self.req: Request | None = None
        self.from_version = ""
        self.previous = ""  # the release to roll back to (a run after a power cut needs it)

    # --- status.json: the agent's only view of what happens here ---

    def status(self, state: str, result: str = "", detail: str = "",
               reasons: tuple[Reason, ...] | None = None) -> None:
        """`reasons`: the verdict's codes (xiaodian.wire.update_reasons), whose English is
        `detail`; None for a refusal, whose result code says it and whose detail is free
        text (a key id, a path)."""
        req = self.req
        doc: dict[str, Any] = {
            "command": req.command if req else "", "version": req.version if req else "",
            "from": self.from_version, "previous": self.previous, "state": state,
            "result": result, "detail": detail, "at": self.clock()}
        if reasons is not None:
            try:
                doc["reasons"] = update_reasons.reasons_data(reasons)
            except update_reasons.PayloadError as exc:  # e.g. a device id the agent made up
                log.warning("reasons left out of the status (the detail says it): %s", exc)
        write_atomically(self.p.own / "status.json", json.dumps(doc).encode(), 0o644)
        log.info("status %s %s %s", state, result, detail)

    # --- the run ---

    def run(self) -> int:
        self.p.own.mkdir(mode=0o755, exist_ok=True)
        work = self.p.own / "incoming.xdrel"
        try:
            self.req = self._take(work)
        except Refused as exc:
            self.status("refused", exc.reason, exc.detail)
            return 0
        if self.req is None:  # at boot, or fired with nothing there (already taken)
            return self._resume()
        try:
            current_link = os.readlink(self.p.opt / "current")
            previous = release_of(current_link)
            if previous is None:
                raise Refused("io_error", f"current names {current_link!r}, not a release")
            self.previous = previous
            self.from_version = _read_version(self.p.opt / "releases" / previous)
            self.status("installing")
            release = self._verify(work)
            target = self._unpack(work, release)
        except Refused as exc:
            self.status("refused", exc.reason, exc.detail)
            return 0
        except OSError as exc:
            self.status("refused", "io_error", str(exc))
            return 0
        finally:
            work.unlink(missing_ok=True)
        return self._trial(previous, target)

    def _take(self, work: Path) -> Request | None:
        """The request and its file, out of the agent's directory into root's. Claimed by a
        rename first: an agent that gave up on it withdraws it by a rename too, and only one
        of the two wins (docs/contracts.md). Within the agent's directory, because the two
        directories are separate mounts in this unit's namespace (rename across is EXDEV).
        Every name is resolved in that directory, opened once without following a link:
        the agent's user owns its parent and could otherwise point it elsewhere."""
        try:
            inbox = os.open(self.p.inbox, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                            | os.O_CLOEXEC)
        except OSError as exc:
            if not isinstance(exc, FileNotFoundError):
                log.warning("update directory %s refused: %s", self.p.inbox, exc)
            return None
        try:
            return self._take_from(inbox, work)
        finally:
            os.close(inbox)

    def _take_from(self, inbox: int, work: Path) -> Request | None:
        taken = "request.json.taken"
        try:
            os.rename("request.json", taken, src_dir_fd=inbox, dst_dir_fd=inbox)
        except FileNotFoundError:
            return None  # withdrawn, or fired with nothing there
        try:
            raw = _read_nofollow(taken, MAX_REQUEST, dir_fd=inbox)
        except OSError as exc:
            raise Refused("io_error", f"request.json: {exc}") from None
        finally:
            _unlink_at(taken, inbox)
        try:
            doc = json.loads(raw)
            req = Request(str(doc["command"]), str(doc["version"]), str(doc["file"]),
                          str(doc["sha256"]), str(doc.get("from", "")))
        except (ValueError, KeyError, TypeError) as exc:
            raise Refused("bad_format", f"request.json unreadable: {exc}") from None
        self.req, self.from_version = req, req.from_version  # until it reads its own
        if (not RELEASE_NAME.match(req.version)
                or req.file != f"xiaodian-agent_{req.version}.xdrel"):
            raise Refused("bad_format", f"request names {req.file!r} for {req.version!r}")
        try:
            digest = _copy_nofollow(req.file, inbox, work)
        except OSError as exc:
            raise Refused("io_error", f"{req.file}: {exc}") from None
        finally:
            _unlink_at(req.file, inbox)
        if digest != req.sha256:
            raise Refused("bad_hash", f"{req.file} is not the file the agent checked")
        return req

    def _verify(self, work: Path) -> agent_release.Release:
        assert self.req is not None
        keys = _trusted_keys(self.p.config)
        try:
            release = agent_release.verify_file(work, keys)
            agent_release.judge(release.manifest, running=self.from_version, arch=self.arch,
                                python=PYTHON)
        except agent_release.ReleaseRefused as exc:
            raise Refused(exc.reason, str(exc)) from None
        if release.manifest.version != self.req.version:
            raise Refused("bad_format", f"file holds {release.manifest.version}, the request "
                          f"says {self.req.version}")
        return release

    def _unpack(self, work: Path, release: agent_release.Release) -> str:
        version = release.manifest.version
        releases = self.p.opt / "releases"
        partial, final = releases / f"{version}.partial", releases / version
        for leftover in (partial, final):  # never current: judge() refused the running one
            if leftover.is_symlink() or leftover.is_file():
                leftover.unlink()
            elif leftover.exists():
                shutil.rmtree(leftover)
        partial.mkdir(mode=0o755)
        try:
            with work.open("rb") as f:
                f.seek(release.payload_offset)
                _extract(f, partial)
            if _read_version(partial) != version:
                raise Refused("bad_format", f"VERSION inside is not {version}")
            _fsync_tree(partial)
            partial.rename(final)
            fsync_dir(releases)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return version

    def _trial(self, previous: str, target: str) -> int:
        before = self.systemd.unit().n_restarts
        switched_at = self.clock()
        self.status("trial")  # before the swap: a run after a power cut knows what to undo
        _point_current(self.p.opt, target)
        try:
            self.systemd.restart()
            verdict = self._watch(Trial(target, switched_at, before))
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            return self._conclude(Verdict(False, (WatchFailed(),)), previous, target,
                                  f"the helper could not watch the trial: {exc}")
        return self._conclude(verdict, previous, target)

    def _resume(self) -> int:
        """Finish what a run that died (power cut, killed) left: the unit also starts at
        boot, after the agent. A trial whose release is current gets a fresh window; an
        install that never reached its trial is refused and its files removed."""
        try:
            doc = json.loads(_read_nofollow(self.p.own / "status.json", MAX_REQUEST))
        except (OSError, ValueError):
            return 0
        if not isinstance(doc, dict) or doc.get("state") not in ("installing", "trial"):
            return 0
        self.req = Request(str(doc.get("command", "")), str(doc.get("version", "")), "", "",
                           str(doc.get("from", "")))
        self.from_version, self.previous = str(doc.get("from", "")), str(doc.get("previous", ""))
        target, previous = self.req.version, self.previous
        current = release_of(os.readlink(self.p.opt / "current"))
        releases = self.p.opt / "releases"
        shutil.rmtree(releases / f"{target}.partial", ignore_errors=True)
        if doc["state"] == "trial" and current == target and (releases / previous).is_dir():
            log.info("resuming the trial of %s after a restart", target)
            try:
                verdict = self._watch(Trial(target, self.clock(),
                                            self.systemd.unit().n_restarts))
            except (OSError, subprocess.SubprocessError, ValueError) as exc:
                return self._conclude(Verdict(False, (WatchFailed(),)), previous, target,
                                      f"the helper could not watch the trial: {exc}")
            return self._conclude(verdict, previous, target)
        if current != target and RELEASE_NAME.match(target):
            shutil.rmtree(releases / target, ignore_errors=True)
        if current == target:  # its trial cannot be undone (no previous release left)
            why: tuple[Reason, ...] = (KeptAfterRestart(),)
            self.status("confirmed", "confirmed", update_reasons.english(why), why)
        else:
            why = (Interrupted(),)
            self.status("refused", "io_error", update_reasons.english(why), why)
        return 0

    def _conclude(self, verdict: Verdict, previous: str, target: str,
                  detail: str | None = None) -> int:
        """`detail`: more than the reasons' English (an error's text), if anything."""
        if verdict.healthy:
            self.status("confirmed", "confirmed", verdict.detail, verdict.reasons)
            self._prune(keep=(target, previous))
            return 0
        _point_current(self.p.opt, previous)
        self.systemd.restart()
        shutil.rmtree(self.p.opt / "releases" / target, ignore_errors=True)
        self.status("rolled_back", "rolled_back", detail or verdict.detail, verdict.reasons)
        return 0

    def _watch(self, trial: Trial) -> Verdict:
        window = _window(self.p.config)
        deadline = self.monotonic() + window
        fridges = _fridges(self.p.config)
        while True:
            verdict = judge_health(self._health(), trial, self.systemd.unit(), self.clock(),
                                   fridges)
            if verdict.healthy:
                return verdict
            if self.monotonic() >= deadline:
                return verdict.timed_out(window)
            self.sleep(POLL_S)

    def _health(self) -> dict[str, Any] | None:
        for path in _health_files(self.p):
            try:
                doc = json.loads(_read_nofollow(path, MAX_HEALTH))
            except FileNotFoundError:
                continue
            except (OSError, ValueError):
                return None
            return doc if isinstance(doc, dict) else None
        return None

    def _prune(self, keep: tuple[str, str]) -> None:
        releases = self.p.opt / "releases"
        for name in to_prune((e.name for e in releases.iterdir()), keep):
            log.info("deleting release %s", name)
            shutil.rmtree(releases / name, ignore_errors=True)


# --- files ---


def _read_nofollow(path: Path | str, limit: int, dir_fd: int | None = None) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                 dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(f"{path}: not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(f"{path}: larger than {limit} bytes")
    return data


def _unlink_at(name: str, dir_fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)


def _copy_nofollow(name: str, dir_fd: int, dst: Path) -> str:
    """Copy `name` in the directory `dir_fd` (never through a link, never a device or
    fifo) to a new root-owned `dst`; the SHA-256 of what was copied."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                 dir_fd=dir_fd)
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError("not a regular file")
        dst.unlink(missing_ok=True)
        out_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(out_fd, "wb") as out:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    return digest.hexdigest()


def _fsync_tree(root: Path) -> None:
    # One sync of the file systems: cheaper than fsync of each of ~3000 files, and the
    # rename to the final name must not reach the disk before the files do.
    del root
    os.sync()


def _point_current(opt: Path, version: str) -> None:
    tmp = opt / "current.new"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(f"releases/{version}")
    tmp.replace(opt / "current")  # rename(2): old or new, never neither
    fsync_dir(opt)


def _read_version(release: Path) -> str:
    return _read_nofollow(release / "VERSION", 64).decode().strip()


def _extract(f: Any, into: Path) -> None:
    """Unpack the xz tar stream `f` into `into`, every member checked first; files root's,
    modes without setuid/setgid or group/other write."""
    try:
        with tarfile.open(fileobj=f, mode="r|xz") as tar:
            for m in tar:
                kind = ("file" if m.isreg() else "dir" if m.isdir() else
                        "symlink" if m.issym() else "other")
                why = member_refusal(m.name, kind, m.linkname, m.mode)
                if why:
                    raise Refused("bad_format", why)
                _place(tar, m, kind, into)
    except (tarfile.TarError, EOFError, lzma.LZMAError) as exc:
        raise Refused("bad_format", f"payload damaged: {exc}") from None


def _place(tar: tarfile.TarFile, m: tarfile.TarInfo, kind: str, into: Path) -> None:
    target = into / os.path.normpath(m.name)
    parent = target.parent
    # Every directory on the way must be a real one unpacked here, never a link the payload
    # made earlier (a link to /usr/bin would let a later member write there).
    rel = parent.relative_to(into)
    step = into
    for part in rel.parts:
        step = step / part
        if step.is_symlink():
            raise Refused("bad_format", f"{m.name}: through the link {step.relative_to(into)}")
    parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    mode = m.mode & 0o755
    if kind == "dir":
        if target.is_symlink():
            raise Refused("bad_format", f"{m.name}: replaces a link")
        target.mkdir(exist_ok=True, mode=0o755)
        os.chmod(target, mode | 0o700)
    elif kind == "symlink":
        target.symlink_to(m.linkname)
    else:
        src = tar.extractfile(m)
        assert src is not None
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)
        os.chmod(target, (mode | 0o644) & 0o755)


# --- configuration (root's own reading of edge.toml: nothing the agent's user writes) ---


def _agent_update(config: Path) -> dict[str, Any]:
    try:
        doc = tomllib.loads(config.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    section = doc.get("agent_update", {})
    return section if isinstance(section, dict) else {}


def _fridges(config: Path) -> list[str]:
    """The fridge ids configured in edge.toml (`[[fridges]] id`)."""
    try:
        doc = tomllib.loads(config.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return []
    tables = doc.get("fridges", [])
    return [str(t["id"]) for t in tables if isinstance(t, dict) and "id" in t] if isinstance(
        tables, list) else []


def _health_files(p: Paths) -> list[Path]:
    """Where the agent states its health, as edge/config.py `EdgeConfig.health_path` puts
    it: `[agent_update] health_file` alone if set; else the runtime directory, then (an
    agent whose unit has none) the data directory."""
    value = _agent_update(p.config).get("health_file")
    if isinstance(value, str) and value:
        path = Path(value)  # relative: to edge.toml, as the agent reads it
        return [path if path.is_absolute() else p.config.parent / path]
    return [p.health, p.health_on_disk]


def _window(config: Path) -> float:
    """`[agent_update] health_window_s`, within the bounds edge/config.py allows (the agent
    waits that long plus its margins for the verdict); the default otherwise."""
    value = _agent_update(config).get("health_window_s", DEFAULT_WINDOW_S)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return min(max(float(value), MIN_WINDOW_S), MAX_WINDOW_S)
    return DEFAULT_WINDOW_S


def _trusted_keys(config: Path) -> list[Any]:
    """The configured public keys, each only if root's alone (owner root, not writable by
    group or others, in a directory likewise): the agent's user must not be able to pin a
    key of its own choosing."""
    value = _agent_update(config).get("keys", list(DEFAULT_KEYS))
    paths = [value] if isinstance(value, str) else [str(v) for v in value]
    keys: list[Path] = []
    for p in map(Path, paths):
        try:
            for node in (p, p.parent):
                st = node.lstat()
                if st.st_uid != 0 or st.st_mode & 0o022 or stat.S_ISLNK(st.st_mode):
                    raise Refused("bad_signature", f"{node} is not root's alone")
        except FileNotFoundError:
            continue
        keys.append(p)
    try:
        return list(agent_release.load_public_keys(keys))
    except (OSError, ValueError) as exc:
        raise Refused("bad_signature", f"trusted keys unreadable: {exc}") from None


def debian_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    switch = Switch(Paths(), Systemd(), clock=time.time, monotonic=time.monotonic,
                    sleep=time.sleep, arch=debian_arch())
    return switch.run()


if __name__ == "__main__":
    sys.exit(main())
