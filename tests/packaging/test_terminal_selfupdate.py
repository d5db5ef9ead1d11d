"""The terminal updating its own software from the cloud (issue 19 point 3), end to end in
a clean Debian 12 root run by a real systemd (devstack/testkit/terminal_root.py).

The real path: the 1.0.0 .deb installed and configured as a shop's; a simulated fridge on
a pseudo-terminal; the cloud's ingest worker, command publisher and artefact server on the
host. The cloud sends a signed `update` command of kind "agent"; the agent fetches the
release file over HTTPS with its certificate, checks it and hands it to the root helper
(xiaodian-update.path -> .service, edge/release_switch.py), which switches, watches the
health window and confirms or rolls back; the agent that runs afterwards reports `done`.

Releases, built once from these sources by build.sh (--overlay, tests only):
1.1.0 as is; 1.2.0 with a migration (a new table, SCHEMA_VERSION 2); 1.3.0 with another
(SCHEMA_VERSION 3) and an uplink that never connects (its health never holds).
Root only; skipped elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cloud_gateway import commands, rollouts
from cloud_gateway.db import Database
from cloud_gateway.web.artefact_server import ArtefactServer, server_context
from devstack.testkit.edge import free_port, ingest_worker, query
from devstack.testkit.terminal_root import (
    REPO,
    TerminalRoot,
    build_deb,
    can_run,
    release_file,
)
from devstack.testkit.wait import wait
from hw_sim.runner import Runner
from hw_sim.scenario import Scenario
from xiaodian.config import build
from xiaodian.mqtt import MqttSettings
from xiaodian.pki import DevPki, load_command_private_key, make_agent_key, make_command_key

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(can_run() is not None, reason=str(can_run()))]

AGENT = "xiaodian-agent.service"
STORE = "store-001"
OLD = "1.0.0"
WINDOW_S = 30  # the health window in these tests (the shop's default is 180)


@dataclass(frozen=True)
class Builds:
    deb: Path  # OLD's package
    out: Path  # the release files: release_file(out, version)
    agent_pub: Path


def _overlay(base: Path, schema: int, *, never_connects: bool = False) -> Path:
    """Files over the release's site-packages: migrations up to `schema` (each adds a table
    only, as the schema rule says), and optionally an uplink aimed at a closed port."""
    site = base / f"overlay-{schema}{'-broken' if never_connects else ''}"
    (site / "edge").mkdir(parents=True)
    src = (REPO / "edge/store_schema.py").read_text()
    tables = "".join(f"CREATE TABLE IF NOT EXISTS probe_v{n} (id INTEGER PRIMARY KEY, "
                     "note TEXT);\n" for n in range(2, schema + 1))
    new = src.replace("\nSCHEMA_VERSION = 1\n", f"\nSCHEMA_VERSION = {schema}\n", 1)
    new = new.replace('\nSCHEMA = """\n', '\nSCHEMA = """\n' + tables, 1)
    assert new.count("probe_v") == schema - 1 and f"SCHEMA_VERSION = {schema}" in new
    (site / "edge/store_schema.py").write_text(new)
    if never_connects:
        up = (REPO / "edge/uplink.py").read_text()
        broken = up.replace("                self.settings.port,\n", "                1,\n", 1)
        assert broken != up
        (site / "edge/uplink.py").write_text(broken)
    return site


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Builds:
    out = tmp_path_factory.mktemp("builds")
    keys = tmp_path_factory.mktemp("agent-key")
    key, pub, _kid = make_agent_key(keys)
    deb = build_deb(OLD, out)
    build_deb("1.1.0", out, release_key=key)
    build_deb("1.2.0", out, release_key=key, overlay=_overlay(out, 2))
    build_deb("1.3.0", out, release_key=key, overlay=_overlay(out, 3, never_connects=True))
    return Builds(deb, out, pub)


def _id(root: TerminalRoot, db: str, name: str) -> int:
    for line in (root.path / "etc" / db).read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2])
    raise AssertionError(f"no {name} in the root's /etc/{db}")


class Terminal:
    """One booted terminal with its cloud: what the test does and looks at."""

    def __init__(self, root: TerminalRoot, cloud_db: Path, commander: commands.Commander,
                 server: ArtefactServer, builds: Builds, truth: Path) -> None:
        self.root, self.cloud_db, self.commander, self.server = root, cloud_db, commander, server
        self.builds, self.truth = builds, truth
        self.shas: dict[str, str] = {}  # command id -> the artefact it names

    # --- the cloud's side ---

    def update(self, version: str) -> str:
        """The signed `update` command of kind "agent", as a rollout sends it."""
        raw = release_file(self.builds.out, version).read_bytes()
        sha = rollouts.publish_artefact(self.server.directory, raw)
        cid = self.commander.issue(STORE, "update", {
            "device": "agent", "kind": "agent", "url": self.server.url(sha), "sha256": sha,
            "size": len(raw), "version": version}, issued_by="test")
        with Database.open_readonly(self.cloud_db) as db:
            cmd = commands.get_command(db, cid)
        assert cmd is not None and cmd["state"] != "unsent", cmd
        self.shas[cid] = sha
        return cid

    def update_events(self, cid: str) -> list[dict[str, Any]]:
        rows = query(self.cloud_db, "SELECT data FROM events WHERE store = ? AND type = "
                     "'update' ORDER BY boot, seq", STORE)
        return [d for d in (json.loads(r[0]) for r in rows) if d.get("command") == cid]

    def until(self, cond: Callable[[], object], timeout: float, what: str) -> None:
        """wait(), with what the terminal and the cloud show in the failure."""
        try:
            wait(cond, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnosis()}") from None

    def done(self, cid: str, timeout: float = 150) -> dict[str, Any]:
        """The command's `done` event, once it reached the cloud; exactly one."""
        def final() -> list[dict[str, Any]] | None:
            found = [e for e in self.update_events(cid) if e["state"] == "done"]
            return found or None
        try:
            wait(final, timeout, f"update {cid} done, in the cloud")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnosis()}") from None
        # The agent reports it once; a second would show up in the same pass or not at all
        # (the job is gone from update_jobs once reported), so the count is read now.
        found = [e for e in self.update_events(cid) if e["state"] == "done"]
        assert len(found) == 1, found
        return found[0]

    def cloud_readings(self) -> list[tuple[int, int]]:
        """(boot, seq) of every fridge-1 reading the cloud committed."""
        return [(int(b), int(s)) for b, s in query(
            self.cloud_db, "SELECT boot, seq FROM readings WHERE store = ? AND device = "
            "'fridge-1' ORDER BY boot, seq", STORE, missing_ok=False)]

    # --- the terminal's side ---

    def current(self) -> str:
        return os.readlink(self.root.path / "opt/xiaodian/current")

    def health(self) -> dict[str, Any]:
        """The agent's statement, in its unit's runtime directory (tmpfs); never on the
        terminal's flash, where it was once rewritten and fsynced every 5 s."""
        assert not (self.root.path / "var/lib/xiaodian/health.json").exists()
        try:
            doc: dict[str, Any] = json.loads(
                self.root.inside("/run/xiaodian/health.json").read_text())
        except (OSError, ValueError):
            return {}
        return doc

    def healthy(self, version: str) -> bool:
        h = self.health()
        pid = self.root.show(AGENT, "MainPID")
        return (h.get("version") == version and str(h.get("pid")) == pid
                and h.get("connected") is True and h.get("devices_read") == ["fridge-1"]
                and h.get("outbox_moving") is True and time.time() - h.get("at", 0) < 15)

    def user_version(self) -> int:
        rows = query(self.root.path / "var/lib/xiaodian/edge.sqlite3", "PRAGMA user_version")
        return int(rows[0][0])

    def each_done_once(self) -> None:
        """At the end (later events have flowed since): one `done` per command, no more."""
        for cid in self.shas:
            assert [e["state"] for e in self.update_events(cid)].count("done") == 1, cid

    def edge_tables(self) -> set[str]:
        db = self.root.path / "var/lib/xiaodian/edge.sqlite3"
        return {r[0] for r in query(db, "SELECT name FROM sqlite_master WHERE type='table'")}

    def diagnosis(self) -> str:
        r = self.root
        journal = r.run("journalctl", "-u", AGENT, "-u", "xiaodian-update.service",
                        "--no-pager", "-n", "60").stdout
        status = r.path / "var/lib/xiaodian-update/status.json"
        edge = query(self.root.path / "var/lib/xiaodian/edge.sqlite3",
                     "SELECT count(*), max(boot), max(fseq) FROM readings")
        return (f"current={self.current()} health={self.health()}\n"
                f"cloud readings={len(self.cloud_readings())} edge (n, boot, fseq)={edge}\n"
                f"status={status.read_text() if status.exists() else None}\n{journal}")


