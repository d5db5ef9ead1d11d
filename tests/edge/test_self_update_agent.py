"""The agent's own update through a real agent: a signed `update` command of kind "agent"
over a real broker, the release fetched over HTTPS, handed to the root helper (played by the
test, through the files of docs/contracts.md), the agent restarted as the switch restarts it,
and the verdict reported once by the run that comes after."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from command_cloud import STORE, Cloud, cloud

from cloud_gateway.rollouts import artefact_path
from cloud_gateway.web.artefact_server import ArtefactServer, server_context
from devstack.testkit.edge import QUICK, RunningAgent, edge_config, events
from devstack.testkit.wait import wait
from edge.agent import Agent
from edge.config import AgentUpdateSettings, CommandKey, CommandSettings, EdgeConfig
from edge.self_update import dpkg_arch, python_version
from xiaodian import agent_release
from xiaodian.mqtt import MqttSettings
from xiaodian.pki import DevPki, load_command_private_key
from xiaodian.pki.keys import make_agent_key

__all__ = ["cloud"]  # the fixture, used by name


def _release(served: Path, key_dir: Path, version: str) -> tuple[str, int]:
    """A signed release for this machine, published where the artefact server finds it."""
    out = io.BytesIO()
    agent_release.write(out, io.BytesIO(b"a release directory, as tar.xz" * 500), version,
                        arch=dpkg_arch(), python=python_version(), schema=1,
                        key=load_command_private_key(key_dir / "agent-signing.key"))
    raw = out.getvalue()
    sha = hashlib.sha256(raw).hexdigest()
    artefact_path(served, sha).write_bytes(raw)
    return sha, len(raw)


def _subscribed(agent: Agent) -> bool:
    return agent.uplink.commands_subscribed


def _updates(cfg: EdgeConfig, command: str) -> list[dict[str, Any]]:
    return [e for e in events(cfg.edge.db_path, "update") if e.get("command") == command]


def _helper_status(cfg: EdgeConfig, command: str, state: str, result: str = "",
                   detail: str = "", **extra: Any) -> None:
    status = cfg.agent_update.status_file
    tmp = status.with_name("status.tmp")
    tmp.write_text(json.dumps({"command": command, "version": "9.0.0", "from": "0.1.0",
                               "state": state, "result": result, "detail": detail, "at": 0,
                               **extra}))
    tmp.replace(status)  # atomically, as the helper does


def test_the_agents_own_update_is_handed_over_once_and_its_verdict_reported_once(
        tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings], cloud: Cloud,
        signing: tuple[Any, str, Path], pki: DevPki) -> None:
    served = tmp_path / "served"
    served.mkdir()
    make_agent_key(tmp_path / "keys")
    server = ArtefactServer(served, server_context(pki.ca, pki.server_cert, pki.server_key))
    root = tmp_path / "root"  # the helper's directory
    root.mkdir()
    bare = edge_config(tmp_path / "edge", mqtt_settings(STORE),
                       commands=CommandSettings(keys=(CommandKey(signing[1], signing[2]),)),
                       **QUICK)
    sha, size = _release(served, tmp_path / "keys", "9.0.0")
    params: dict[str, Any] = {"device": "agent", "kind": "agent", "url": server.url(sha),
                              "sha256": sha, "size": size, "version": "9.0.0"}
    with server:
        with RunningAgent(bare) as agent:  # no [agent_update] keys: not even fetched
            wait(lambda: _subscribed(agent), 10, "the agent listening for commands")
            answer = cloud.answer(cloud.send(cloud.sign("update", params)))
            assert (answer["status"], answer["outcome"]) == ("failed", "unsupported")
        assert list(server.fetches) == []
        cfg = dataclasses.replace(bare, agent_update=AgentUpdateSettings(
            keys=(tmp_path / "keys" / "agent-signing.pub",),
            status_file=root / "status.json"))
        request = cfg.update_dir / "request.json"
        with RunningAgent(cfg) as agent:
            wait(lambda: _subscribed(agent), 10, "the agent listening for commands")
            old_sha, old_size = _release(served, tmp_path / "keys", "0.0.9")
            old = cloud.sign("update", params | {"url": server.url(old_sha), "sha256": old_sha,
                                                 "size": old_size, "version": "0.0.9"})
            assert cloud.answer(cloud.send(old))["outcome"] == "update_started"
            done = wait(lambda: [e for e in _updates(cfg, old.command.command_id)
                                 if e["state"] == "done"], 20, "the downgrade refused")
            assert (done[0]["result"], done[0]["ok"]) == ("downgrade", False)
            assert not request.exists()

            signed = cloud.sign("update", params)
            command = signed.command.command_id
            assert cloud.answer(cloud.send(signed))["outcome"] == "update_started"
            wait(request.exists, 20, "the request handed to the root helper")
            doc = json.loads(request.read_text())
            assert (doc["command"], doc["version"], doc["sha256"], doc["from"]) == (
                command, "9.0.0", sha, "0.1.0")
            # The helper takes it, says it is installing, then switches and restarts.
            taken = root / "taken"
            taken.mkdir()
            request.rename(taken / "request.json")
            (cfg.update_dir / doc["file"]).rename(taken / doc["file"])
            assert hashlib.sha256((taken / doc["file"]).read_bytes()).hexdigest() == sha
            _helper_status(cfg, command, "installing")
            wait(lambda: any(e.get("percent") == 20 for e in _updates(cfg, command)), 10,
                 "installing reported")
        _helper_status(cfg, command, "trial")  # the release switched; the agent restarts
        with RunningAgent(cfg) as agent:  # the next run (the new release, in production)
            wait(lambda: any(e.get("percent") == 60 for e in _updates(cfg, command)), 10,
                 "the trial reported by the run after the restart")
            _helper_status(cfg, command, "confirmed", "confirmed", "healthy", reasons=[])
            wait(lambda: any(e["state"] == "done" for e in _updates(cfg, command)), 10,
                 "the verdict")
        with RunningAgent(cfg) as agent:  # and once more: nothing is reported again
            wait(lambda: _subscribed(agent), 10, "the agent listening for commands")
            assert agent.command_handler is not None and not agent.command_handler.updates
    got = _updates(cfg, command)
    # Each state once, in order, across the three runs ("downloading" may come too late
    # to be seen on a fast machine; "updating 0" if the helper is slower than the report).
    seq = [(e["state"], e["percent"]) for e in got if e["state"] != "downloading"]
    assert seq[0] == ("downloaded", 100) and seq[-1] == ("done", 100)
    assert [p for s, p in seq[1:-1]] in ([0, 20, 60], [20, 60])
    assert {s for s, _ in seq[1:-1]} == {"updating"}
    assert (got[-1]["result"], got[-1]["ok"]) == ("confirmed", True)
    # The verdict in codes (none: healthy) beside its English, for the cloud to word.
    assert (got[-1]["reasons"], got[-1]["detail"]) == ([], "healthy")
    assert not request.exists() and not list(cfg.update_dir.glob("*.xdrel"))  # never again
    assert [f for f in server.fetches if f[1] == sha] == [(STORE, sha, 200)]  # fetched once
