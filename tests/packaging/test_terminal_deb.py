"""The store terminal's package, installed on a clean Debian 12 root and run by a real
systemd 252 as that root's PID 1 (devstack/testkit/terminal_root.py says how and why).

One booted root goes through a terminal's life in order: first start (READY=1 once the
fridge's port is open), the agent killed (restarted), its loop hung (the watchdog restarts
it), an upgrade with a changed configuration (kept). Root only; skipped elsewhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devstack.testkit.edge import free_port
from devstack.testkit.terminal_root import TerminalRoot, build_deb, can_run
from devstack.testkit.wait import wait
from xiaodian.mqtt import MqttSettings

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(can_run() is not None, reason=str(can_run()))]

AGENT = "xiaodian-agent.service"
OLD, NEW = "1.0.0", "1.1.0"


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("debs")
    return {v: build_deb(v, out) for v in (OLD, NEW)}


@pytest.fixture
def root(tmp_path: Path) -> Iterator[TerminalRoot]:
    with TerminalRoot(tmp_path / "root") as r:
        yield r


def _uid(root: TerminalRoot, user: str) -> int:
    for line in (root.path / "etc/passwd").read_text().splitlines():
        name, _x, uid, *_ = line.split(":")
        if name == user:
            return int(uid)
    raise AssertionError(f"no user {user} in the root")


def _gid(root: TerminalRoot, group: str) -> int:
    for line in (root.path / "etc/group").read_text().splitlines():
        name, _x, gid, *_ = line.split(":")
        if name == group:
            return int(gid)
    raise AssertionError(f"no group {group} in the root")


def _configure(root: TerminalRoot, settings: MqttSettings, pty: str) -> str:
    """What an installer does after `dpkg -i`: the store's config, its keys, its fridge."""
    etc = root.path / "etc/xiaodian"
    uid, gid = _uid(root, "xiaodian"), _gid(root, "xiaodian")
    for src, name in ((settings.tls.ca, "ca.pem"), (settings.tls.cert, "store.pem"),
                      (settings.tls.key, "store.key")):
        shutil.copy(src, etc / name)
        os.chown(etc / name, uid, gid)
        os.chmod(etc / name, 0o600)
    link = root.path / "var/lib/xiaodian/fridge-1"  # stands in for /dev/xiaodian/fridge-1
    link.symlink_to(pty)
    text = (etc / "edge.toml").read_text()
    text = text.replace('store_id = ""', 'store_id = "store-001"')
    text = text.replace('host = "mqtt.example.cn"', f'host = "{settings.host}"')
    text = text.replace("port = 8883", f"port = {settings.port}")
    text = text.replace("kiosk_port = 8470", f"kiosk_port = {free_port()}")
    text = text.replace('port = "/dev/xiaodian/fridge-1"', 'port = "/var/lib/xiaodian/fridge-1"')
    text += "# changed by the installer\n"
    (etc / "edge.toml").write_text(text)
    # The test's own differences from a shop: a short watchdog and restart delay, and the
    # fridge on a pseudo-terminal (char-pts) instead of a USB serial adapter.
    dropin = root.path / "etc/systemd/system" / f"{AGENT}.d"
    dropin.mkdir(parents=True)
    (dropin / "test.conf").write_text(
        "[Service]\nWatchdogSec=3s\nRestartSec=1s\nDeviceAllow=char-pts rw\n")
    return text


def _state(root: TerminalRoot) -> dict[str, str]:
    props = ("ActiveState", "SubState", "MainPID", "NRestarts", "StatusText", "Result")
    return {p: root.show(AGENT, p) for p in props}


def _until(root: TerminalRoot, cond: Callable[[], bool], what: str) -> None:
    """wait(), with the unit's journal in the failure (why it never got there)."""
    try:
        wait(cond, 60, what)
    except AssertionError as exc:
        journal = root.run("journalctl", "-u", AGENT, "--no-pager", "-n", "40").stdout
        raise AssertionError(f"{exc}\n{_state(root)}\n{journal}") from None