def _configure(root: TerminalRoot, settings: MqttSettings, pty: str, command_pub: Path,
               key_id: str, agent_pub: Path) -> None:
    """The installer's part after `dpkg -i`: the store's settings, certificates, the keys it
    trusts (command and agent-signing: root's files, readable by the agent), the fridge."""
    etc = root.path / "etc/xiaodian"
    uid, gid = _id(root, "passwd", "xiaodian"), _id(root, "group", "xiaodian")
    for src, name in ((settings.tls.ca, "ca.pem"), (settings.tls.cert, "store.pem"),
                      (settings.tls.key, "store.key")):
        shutil.copy(src, etc / name)
        os.chown(etc / name, uid, gid)
        os.chmod(etc / name, 0o600)
    for src, name in ((command_pub, "command-signing.pub"),
                      (agent_pub, "agent-signing.pub")):
        shutil.copy(src, etc / name)
        os.chown(etc / name, 0, 0)
        os.chmod(etc / name, 0o644)
    (root.path / "var/lib/xiaodian/fridge-1").symlink_to(pty)
    text = (etc / "edge.toml").read_text()
    for old, new in (
            ('store_id = ""', f'store_id = "{STORE}"\npublish_interval_s = 0.1\n'
                              "readings_interval_s = 0.1"),
            ('host = "mqtt.example.cn"', f'host = "{settings.host}"'),
            ("port = 8883", f"port = {settings.port}"),
            ("kiosk_port = 8470", f"kiosk_port = {free_port()}"),
            ('port = "/dev/xiaodian/fridge-1"', 'port = "/var/lib/xiaodian/fridge-1"'),
            ("keys = []", 'keys = ["/etc/xiaodian/agent-signing.pub"]'),
            ("health_window_s = 180", f"health_window_s = {WINDOW_S}")):
        assert old in text, old
        text = text.replace(old, new, 1)
    text += (f'\n[[commands.keys]]\nid = "{key_id}"\n'
             'public_key = "/etc/xiaodian/command-signing.pub"\n')
    (etc / "edge.toml").write_text(text)
    dropin = root.path / "etc/systemd/system" / f"{AGENT}.d"
    dropin.mkdir(parents=True)
    (dropin / "test.conf").write_text("[Service]\nRestartSec=1s\nDeviceAllow=char-pts rw\n")


