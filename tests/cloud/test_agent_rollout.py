"""A rollout of the terminal's own software from the cloud (#19 point 3), through the
technician's CLI: `xiaodian cloud rollout start --agent-release FILE`.

The cloud publishes a release only if it is signed by an agent-signing key pinned in its
config (`[rollout] agent_keys`): anything else is refused with nothing published and no
rollout recorded. A good one is published by its SHA-256 and rolled out by the firmware's
machinery (rollouts.py): the first tick signs and sends `update` (kind and device "agent"),
which the edge's own verifier accepts; the stores' `update` events, through a real TLS
Mosquitto and the real ingest worker, advance the rollout (confirmed) or halt it
(rolled back). The stores here are MQTT clients with the stores' certificates playing the
terminal's part (tests/edge and tests/packaging run the real installer and switch).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fleet_world import SigningIssuer

from cloud_gateway import commands, rollouts
from cloud_gateway.config import CloudSettings
from cloud_gateway.db import Database
from cloud_gateway.ingest import IngestWorker
from cloud_gateway.rollout import DEFAULT_AGENT_SETTLE_S
from devstack.cli import main as xiaodian
from devstack.testkit.wait import wait
from edge.artefact_update import request_from
from edge.replay_store import ReplayStore
from xiaodian import agent_release
from xiaodian.mqtt import MqttSettings, response_properties
from xiaodian.pki import DevPki, load_command_public_key, make_agent_key, make_command_key
from xiaodian.wire.commands import (
    AGENT_DEVICE,
    CommandVerifier,
    request_topic,
    response_topic,
)
from xiaodian.wire.payloads import batch_payload, event_record

STORES = ["store-001", "store-002"]


def release(path: Path, key: Ed25519PrivateKey, version: str = "1.1.0") -> bytes:
    """A signed release file of a small release directory; its bytes."""
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w:xz") as tf:
        data = f"{version}\n".encode()
        info = tarfile.TarInfo("VERSION")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    with path.open("wb") as out:
        agent_release.write(out, tar, version, arch="x86_64", python="3.11", schema=2, key=key)
    return path.read_bytes()


def private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def cloud_toml(tmp: Path, database: Path | str, mqtt: MqttSettings,
               agent_keys: list[Path]) -> tuple[Path, Path, str]:
    """A cloud config: signed commands on, the agent keys pinned (if any); with the
    command key's public half and id (what a store is given)."""
    priv, pub, kid = make_command_key(tmp / "cmdkey")
    token = tmp / "token"
    token.write_bytes(b"t" * 32)
    token.chmod(0o600)
    db = (f'database_url = "{database}"' if isinstance(database, str)
          else f'db = "{database}"')
    text = f'[cloud]\n{db}\nworker_id = "cloud-1"\n'
    tls = mqtt.tls
    assert tls is not None
    text += (f'[mqtt]\nhost = "{mqtt.host}"\nport = {mqtt.port}\n'
             f'[mqtt.tls]\nca = "{tls.ca}"\ncert = "{tls.cert}"\nkey = "{tls.key}"\n')
    text += (f'[commands]\nsigning_key = "{priv}"\nkey_id = "{kid}"\n'
             f'api_token_file = "{token}"\n')
    if agent_keys:
        text += f"[rollout]\nagent_keys = {json.dumps([str(k) for k in agent_keys])}\n"
    path = tmp / "cloud.toml"
    path.write_text(text)
    return path, pub, kid


def start_args(config: Path, file: Path, artefacts: Path, *extra: str) -> list[str]:
    return ["cloud", "rollout", "start", "--config", str(config), "--agent-release", str(file),
            "--store", STORES[0], "--store", STORES[1], "--artefacts", str(artefacts),
            "--base-url", "https://cloud.example:8443", *extra]


def nowhere(pki: DevPki) -> MqttSettings:
    """A broker address nobody listens on: a refusal must come before any connection."""
    return MqttSettings(host="127.0.0.1", port=9, tls=pki.client("cloud-gateway"))


def rollout_rows(database: Path | str) -> list[Any]:
    with Database.open(database) as db:
        return list(db.conn.execute("SELECT * FROM rollouts").fetchall())


