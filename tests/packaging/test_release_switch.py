"""The release switch (edge/release_switch.py) on a temporary tree with a fake systemd:
its decisions (release_switch_core), the safe unpacking, the switch and the rollback.
The same code as root in a real systemd: tests/packaging/test_terminal_selfupdate.py."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devstack.testkit.edge import edge_config
from edge import release_switch as rs
from edge.release_switch_core import Trial, Unit, judge_health, member_refusal, to_prune
from xiaodian import agent_release
from xiaodian.mqtt import MqttSettings, TlsSettings
from xiaodian.wire import update_reasons

HEALTHY = {"version": "1.1.0", "pid": 42, "at": 105.0, "ready": True, "connected": True,
           "devices": ["fridge-1"], "devices_read": ["fridge-1"], "outbox_moving": True}
TRIAL = Trial("1.1.0", switched_at=100.0, restarts_before=3)


def test_health_healthy_only_when_every_condition_holds() -> None:
    v = judge_health(HEALTHY, TRIAL, Unit(42, 3), now=106)
    assert v.healthy and v.reasons == () and v.detail == "healthy"
    # Each condition: its reason code with its parameters, and their English as the detail.
    cases: list[tuple[dict[str, object], Unit, float, dict[str, object], str]] = [
        ({}, Unit(42, 5), 106, {"code": "restarted", "times": 2},
         "restarted by systemd 2 time(s) (crash or watchdog)"),
        ({"version": "1.0.0"}, Unit(42, 3), 106,
         {"code": "wrong_version", "version": "1.0.0", "expected": "1.1.0"},
         "statement by version 1.0.0, not 1.1.0"),
        ({"pid": 41}, Unit(42, 3), 106, {"code": "wrong_pid", "pid": 41, "main_pid": 42},
         "statement by pid 41, the unit's main pid is 42"),
        ({"at": 99.0}, Unit(42, 3), 106, {"code": "no_fresh_statement"},
         "no statement since the switch"),
        ({}, Unit(42, 3), 150, {"code": "stale_statement", "age_s": 45},
         "statement 45 s old (main loop stuck)"),
        ({"ready": False}, Unit(42, 3), 106, {"code": "not_ready"},
         "not ready (READY=1 not sent)"),
        ({"connected": False}, Unit(42, 3), 106, {"code": "not_connected"},
         "not connected to the cloud"),
        ({"devices_read": []}, Unit(42, 3), 106,
         {"code": "devices_not_read", "devices": ["fridge-1"]}, "devices not read: fridge-1"),
        ({"outbox_moving": False}, Unit(42, 3), 106, {"code": "outbox_not_moving"},
         "outbox not moving (no record confirmed by the cloud)"),
    ]
    for change, unit, now, code, why in cases:
        v = judge_health({**HEALTHY, **change}, TRIAL, unit, now)
        assert not v.healthy and update_reasons.reasons_data(v.reasons) == [code], change
        assert v.detail == why
    # The fridges root configured count, whatever the statement lists.
    v = judge_health({**HEALTHY, "devices": []}, TRIAL, Unit(42, 3), 106,
                     configured=["fridge-1", "fridge-2"])
    assert update_reasons.reasons_data(v.reasons) == [
        {"code": "devices_not_read", "devices": ["fridge-2"]}]
    v = judge_health(None, TRIAL, Unit(42, 3), 106)
    assert (update_reasons.reasons_data(v.reasons), v.detail) == (
        [{"code": "no_statement"}], "no health statement")
    # Several at once, in order; the window's end says how long it waited.
    v = judge_health({**HEALTHY, "connected": False, "devices_read": []}, TRIAL, Unit(42, 4),
                     106).timed_out(180.0)
    assert update_reasons.reasons_data(v.reasons) == [
        {"code": "not_healthy_within", "window_s": 180}, {"code": "restarted", "times": 1},
        {"code": "not_connected"}, {"code": "devices_not_read", "devices": ["fridge-1"]}]
    assert v.detail == ("not healthy within 180 s; restarted by systemd 1 time(s) (crash or "
                        "watchdog); not connected to the cloud; devices not read: fridge-1")


def test_what_the_statement_says_is_carried_only_as_the_reasons_may_carry_it() -> None:
    """The agent's user writes the statement: a version with control characters or of any
    length, a pid that is no number, still give reasons the wire contract accepts."""
    v = judge_health({**HEALTHY, "version": "9.9.9\n\x1b[31m" + "x" * 100,
                      "pid": "42"}, TRIAL, Unit(42, 3), 106)
    data = update_reasons.reasons_data(v.reasons)  # PayloadError if the cloud would refuse
    assert data[0]["code"] == "wrong_version" and len(data[0]["version"]) == 64
    assert data[0]["version"].startswith("9.9.9??[31m")
    assert data[1] == {"code": "wrong_pid", "pid": None, "main_pid": 42}
    assert "statement by pid none" in v.detail


def test_members_outside_the_release_or_special_are_refused() -> None:
    ok = [("venv/lib/x.py", "file", "", 0o644), ("venv", "dir", "", 0o755),
          ("venv/bin/python", "symlink", "/usr/bin/python3.11", 0o777),
          ("venv/bin/python3", "symlink", "python", 0o777),
          ("venv/lib/a/b", "symlink", "../../VERSION", 0o777)]
    for m in ok:
        assert member_refusal(*m) is None, m
    bad = [("/etc/passwd", "file", "", 0o644), ("../x", "file", "", 0o644),
           ("venv/../../x", "dir", "", 0o755), ("venv/dev", "other", "", 0o644),
           ("venv/s", "file", "", 0o4755), ("venv/l", "symlink", "/etc/shadow", 0o777),
           ("venv/l", "symlink", "../../x", 0o777), (".", "dir", "", 0o755)]
    for m in bad:
        assert member_refusal(*m) is not None, m


def test_prune_keeps_current_and_previous() -> None:
    assert to_prune(["0.9.0", "1.0.0", "1.1.0", "1.2.0.partial"], ("1.1.0", "1.0.0")) == [
        "0.9.0", "1.2.0.partial"]


# --- the Switch on a temporary tree ---


class FakeSystemd(rs.Systemd):
    def __init__(self, on_restart: Callable[[int], None]) -> None:
        self.pid, self.restarts, self.on_restart = 100, 0, on_restart
        self.restarted = 0

    def restart(self) -> None:
        self.pid += 1
        self.restarted += 1
        self.on_restart(self.pid)

    def unit(self) -> Unit:
        return Unit(self.pid, self.restarts)


def _payload(version: str, extra: list[tarfile.TarInfo] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        def add(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
        d = tarfile.TarInfo("venv")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(d)
        link = tarfile.TarInfo("venv/python")
        link.type, link.linkname = tarfile.SYMTYPE, "/usr/bin/python3.11"
        tar.addfile(link)
        add("venv/agent.py", b"print('hi')\n")
        add("VERSION", f"{version}\n".encode())
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size))
    return buf.getvalue()


@pytest.fixture
def tree(tmp_path: Path) -> tuple[rs.Paths, Ed25519PrivateKey]:
    p = rs.Paths(opt=tmp_path / "opt", inbox=tmp_path / "lib/update",
                 own=tmp_path / "lib-update", health=tmp_path / "run/health.json",
                 health_on_disk=tmp_path / "lib/health.json", config=tmp_path / "etc/edge.toml")
    p.health.parent.mkdir()
    (p.opt / "releases/1.0.0").mkdir(parents=True)
    (p.opt / "releases/1.0.0/VERSION").write_text("1.0.0\n")
    (p.opt / "releases/0.9.0").mkdir()
    (p.opt / "current").symlink_to("releases/1.0.0")
    p.inbox.mkdir(parents=True)
    key = Ed25519PrivateKey.generate()
    pub = p.config.parent / "agent-signing.pub"
    pub.parent.mkdir()
    os.chmod(pub.parent, 0o755)
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    p.config.write_text(f'[agent_update]\nkeys = ["{pub}"]\nhealth_window_s = 30\n'
                        '[[fridges]]\nid = "fridge-1"\nport = "/dev/null"\n')
    return p, key


def _request(p: rs.Paths, key: Ed25519PrivateKey, version: str, payload: bytes) -> None:
    out = io.BytesIO()
    agent_release.write(out, io.BytesIO(payload), version, arch="amd64", python="3.11",
                        schema=1, key=key)
    name = f"xiaodian-agent_{version}.xdrel"
    (p.inbox / name).write_bytes(out.getvalue())
    (p.inbox / "request.json").write_text(json.dumps({
        "command": "c-1", "version": version, "file": name,
        "sha256": hashlib.sha256(out.getvalue()).hexdigest(), "from": "1.0.0", "at": 1.0}))


def _switch(p: rs.Paths, healthy: bool,
            statement: Path | None = None) -> tuple[rs.Switch, FakeSystemd]:
    """`statement`: where the agent writes it (default: the runtime directory)."""
    now = [1000.0]

    def on_restart(pid: int) -> None:
        if healthy and os.readlink(p.opt / "current") == "releases/1.1.0":
            (statement or p.health).write_text(
                json.dumps({**HEALTHY, "pid": pid, "at": now[0] + 1}))

    def sleep(s: float) -> None:
        now[0] += s

    sd = FakeSystemd(on_restart)
    return rs.Switch(p, sd, clock=lambda: now[0], monotonic=lambda: now[0], sleep=sleep,
                     arch="amd64"), sd


def _status(p: rs.Paths) -> dict[str, object]:
    doc: dict[str, object] = json.loads((p.own / "status.json").read_text())
    return doc


@pytest.mark.skipif(os.geteuid() != 0, reason="the trusted key must be root's")
def test_healthy_release_is_confirmed_and_old_ones_pruned(
        tree: tuple[rs.Paths, Ed25519PrivateKey]) -> None:
    p, key = tree
    _request(p, key, "1.1.0", _payload("1.1.0"))
    switch, sd = _switch(p, healthy=True)
    assert switch.run() == 0
    assert _status(p) | {"at": 0} == {"command": "c-1", "version": "1.1.0", "from": "1.0.0",
                                      "previous": "1.0.0",
                                      "state": "confirmed", "result": "confirmed",
                                      "detail": "healthy", "reasons": [], "at": 0}
    assert os.readlink(p.opt / "current") == "releases/1.1.0"
    assert sorted(e.name for e in (p.opt / "releases").iterdir()) == ["1.0.0", "1.1.0"]
    assert os.readlink(p.opt / "releases/1.1.0/venv/python") == "/usr/bin/python3.11"
    assert not list(p.inbox.iterdir()) and sd.restarted == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="the trusted key must be root's")
def test_unhealthy_release_is_rolled_back_and_deleted(
        tree: tuple[rs.Paths, Ed25519PrivateKey]) -> None:
    p, key = tree
    _request(p, key, "1.1.0", _payload("1.1.0"))
    switch, sd = _switch(p, healthy=False)
    switch.run()
    s = _status(p)
    assert (s["state"], s["result"]) == ("rolled_back", "rolled_back")
    # The window (30 s in edge.toml) ran out: its length and what was missing, as codes.
    assert s["reasons"] == [{"code": "not_healthy_within", "window_s": 30},
                            {"code": "no_statement"}]
    assert s["detail"] == "not healthy within 30 s; no health statement"
    assert os.readlink(p.opt / "current") == "releases/1.0.0"
    assert not (p.opt / "releases/1.1.0").exists() and sd.restarted == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="the trusted key must be root's")
def test_refusals_leave_current_alone(tree: tuple[rs.Paths, Ed25519PrivateKey]) -> None:
    p, key = tree
    evil = tarfile.TarInfo("venv/../../escape")
    evil.size = 1
    setuid = tarfile.TarInfo("venv/su")
    setuid.size, setuid.mode = 1, 0o4755
    cases = [("1.1.0", _payload("1.1.0", [evil]), "bad_format", key),
             ("1.1.0", _payload("1.1.0", [setuid]), "bad_format", key),
             ("1.1.0", _payload("1.2.0"), "bad_format", key),  # VERSION inside differs
             ("1.0.0", _payload("1.0.0"), "downgrade", key),
             ("1.1.0", _payload("1.1.0"), "bad_signature", Ed25519PrivateKey.generate())]
    for version, payload, reason, signer in cases:
        _request(p, signer, version, payload)
        switch, sd = _switch(p, healthy=True)
        switch.run()
        s = _status(p)
        assert (s["state"], s["result"]) == ("refused", reason), s
        assert "reasons" not in s  # the result code says it; the detail is free text
        assert os.readlink(p.opt / "current") == "releases/1.0.0" and sd.restarted == 0
        assert sorted(e.name for e in (p.opt / "releases").iterdir()) == ["0.9.0", "1.0.0"]
        assert not (p.opt.parent / "escape").exists()
    # A request whose file changed after the agent checked it.
    _request(p, key, "1.1.0", _payload("1.1.0"))
    (p.inbox / "xiaodian-agent_1.1.0.xdrel").write_bytes(b"other")
    switch, _sd = _switch(p, healthy=True)
    switch.run()
    assert _status(p)["result"] == "bad_hash"
    # A key the agent's user could write is not trusted.
    pub = p.config.parent / "agent-signing.pub"
    os.chmod(pub, 0o666)
    _request(p, key, "1.1.0", _payload("1.1.0"))
    switch, _sd = _switch(p, healthy=True)
    switch.run()
    assert _status(p)["result"] == "bad_signature"


@pytest.mark.skipif(os.geteuid() != 0, reason="the trusted key must be root's")
@pytest.mark.parametrize("where", ["runtime", "data_dir", "configured"])
def test_the_statement_is_read_where_the_agent_writes_it(
        tree: tuple[rs.Paths, Ed25519PrivateKey], where: str) -> None:
    """In the unit's runtime directory; in the data directory when the unit has none (a
    terminal that only self-updated since: its unit is the older package's); only at
    `[agent_update] health_file` when edge.toml sets it (relative to edge.toml)."""
    p, key = tree
    statement = {"runtime": p.health, "data_dir": p.health_on_disk,
                 "configured": p.config.parent / "h.json"}[where]
    if where == "configured":
        p.config.write_text(p.config.read_text().replace(
            "[agent_update]\n", '[agent_update]\nhealth_file = "h.json"\n'))
        # Then nowhere else: a healthy statement in the runtime directory does not count.
        _request(p, key, "1.1.0", _payload("1.1.0"))
        switch, _sd = _switch(p, healthy=True)
        switch.run()
        status = _status(p)
        assert (status["result"], status["reasons"][1:]) == (
            "rolled_back", [{"code": "no_statement"}]), status
        p.health.unlink()
    _request(p, key, "1.1.0", _payload("1.1.0"))
    switch, _sd = _switch(p, healthy=True, statement=statement)
    switch.run()
    assert _status(p)["result"] == "confirmed", _status(p)


def test_the_helper_looks_where_the_packaged_agent_writes() -> None:
    """The agent's unit gives it /run/xiaodian (RuntimeDirectory=); EdgeConfig.health_path
    puts the statement there, or in the data directory without it; the helper reads the
    same two places, in that order."""
    repo = Path(__file__).resolve().parents[2]
    unit = (repo / "packaging/terminal/systemd/xiaodian-agent.service").read_text()
    runtime = [Path("/run") / d for d in re.findall(r"^RuntimeDirectory=(\S+)$", unit, re.M)]
    data_dir = tomllib.loads((repo / "packaging/terminal/edge.toml").read_text())["edge"][
        "data_dir"]
    tls = TlsSettings(Path("ca"), Path("cert"), Path("key"))
    cfg = edge_config(Path(data_dir), MqttSettings("127.0.0.1", 8883, tls))
    paths = rs.Paths()
    assert runtime == [paths.health.parent]
    assert cfg.health_path(str(runtime[0])) == paths.health
    assert cfg.health_path() == paths.health_on_disk


def _interrupted(p: rs.Paths, state: str, current: str) -> None:
    """What a helper killed mid-way leaves: its status, `current`, the release unpacked."""
    (p.opt / "releases/1.1.0").mkdir()
    (p.opt / "releases/1.1.0/VERSION").write_text("1.1.0\n")
    (p.opt / "current").unlink()
    (p.opt / "current").symlink_to(f"releases/{current}")
    p.own.mkdir()
    (p.own / "status.json").write_text(json.dumps({
        "command": "c-1", "version": "1.1.0", "from": "1.0.0", "previous": "1.0.0",
        "state": state, "result": "", "detail": "", "at": 1.0}))


@pytest.mark.parametrize("healthy", [True, False])
def test_a_trial_cut_by_a_restart_gets_a_fresh_window_at_boot(
        tree: tuple[rs.Paths, Ed25519PrivateKey], healthy: bool) -> None:
    p, _key = tree
    _interrupted(p, "trial", current="1.1.0")
    switch, sd = _switch(p, healthy=healthy)
    if healthy:  # the agent systemd started at boot, on the release on trial
        sd.restart()
        sd.restarted = 0
    switch.run()
    s = _status(p)
    assert (s["command"], s["result"]) == ("c-1", "confirmed" if healthy else "rolled_back")
    assert os.readlink(p.opt / "current") == ("releases/1.1.0" if healthy else "releases/1.0.0")
    assert (p.opt / "releases/1.1.0").exists() == healthy
    assert sd.restarted == (0 if healthy else 1)


def test_an_install_cut_before_its_trial_is_refused_and_cleaned(
        tree: tuple[rs.Paths, Ed25519PrivateKey]) -> None:
    p, _key = tree
    _interrupted(p, "trial", current="1.0.0")  # status written, `current` not yet swapped
    (p.opt / "releases/1.1.0.partial").mkdir()
    switch, sd = _switch(p, healthy=True)
    switch.run()
    s = _status(p)
    assert (s["state"], s["result"]) == ("refused", "io_error")
    assert s["reasons"] == [{"code": "interrupted"}]
    assert os.readlink(p.opt / "current") == "releases/1.0.0" and sd.restarted == 0
    assert sorted(e.name for e in (p.opt / "releases").iterdir()) == ["0.9.0", "1.0.0"]
    # Nothing unfinished: a boot run does nothing.
    switch, sd = _switch(p, healthy=True)
    switch.run()
    assert _status(p) == s and sd.restarted == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="the trusted key must be root's")
def test_an_update_directory_swapped_for_a_link_is_not_followed(
        tree: tuple[rs.Paths, Ed25519PrivateKey]) -> None:
    p, key = tree
    _request(p, key, "1.1.0", _payload("1.1.0"))
    elsewhere = p.inbox.with_name("elsewhere")
    p.inbox.rename(elsewhere)
    p.inbox.symlink_to(elsewhere)  # the agent's user owns the parent: it could do this
    switch, sd = _switch(p, healthy=True)
    switch.run()
    assert (elsewhere / "request.json").exists() and not (p.own / "status.json").exists()
    assert os.readlink(p.opt / "current") == "releases/1.0.0" and sd.restarted == 0