def _fridge(tmp_path: Path) -> Runner:
    scenario = {
        "sim": {"seed": 7, "speed": 20.0, "link_dir": "run", "truth": "run/truth.jsonl"},
        "fridges": [{"id": "fridge-1", "initial_air_c": 4.0, "door_openings_per_hour": 0,
                     "defrost_every_h": 0, "sample_interval_s": 10}],
    }
    return Runner(build(scenario, Scenario, tmp_path / "scenario.toml"))


@contextmanager
def terminal(tmp_path: Path, builds: Builds, pki: DevPki,
             mqtt_settings: Callable[[str], MqttSettings]) -> Iterator[Terminal]:
    priv, pub, kid = make_command_key(tmp_path / "cmdkey")
    cloud_db = tmp_path / "cloud.db"
    publisher = commands.CommandPublisher(mqtt_settings("cloud-1-cmd"), "cloud-1-cmd")
    server = ArtefactServer(tmp_path / "artefacts",
                            server_context(pki.ca, pki.server_cert, pki.server_key))
    runner = _fridge(tmp_path)
    sim = threading.Thread(target=runner.run, daemon=True)
    with TerminalRoot(tmp_path / "root") as root, ingest_worker(
            mqtt_settings("cloud-gateway"), cloud_db), server:
        assert root.dpkg(builds.deb).returncode == 0
        pty = os.readlink(runner.scenario.sim.link_dir / "fridge-1")
        os.chmod(pty, 0o666)  # the agent runs as `xiaodian`; a real port gets its group by udev
        _configure(root, mqtt_settings(STORE), pty, pub, kid, builds.agent_pub)
        publisher.start()
        sim.start()
        try:
            assert publisher.wait_connected(10)
            commander = commands.Commander(commands.Signer(load_command_private_key(priv), kid),
                                           cloud_db, publisher, lifetime_s=600,
                                           publish_timeout_s=5.0)
            t = Terminal(root, cloud_db, commander, server, builds, runner.scenario.sim.truth)
            root.boot()
            t.until(lambda: t.healthy(OLD), 60, "the 1.0.0 agent connected and reading")
            yield t
        finally:
            publisher.stop()
            runner.request_stop()
            sim.join(timeout=15)
            runner.close()