def _serving(root: TerminalRoot, version: str, restarts: int) -> Callable[[], bool]:
    def ok() -> bool:
        s = _state(root)
        return (s["ActiveState"] == "active" and s["NRestarts"] == str(restarts)
                and s["StatusText"] == f"xiaodian {version}: serial ports open: fridge-1")
    return ok


def test_units_pass_systemd_analyze_verify(tmp_path: Path, debs: dict[str, Path]) -> None:
    r = TerminalRoot(tmp_path / "root")
    try:
        assert r.dpkg(debs[OLD]).returncode == 0
        units = ["xiaodian-agent.service", "xiaodian-agent-retry.timer",
                 "xiaodian-update.path", "xiaodian-update.service"]
        done = subprocess.run(["systemd-analyze", "verify", f"--root={r.path}", *units],
                              capture_output=True, text=True)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        exposure = subprocess.run(["systemd-analyze", "security", f"--root={r.path}",
                                   "--offline=yes", "--threshold=25", AGENT],  # 1.6 today
                                  capture_output=True, text=True)
        assert exposure.returncode == 0, exposure.stdout[-400:]
        # The self-update's root helper: root, but boxed in (1.5 today; docs/deploy.md).
        exposure = subprocess.run(["systemd-analyze", "security", f"--root={r.path}",
                                   "--offline=yes", "--threshold=25",
                                   "xiaodian-update.service"], capture_output=True, text=True)
        assert exposure.returncode == 0, exposure.stdout[-400:]
    finally:
        r.close()
    # The kiosk needs cage and chromium, which the clean root has not: checked against
    # this machine's (scripts/bootstrap.sh installs both).
    if shutil.which("cage") and shutil.which("chromium"):
        kiosk = Path(__file__).parents[2] / "packaging/terminal/systemd/xiaodian-kiosk.service"
        done = subprocess.run(["systemd-analyze", "verify", str(kiosk)], capture_output=True,
                              text=True)
        assert done.returncode == 0 and done.stderr == "", done.stderr


def test_install_owners_and_modes_and_only_the_terminals_dependencies(
        root: TerminalRoot, debs: dict[str, Path]) -> None:
    done = root.dpkg(debs[OLD])
    assert done.returncode == 0, done.stderr
    uid, gid = _uid(root, "xiaodian"), _gid(root, "xiaodian")
    etc, data = (root.path / "etc/xiaodian").stat(), (root.path / "var/lib/xiaodian").stat()
    assert (etc.st_uid, stat.S_IMODE(etc.st_mode)) == (0, 0o750)
    assert (data.st_uid, data.st_gid, stat.S_IMODE(data.st_mode)) == (uid, gid, 0o750)
    conf = (root.path / "etc/xiaodian/edge.toml").stat()
    assert (conf.st_uid, conf.st_gid, stat.S_IMODE(conf.st_mode)) == (0, gid, 0o640)
    assert os.readlink(root.path / "opt/xiaodian/current") == f"releases/{OLD}"
    entry = (root.path / "etc/passwd").read_text()
    assert re.search(r"^xiaodian:x:\d+:\d+:[^:]*:/var/lib/xiaodian:/usr/sbin/nologin$", entry,
                     re.M)
    site = root.path / f"opt/xiaodian/releases/{OLD}/venv/lib/python3.11/site-packages"
    present = {p.name.lower() for p in site.iterdir()}
    for cloud_only in ("psycopg", "starlette", "uvicorn", "numpy", "statsforecast",
                       "cloud_gateway", "hw_sim", "devstack"):
        assert cloud_only not in present
    # The agent imports from the package alone, with the terminal's own Python.
    probe = subprocess.run(
        ["chroot", str(root.path), "/opt/xiaodian/current/venv/bin/python", "-c",
         "import edge.agent, xiaodian; print(xiaodian.__version__)"],
        capture_output=True, text=True)
    assert probe.stdout.strip() == OLD, probe.stderr


