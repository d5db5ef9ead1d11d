"""A clean Debian root with systemd 252 as its PID 1, for the terminal package's tests.

No VM and no systemd on the host needed (this machine's PID 1 is not systemd; its cgroups
are v1/hybrid; systemd-nspawn refuses to run here): `debootstrap` makes a minimal Debian
12 root once (cached under build/, as root), each test copies it, and `unshare --pid
--mount` starts the copy's own /lib/systemd/systemd as PID 1 of a new PID namespace, after
`pivot_root` into it (a plain chroot makes every sandboxing option of a unit fail with
226/NAMESPACE: systemd cannot set up mount namespaces under a root that is not a mount).
The network is the host's: the agent inside reaches a test's broker on loopback.

`run` executes a command inside (nsenter into its namespaces and root). Killing PID 1 ends
the whole namespace; nothing is left running.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from .wait import wait

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "build" / "terminal-root-base"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
INCLUDE = "systemd,systemd-sysv,python3,adduser,dbus"

_BOOT = r"""
set -e
R=$1
mount --make-rprivate /
mount --bind "$R" "$R"
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
mount --rbind /dev "$R/dev"
# Its own /dev/shm: the host's is shared by everything on the machine (the tests' private
# PostgreSQL lives there), uids inside are not the host's, and the agent's unit has
# RemoveIPC=yes, which deletes every file its user owns there when it stops.
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
mount -t tmpfs tmpfs "$R/run"
mount -t tmpfs tmpfs "$R/tmp"
mkdir -p "$R/.oldroot"
cd "$R"
pivot_root . .oldroot
umount -l /.oldroot
export container=xiaodian-test
exec /lib/systemd/systemd --system --unit=multi-user.target </dev/null
"""


def can_run() -> str | None:
    """Why this machine cannot run the tests, or None."""
    if os.geteuid() != 0:
        return "needs root (debootstrap, mount namespaces, dpkg into a root)"
    for tool in ("debootstrap", "unshare", "nsenter", "dpkg-deb"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (scripts/bootstrap.sh installs it)"
    if not Path("/usr/bin/python3.11").exists():
        return "the package's wheels are for Python 3.11 (Debian 12)"
    return None


def base_root() -> Path:
    """The cached clean root; made by debootstrap the first time (a few minutes)."""
    if not (BASE / "usr/lib/systemd/systemd").exists():
        tmp = BASE.with_name(BASE.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={INCLUDE}", SUITE,
                        str(tmp), MIRROR], check=True, stdout=subprocess.DEVNULL)
        tmp.rename(BASE)
    return BASE


def build_deb(version: str, out: Path, *, release_key: Path | None = None,
              overlay: Path | None = None) -> Path:
    """packaging/terminal/build.sh for `version`; the .deb's path. With `release_key`, the
    signed release file too (`release_file(out, version)`); `overlay`: files copied over the
    release's site-packages (build.sh --overlay, tests only)."""
    extra = [*(["--release-file", str(release_key)] if release_key else []),
             *(["--overlay", str(overlay)] if overlay else [])]
    done = subprocess.run([str(REPO / "packaging/terminal/build.sh"), "--version", version,
                           "--out", str(out), *extra], check=True, capture_output=True,
                          text=True,
                          env={**os.environ, "DEB_COMPRESS": "gzip", "XZ_OPT": "-1",
                               "PYTHON": os.environ.get("XIAODIAN_BUILD_PYTHON", _python())})
    return Path(done.stdout.strip().splitlines()[-1])


def release_file(out: Path, version: str) -> Path:
    """Where build_deb(..., release_key=...) put the signed release file."""
    return out / f"xiaodian-agent_{version}_amd64.xdrel"


def _python() -> str:
    import sys

    return sys.executable


class TerminalRoot:
    """A copy of the clean root at `path`; `boot()` starts its systemd."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.exists():
            shutil.rmtree(path)
        subprocess.run(["cp", "-a", str(base_root()), str(path)], check=True)
        # No login prompts on the host's console from inside.
        for unit in ("getty@.service", "serial-getty@.service", "console-getty.service"):
            link = path / "etc/systemd/system" / unit
            link.unlink(missing_ok=True)
            link.symlink_to("/dev/null")
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid1 = 0

    def dpkg(self, deb: Path, *options: str) -> subprocess.CompletedProcess[str]:
        """Install `deb`: from outside before boot, from inside after (as a technician)."""
        if self.pid1:  # /var/tmp: on the root's disk (its /tmp is a tmpfs of its own)
            shutil.copy(deb, self.path / "var/tmp" / deb.name)
            return self.run("dpkg", *options, "-i", f"/var/tmp/{deb.name}")
        return subprocess.run(["dpkg", f"--root={self.path}", *options, "-i", str(deb)],
                              capture_output=True, text=True, check=False)

    def boot(self, timeout: float = 60.0) -> None:
        self.proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount", "--uts", "--ipc", "bash", "-c", _BOOT,
             "boot", str(self.path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        wait(lambda: self._find_pid1() != 0, timeout, "systemd as PID 1 of the new namespace")

        def up() -> bool:
            state = self.run("systemctl", "is-system-running").stdout.strip()
            return state in ("running", "degraded")

        wait(up, timeout, "the throwaway systemd to finish starting")

    def _find_pid1(self) -> int:
        assert self.proc is not None
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return 0
        for pid in children.split():
            try:
                exe = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                continue
            if exe.endswith("/systemd"):
                self.pid1 = int(pid)
                return self.pid1
        return 0

    def run(self, *cmd: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """`cmd` inside (its mount and PID namespaces, its root)."""
        assert self.pid1, "not booted"
        return subprocess.run(["nsenter", "-t", str(self.pid1), "-m", "-p", "-u", "-i", "-r",
                               "-w", *cmd], capture_output=True, text=True, check=check)

    def inside(self, path: str) -> Path:
        """`path` as the running root sees it, mounts included (its /run is a tmpfs of its
        own, invisible under `self.path`): through PID 1's /proc/PID/root."""
        assert self.pid1, "not booted"
        return Path(f"/proc/{self.pid1}/root") / path.lstrip("/")

    def show(self, unit: str, prop: str) -> str:
        return self.run("systemctl", "show", "-P", prop, unit).stdout.strip()

    def close(self) -> None:
        if self.pid1:
            os.kill(self.pid1, signal.SIGKILL)  # PID 1 gone: the kernel ends everything in it
            self.pid1 = 0
        if self.proc is not None:
            self.proc.wait(30)
            self.proc = None
        deadline = time.monotonic() + 10
        while True:  # the namespace's mounts go with its last process; then the files can
            try:
                shutil.rmtree(self.path)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)  # polling the kernel's teardown: no event to wait on

    def __enter__(self) -> TerminalRoot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