def _no_reading_lost_or_twice(t: Terminal, before: int) -> None:
    """Against the simulator's ground truth: every reading the fridge made, up to the
    newest the cloud has, is in the cloud exactly once and unaltered (the fridge resends
    what no agent receipted while the unit restarted; the edge stores a resent record
    once); per edge boot the published sequence numbers run 1..n without a gap; and more
    readings arrived than before the switch."""
    rows = query(t.cloud_db, "SELECT dev_ms, fseq, probes, boot, seq FROM readings WHERE "
                 "store = ? AND device = 'fridge-1'", STORE)
    got = {int(ms): (int(f), json.loads(p)) for ms, f, p, _b, _s in rows}
    assert len(got) == len(rows), "a reading committed twice"
    sent: dict[int, tuple[int, Any]] = {}
    for line in t.truth.read_text().splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # the line being written
        rec = json.loads(line)
        if rec["kind"] == "temp" and rec["device"] == "fridge-1":
            sent[int(rec["dev_ms"])] = (int(rec["fseq"]), rec["probes"])
    newest = max(got)
    lost = sorted(ms for ms in sent if ms <= newest and ms not in got)
    assert not lost, f"readings lost: dev_ms {lost[:10]}"
    assert got == {ms: v for ms, v in sent.items() if ms <= newest}
    for boot in {b for *_x, b, _s in rows}:
        seqs = sorted(int(s) for *_x, b, s in rows if b == boot)
        assert seqs == list(range(1, len(seqs) + 1)), f"edge boot {boot}: gaps in seq"
    assert len(rows) > before + 5