def test_start_kill_hang_and_upgrade_keeping_the_config(
        root: TerminalRoot, debs: dict[str, Path],
        mqtt_settings: Callable[[str], MqttSettings], collect: Callable[..., object]) -> None:
    assert root.dpkg(debs[OLD]).returncode == 0
    # A file of the host's /dev/shm owned by the uid `xiaodian` has inside: the unit's
    # RemoveIPC must not reach it (it once took the tests' PostgreSQL cluster with it).
    canary = Path(tempfile.mkdtemp(prefix="xiaodian-canary-", dir="/dev/shm"))
    os.chown(canary, _uid(root, "xiaodian"), -1)
    master, slave = os.openpty()
    pty = os.ttyname(slave)
    os.close(slave)
    os.chmod(pty, 0o666)  # the agent runs as `xiaodian`; a real port gets its group by udev
    try:
        state_topic = collect("cloud-gateway", "xd/v1/store-001/state")
        config = _configure(root, mqtt_settings("store-001"), pty)
        root.boot()
        # Enabled by the package: started at boot; active only after READY=1.
        _until(root, _serving(root, OLD, 0), "the agent to report ready on its fridge's port")
        births = state_topic.wait(1, timeout=30)  # type: ignore[attr-defined]
        assert json.loads(births[-1].payload)["agent_version"] == OLD
        db = root.path / "var/lib/xiaodian/edge.sqlite3"
        assert db.stat().st_uid == _uid(root, "xiaodian")
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
        # The health statement (rewritten every 5 s) on the runtime tmpfs, not on flash.
        health = root.inside("/run/xiaodian/health.json")

        def stated() -> bool:
            try:
                return bool(json.loads(health.read_text())["pid"]
                            == int(_state(root)["MainPID"]))
            except (OSError, ValueError, KeyError):
                return False
        wait(stated, 30, "the agent's health statement in /run/xiaodian")
        assert stat.S_IMODE(health.stat().st_mode) == 0o644  # for root's update helper
        assert not (root.path / "var/lib/xiaodian/health.json").exists()

        # Killed: restarted.
        first = _state(root)["MainPID"]
        root.run("systemctl", "kill", "--kill-whom=main", "--signal=KILL", AGENT, check=True)
        _until(root, _serving(root, OLD, 1), "the killed agent to be restarted")
        assert _state(root)["MainPID"] != first

        # Hung (stopped: its loop feeds no watchdog): killed by the watchdog, restarted.
        second = _state(root)["MainPID"]
        root.run("systemctl", "kill", "--kill-whom=main", "--signal=STOP", AGENT, check=True)
        _until(root, _serving(root, OLD, 2), "the watchdog to restart the hung agent")
        assert _state(root)["MainPID"] != second
        journal = root.run("journalctl", "-u", AGENT, "--no-pager").stdout
        assert "Watchdog timeout" in journal
        assert canary.is_dir(), "the agent's restarts removed a host file in /dev/shm"

        # Upgraded by dpkg on the terminal: the changed configuration stays as it was.
        done = root.dpkg(debs[NEW])
        assert done.returncode == 0, done.stderr
        assert (root.path / "etc/xiaodian/edge.toml").read_text() == config
        assert not list((root.path / "etc/xiaodian").glob("edge.toml.dpkg-*"))
        assert os.readlink(root.path / "opt/xiaodian/current") == f"releases/{NEW}"
        assert not (root.path / f"opt/xiaodian/releases/{OLD}").exists()
        _until(root, lambda: _state(root)["StatusText"].startswith(f"xiaodian {NEW}:")
               and _state(root)["ActiveState"] == "active", "the new version to be ready")
        wait(lambda: any(json.loads(m.payload).get("agent_version") == NEW
                         for m in state_topic.messages),  # type: ignore[attr-defined]
             30, "the new version's birth message")
    finally:
        os.close(master)
        shutil.rmtree(canary, ignore_errors=True)