@pytest.mark.parametrize("case", ["not_a_release", "other_key", "damaged", "no_key_pinned",
                                  "with_device", "bad_plan"])
def test_a_release_not_signed_by_a_pinned_key_is_refused_and_nothing_published(
    tmp_path: Path, case: str, pki: DevPki, capsys: pytest.CaptureFixture[str]
) -> None:
    _, pinned_pub, _ = make_agent_key(tmp_path / "pinned")
    other, _, _ = make_agent_key(tmp_path / "other")
    file = tmp_path / "xiaodian-agent_1.1.0.xdrel"
    raw = release(file, private_key(other if case == "other_key" else
                                    tmp_path / "pinned" / "agent-signing.key"))
    if case == "not_a_release":
        file.write_bytes(b"PK\x03\x04 a zip, not a release" + raw[40:])
    elif case == "damaged":  # one payload byte changed: the signed manifest's hash differs
        file.write_bytes(raw[:-10] + bytes([raw[-10] ^ 1]) + raw[-9:])
    database = tmp_path / "cloud.sqlite"
    config, _, _ = cloud_toml(tmp_path, database, nowhere(pki),
                              [] if case == "no_key_pinned" else [pinned_pub])
    artefacts = tmp_path / "artefacts"
    extra = {"with_device": ("--device", "fridge-1"),
             "bad_plan": ("--share", "0")}.get(case, ())
    capsys.readouterr()
    assert xiaodian(start_args(config, file, artefacts, *extra)) == 1
    err = capsys.readouterr().err
    expected = {"not_a_release": "refused, bad_format", "other_key": "refused, bad_signature:"
                " signed by an unknown key", "damaged": "refused, bad_hash",
                "no_key_pinned": "no [rollout] agent_keys", "with_device": "leave --device out",
                "bad_plan": "share in (0, 1]"}
    assert expected[case] in err, err
    assert not artefacts.exists() or list(artefacts.iterdir()) == []
    assert rollout_rows(database) == []