def test_healthy_self_update_then_a_broken_one_rolled_back(
        builds: Builds, tmp_path: Path, pki: DevPki,
        mqtt_settings: Callable[[str], MqttSettings]) -> None:
    with terminal(tmp_path, builds, pki, mqtt_settings) as t:
        before = len(t.cloud_readings())
        first = t.update("1.1.0")
        done = t.done(first)
        assert (done["result"], done.get("detail", "healthy")) == ("confirmed", "healthy"), done
        assert done["reasons"] == [], done  # the verdict in codes: nothing missing
        assert t.current() == "releases/1.1.0"
        assert sorted(p.name for p in (t.root.path / "opt/xiaodian/releases").iterdir()) == [
            OLD, "1.1.0"]
        states = [e["state"] for e in t.update_events(first)]
        assert states[0] == "downloading" and states[-1] == "done", states
        assert (STORE, t.shas[first], 200) in t.server.fetches  # with the store's certificate
        t.until(lambda: t.healthy("1.1.0"), 30, "1.1.0 serving")
        t.until(lambda: len(t.cloud_readings()) > before + 10, 60, "readings after the switch")
        _no_reading_lost_or_twice(t, before)

        # A release that never connects: rolled back within the window, reported once.
        started = time.monotonic()
        second = t.update("1.3.0")
        done = t.done(second, timeout=WINDOW_S + 120)
        assert done["result"] == "rolled_back", done
        assert "not connected to the cloud" in done["detail"], done
        # The same in codes, for the cloud to word: the window, then what was missing.
        assert done["reasons"][0] == {"code": "not_healthy_within", "window_s": WINDOW_S}, done
        assert {"code": "not_connected"} in done["reasons"], done
        assert t.current() == "releases/1.1.0"
        assert not (t.root.path / "opt/xiaodian/releases/1.3.0").exists()
        t.until(lambda: t.healthy("1.1.0"), 60, "1.1.0 serving again")
        assert time.monotonic() - started < WINDOW_S + 90
        # 1.3.0 ran long enough to migrate the file: 1.1.0 runs on the newer file.
        assert {"probe_v2", "probe_v3"} <= t.edge_tables() and t.user_version() == 3
        n = len(t.cloud_readings())
        t.until(lambda: len(t.cloud_readings()) > n + 10, 60, "readings after the rollback")
        _no_reading_lost_or_twice(t, before)
        t.each_done_once()

        # A technician's dpkg upgrade afterwards: its own release current again; the
        # self-updated one is not dpkg's and stays (the next confirmed self-update prunes it).
        done_dpkg = t.root.dpkg(t.builds.out / "xiaodian-terminal_1.2.0_amd64.deb")
        assert done_dpkg.returncode == 0, done_dpkg.stderr
        assert t.current() == "releases/1.2.0"
        assert sorted(p.name for p in (t.root.path / "opt/xiaodian/releases").iterdir()) == [
            "1.1.0", "1.2.0"]
        t.until(lambda: t.healthy("1.2.0"), 60, "the package's 1.2.0 serving")


def test_schema_change_upgrade_and_the_older_release_on_the_newer_file(
        builds: Builds, tmp_path: Path, pki: DevPki,
        mqtt_settings: Callable[[str], MqttSettings]) -> None:
    with terminal(tmp_path, builds, pki, mqtt_settings) as t:
        before = len(t.cloud_readings())
        done = t.done(t.update("1.2.0"))
        assert done["result"] == "confirmed", done
        assert t.current() == "releases/1.2.0"
        assert "probe_v2" in t.edge_tables() and t.user_version() == 2
        # A later release that fails (and migrates further) is rolled back to 1.2.0, which
        # runs on the file 1.3.0 left, healthy.
        done = t.done(t.update("1.3.0"), timeout=WINDOW_S + 120)
        assert done["result"] == "rolled_back", done
        assert "not connected to the cloud" in done["detail"], done
        # The same in codes, for the cloud to word: the window, then what was missing.
        assert done["reasons"][0] == {"code": "not_healthy_within", "window_s": WINDOW_S}, done
        assert {"code": "not_connected"} in done["reasons"], done
        assert t.current() == "releases/1.2.0"
        assert "probe_v3" in t.edge_tables()
        assert t.user_version() == 3  # never lowered by the release before
        t.until(lambda: t.healthy("1.2.0"), 60, "1.2.0 serving on the newer file")
        n = len(t.cloud_readings())
        t.until(lambda: len(t.cloud_readings()) > n + 10, 60, "readings after the rollback")
        _no_reading_lost_or_twice(t, before)
        t.each_done_once()