def test_an_image_and_a_release_are_one_or_the_other(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        xiaodian(["cloud", "rollout", "start", "--config", "c.toml", "--image", "a.xdfw",
                  "--agent-release", "b.xdrel", "--device", "fridge-1", "--store", "store-001",
                  "--artefacts", "a", "--base-url", "https://x"])
    assert exc.value.code == 2


def test_an_unloadable_pinned_key_is_a_config_error(
    tmp_path: Path, pki: DevPki, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "agent-signing.pub"
    bad.write_text("not a key")
    config, _, _ = cloud_toml(tmp_path, tmp_path / "cloud.sqlite", nowhere(pki), [bad])
    capsys.readouterr()
    assert xiaodian(start_args(config, tmp_path / "x.xdrel", tmp_path / "a")) != 0
    assert "rollout.agent_keys" in capsys.readouterr().err


class Store:
    """A store's side on the broker, with the store's own certificate: it receives its
    commands, checks them with the edge's verifier, answers, and sends `update` events as
    the agent's outbox does (device "agent")."""

    def __init__(self, collector: Any, name: str, kid: str, pub: Path, tmp: Path) -> None:
        self.c, self.name, self.seq = collector, name, 0
        self.verifier = CommandVerifier({kid: load_command_public_key(pub)}, name, time.time,
                                        ReplayStore(tmp / f"{name}-replay.sqlite"))

    def command(self) -> Any:
        (msg,) = self.c.wait(1, 10.0, topic=request_topic(self.name))
        verdict = self.verifier.verify(msg.payload)
        cmd = verdict.command
        assert verdict.ok and cmd is not None, verdict
        answer = {"id": cmd.command_id, "status": "executed", "device": AGENT_DEVICE,
                  "outcome": "update_started"}
        self.c.client.publish(response_topic(self.name), json.dumps(answer).encode(), qos=1,
                              properties=response_properties(cmd.command_id.encode())
                              ).wait_for_publish(5)
        return cmd

    def report(self, command_id: str, state: str, percent: int, **done: Any) -> None:
        self.seq += 1
        data = {"command": command_id, "kind": "agent", "state": state, "percent": percent,
                "sha256": "0" * 64, "version": "1.1.0", **done}
        payload = batch_payload("events", self.name, AGENT_DEVICE, 1, [
            event_record(self.seq, "update", None, None, time.time(), True, data)])
        self.c.client.publish(f"xd/v1/{self.name}/events", payload, qos=1).wait_for_publish(5)


@contextmanager
def ingest(mqtt: MqttSettings, database: Path | str) -> Iterator[IngestWorker]:
    settings = (CloudSettings(database_url=database, worker_id="ingest-test")
                if isinstance(database, str) else CloudSettings(db=database,
                                                                 worker_id="ingest-test"))
    worker = IngestWorker(mqtt, settings)
    worker.start()
    try:
        assert worker.wait_subscribed(10), "the cloud's ingest worker did not subscribe"
        yield worker
    finally:
        worker.stop()


def summary_when(database: Path | str, rid: str,
                 cond: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    with Database.open(database) as db:
        s = rollouts.summary(db, rid)
    return s if s is not None and cond(s) else None


WHY = [{"code": "not_healthy_within", "window_s": 180}, {"code": "not_connected"},
       {"code": "devices_not_read", "devices": ["fridge-2"]}]
WHY_TEXT = "not healthy within 180 s; not connected to the cloud; devices not read: fridge-2"


@pytest.mark.parametrize("result", ["confirmed", "rolled_back"])
def test_a_signed_release_is_published_sent_signed_and_followed_to_its_end(
    tmp_path: Path, db_target: Path | str, result: str, pki: DevPki,
    mqtt_settings: Callable[[str], MqttSettings], collect: Callable[..., Any],
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    priv, pub, _ = make_agent_key(tmp_path / "agentkey")
    file = tmp_path / "xiaodian-agent_1.1.0.xdrel"
    raw = release(file, private_key(priv))
    config, cmd_pub, kid = cloud_toml(tmp_path, db_target, mqtt_settings("cloud-gateway"),
                                      [pub])
    artefacts = tmp_path / "artefacts"
    stores = {s: Store(collect(s, request_topic(s)), s, kid, cmd_pub, tmp_path) for s in STORES}

    with ingest(mqtt_settings("cloud-gateway"), db_target):
        capsys.readouterr()
        assert xiaodian(start_args(config, file, artefacts, "--share", "0.5")) == 0
        out = capsys.readouterr().out.splitlines()
        rid = out[0]
        assert out[1].startswith(f"{rid}: running, stage 1, started store-001")

        # Recorded as the terminal's software, published by its hash, with the signed
        # manifest's version and the agent's settle time.
        (row,) = rollout_rows(db_target)
        sha = hashlib.sha256(raw).hexdigest()
        assert (row["kind"], row["device"], row["version"], row["sha256"], row["size"]) == (
            "agent", AGENT_DEVICE, "1.1.0", sha, len(raw))
        assert row["url"] == f"https://cloud.example:8443/artefacts/{sha}"
        assert json.loads(row["plan"])["settle_s"] == DEFAULT_AGENT_SETTLE_S
        assert rollouts.artefact_path(artefacts, sha).read_bytes() == raw
        assert [p.name for p in artefacts.iterdir()] == [f"{sha}.bin"]

        # The canary's command: signed, accepted by the edge's verifier, an agent update the
        # edge's update machinery takes as it is.
        cmd = stores["store-001"].command()
        assert cmd.action == "update" and cmd.target == "store-001"
        assert dict(cmd.params) == {"device": "agent", "kind": "agent", "url": row["url"],
                                    "sha256": sha, "size": len(raw), "version": "1.1.0"}
        req = request_from(cmd.command_id, cmd.params)
        assert (req.kind, req.device, req.sha256, req.size) == ("agent", "agent", sha, len(raw))
        assert stores["store-002"].c.messages == []  # not before the canary settled

        s1 = stores["store-001"]
        s1.report(cmd.command_id, "downloading", 0)
        s1.report(cmd.command_id, "downloaded", 100)
        done = ({"result": "confirmed", "ok": True} if result == "confirmed" else
                {"result": "rolled_back", "ok": False, "detail": WHY_TEXT, "reasons": WHY})
        s1.report(cmd.command_id, "done", 100, **done)
        wait(lambda: summary_when(db_target, rid, lambda s: s["stores"][0]["state"] == "done"
                                  and s["stores"][0]["command_state"] == "answered"), 20,
             "the canary's answer and its last `update` event in the cloud's database")

        tick = ["cloud", "rollout", "tick", "--config", str(config), rid]
        if result == "rolled_back":
            assert xiaodian(tick) == 3  # halted by itself
            s = summary_when(db_target, rid, lambda s: True)
            assert s is not None and s["state"] == "halted" and "store-001" in s["reason"]
            (st,) = s["stores"]
            assert (st["outcome"], st["detail"]) == ("rolled_back", done["detail"])
            assert st["reasons"] == WHY  # the codes, as the terminal sent them
            assert xiaodian(tick) == 3
            with Database.open(db_target) as db:
                assert commands.list_commands(db, "store-002") == []
            assert stores["store-002"].c.messages == []
        else:
            assert xiaodian(tick) == 0
            cmd2 = stores["store-002"].command()
            assert (cmd2.target, cmd2.params["kind"], cmd2.params["device"]) == (
                "store-002", "agent", "agent")
            stores["store-002"].report(cmd2.command_id, "done", 100, result="confirmed",
                                       ok=True)
            wait(lambda: summary_when(db_target, rid, lambda s: len(s["stores"]) == 2
                                      and s["stores"][1]["state"] == "done"), 20,
                 "store-002's report in the cloud")
            assert xiaodian(tick) == 0
            s = summary_when(db_target, rid, lambda s: True)
            assert s is not None and (s["state"], s["succeeded"], s["failed"]) == ("done", 2, 0)
        capsys.readouterr()
        monkeypatch.delenv("XIAODIAN_LANG", raising=False)
        assert xiaodian(["cloud", "rollout", "status", "--config", str(config), rid]) == 0
        text = capsys.readouterr().out
        assert f"{rid}  agent 1.1.0 -> agent" in text
        assert f"store-001\tdone\t100%\t{result}\tanswered" in text
        if result == "rolled_back":  # what the terminal said, in Chinese unless asked
            assert ("\tanswered\t180 秒内未恢复正常运行；未连接云端；"
                    "未读到冰箱数据：fridge-2\n") in text
            monkeypatch.setenv("XIAODIAN_LANG", "en")
            assert xiaodian(["cloud", "rollout", "status", "--config", str(config), rid]) == 0
            assert f"\tanswered\t{WHY_TEXT}\n" in capsys.readouterr().out


def test_a_terminal_that_takes_no_agent_update_fails_its_store_in_words(
    tmp_path: Path, db_target: Path | str
) -> None:
    """An agent from before #19 answers the command `failed`, `unsupported` (no `update`
    event ever comes): the canary failed, the rollout halts, and the technician reads why.
    The real signing and the real answer path (commands.record_result); SQLite and
    PostgreSQL."""
    from cloud_gateway.rollout_text import describe
    from xiaodian.i18n import translator

    art = rollouts.Artefact("agent", AGENT_DEVICE, "https://cloud.example/artefacts/x",
                            "ab" * 32, 1000, "1.1.0")
    with Database.open(db_target) as db:
        rid = rollouts.create(db, art, STORES, 1000.0)
        assert rollouts.tick(db, SigningIssuer(db), rid, 1000.0).start == ("store-001",)
        (row,) = rollouts.store_rows(db, rid)
        answer = {"id": row["command_id"], "status": "failed", "device": AGENT_DEVICE,
                  "outcome": "unsupported", "detail": "this terminal takes no such update"}
        out = commands.record_result(db, response_topic("store-001"),
                                     json.dumps(answer).encode(),
                                     row["command_id"].encode(), "w", 1001.0)
        assert out.action == "answered"
        d = rollouts.tick(db, SigningIssuer(db), rid, 1002.0)
        assert d.state.value == "halted" and d.start == ()
        s = rollouts.summary(db, rid)
    assert s is not None and s["stores"][0]["outcome"] == "unsupported"
    words = describe(s, translator("zh_CN"))
    assert words["title"] == "终端软件 1.1.0"
    assert words["rows"][0]["result_text"] == "已拒绝：此终端无法安装这类更新"
    assert words["why"] == "第一家店失败，其他店都没有收到。"


@pytest.mark.parametrize("reasons", [
    [{"code": "devices_not_read", "devices": ["fridge-1", "../../etc"]}],
    [{"code": "not_connected", "injected": "<script>"}],
    "not a list",
])
def test_reasons_that_do_not_parse_are_parked_and_the_report_still_counts(
    db_target: Path | str, reasons: Any
) -> None:
    """A report whose `reasons` are bad: a copy is parked with the field at fault, the event
    is kept, the rollout counts its result, and the page shows its detail as the terminal's
    own words. SQLite and PostgreSQL."""
    from cloud_gateway.ingest_core import ingest as ingest_one
    from cloud_gateway.rollout_text import describe
    from xiaodian.i18n import translator

    art = rollouts.Artefact("agent", AGENT_DEVICE, "https://cloud.example/artefacts/x",
                            "ab" * 32, 1000, "1.1.0")
    with Database.open(db_target) as db:
        rid = rollouts.create(db, art, STORES, 1000.0)
        rollouts.tick(db, SigningIssuer(db), rid, 1000.0)
        (row,) = rollouts.store_rows(db, rid)
        data = {"command": row["command_id"], "kind": "agent", "state": "done", "percent": 100,
                "sha256": "ab" * 32, "version": "1.1.0", "result": "rolled_back", "ok": False,
                "detail": "fridge-1 not read", "reasons": reasons}
        out = ingest_one(db, "xd/v1/store-001/events", batch_payload(
            "events", "store-001", AGENT_DEVICE, 1,
            [event_record(1, "update", None, None, 1001.0, True, data)]), "w", 1001.0)
        assert out.action == "stored" and out.inserted == 1  # the event is kept
        (parked,) = db.conn.execute("SELECT topic, payload, reason FROM dead_letters"
                                    ).fetchall()
        assert parked[0] == "xd/v1/store-001/events"
        assert parked[2].startswith("update event agent/1/1: data.reasons"), parked[2]
        assert json.loads(bytes(parked[1]))["data"] == data
        assert rollouts.tick(db, SigningIssuer(db), rid, 1002.0).state.value == "halted"
        s = rollouts.summary(db, rid)
    assert s is not None
    (st,) = s["stores"]
    assert (st["outcome"], st["reasons"], st["detail"]) == ("rolled_back", None,
                                                            "fridge-1 not read")
    words = describe(s, translator("zh_CN"))["rows"][0]
    assert (words["detail_text"], words["own_words"]) == ("终端原文：fridge-1 not read", True)


def test_every_result_the_terminals_update_can_end_with_reads_in_chinese() -> None:
    """The refusals before the switch have names (agent_release, self_update, the root
    helper, the download, the command handler): each is shown in words, never as its code.
    Read off the sources, so a new refusal without words fails here."""
    import re

    from cloud_gateway.rollout_text import AGENT_RESULTS, RESULTS
    from xiaodian.i18n import translator

    root = Path(__file__).resolve().parents[2]
    made = re.compile(r'(?:Refused|FetchError)\("([a-z_]+)"|_finish\("([a-z_]+)"'
                      r'|_result\(\s*job, "failed", "([a-z_]+)"')
    codes: set[str] = set()
    commands_py = (root / "edge/commands.py").read_text()
    sources = [(root / name).read_text() for name in (
        "xiaodian/agent_release.py", "edge/self_update.py", "edge/release_switch.py",
        "edge/artefact_fetch.py", "edge/artefact_update.py")]
    # the command handler's answers to an `update` (its other commands have their own)
    sources.append(commands_py[commands_py.index("def _start_update"):
                               commands_py.index("def _takes")])
    for text in sources:
        codes |= {next(g for g in m.groups() if g) for m in made.finditer(text)}
    assert {"bad_signature", "wrong_platform", "downgrade", "bad_request", "timeout",
            "unsupported"} <= codes, codes  # the scan finds them
    zh = translator("zh_CN")
    for code in sorted(codes | {"confirmed", "rolled_back"}):
        assert code in AGENT_RESULTS, code
        assert zh.gettext(AGENT_RESULTS[code]) != AGENT_RESULTS[code], code
    for code in ("bad_request", "io_error", "bad_hash", "download_failed"):  # a fridge's too
        assert zh.gettext(RESULTS[code]) != RESULTS[code], code
