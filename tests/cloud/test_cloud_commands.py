"""Signed commands, cloud side, against a real Mosquitto (TLS, ACL) and a real SQLite file.

The store is played by a paho client with the store's own certificate that verifies each
command with `CommandVerifier`, exactly as the edge does, and answers on the Response Topic
with the Correlation Data. Nothing is mocked between HTTP, database, broker and store.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_gateway import cli
from cloud_gateway.commands import (
    Commander,
    CommandPublisher,
    CommandSetupError,
    Signer,
    load_api_token,
    load_signer,
    parse_cli_params,
)
from cloud_gateway.config import CloudSettings, CommandSettings
from cloud_gateway.db import Database
from cloud_gateway.ingest import IngestWorker, ingest
from cloud_gateway.web import Api, HttpServer
from devstack.testkit.cli import run_commands
from devstack.testkit.http_client import local
from devstack.testkit.http_client import request as http_request
from devstack.testkit.pg_server import db_settings, db_toml
from devstack.testkit.wait import wait
from edge.replay_store import ReplayStore
from xiaodian.mqtt import MqttSettings, TlsSettings, new_client, response_properties
from xiaodian.pki import DevPki
from xiaodian.wire.commands import (
    CommandVerifier,
    key_id_for,
    refusal_payload,
)
from xiaodian.wire.payloads import state_payload

Settings = Callable[[str], MqttSettings]
TOKEN = "t0k3n-" + "x" * 40
LIFETIME_S = 120


def write_secret(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


# ---------------------------------------------------------------- the store, played by paho


@dataclass
class Delivery:
    topic: str
    payload: bytes
    qos: int
    properties: Any  # paho Properties: attributes set dynamically
    answer: dict[str, Any] = field(default_factory=dict)


class FakeStore:
    """Subscribes to its cmd/req like the edge agent; verifies; answers (unless mute)."""

    def __init__(self, settings: MqttSettings, store: str, public_keys: dict[str, Any],
                 *, answer: bool = True) -> None:
        self.store = store
        self.answer = answer
        self.deliveries: list[Delivery] = []
        self._keys = public_keys
        # Made on paho's thread at the first message: ReplayStore's SQLite connection may
        # only be used by the thread that opened it.
        self.verifier: CommandVerifier | None = None
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = new_client(settings, f"{store}-fake")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"xd/v1/{store}/cmd/req", 1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(settings.host, settings.port, settings.keepalive)
        self.client.loop_start()
        assert self._subscribed.wait(5), "fake store did not subscribe"

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        d = Delivery(msg.topic, bytes(msg.payload), msg.qos, msg.properties)
        if self.verifier is None:
            self.verifier = CommandVerifier(self._keys, self.store, time.time,
                                            ReplayStore(":memory:"))
        verdict = self.verifier.verify(d.payload)
        if verdict.ok:
            assert verdict.command is not None
            result = json.dumps({"id": verdict.command.command_id, "status": "ok",
                                 "result": {"ran": verdict.command.action}}).encode()
            self.verifier.record_result(verdict.command.command_id, result)
        else:
            result = refusal_payload(verdict)
        d.answer = json.loads(result)
        if self.answer:
            client.publish(d.properties.ResponseTopic, result, qos=1,
                           properties=response_properties(d.properties.CorrelationData))
        with self._cond:
            self.deliveries.append(d)
            self._cond.notify_all()

    def wait(self, count: int, timeout: float = 5.0) -> list[Delivery]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.deliveries) >= count, timeout), (
                f"{self.store} got {len(self.deliveries)} command(s), expected {count}")
            return list(self.deliveries)

    def answer_raw(self, payload: bytes, correlation: bytes | None) -> None:
        props = response_properties(correlation) if correlation is not None else None
        info = self.client.publish(f"xd/v1/{self.store}/cmd/res", payload, qos=1,
                                   properties=props)
        info.wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# ---------------------------------------------------------------- the cloud, all of it


class Clock:
    """The worker's wall clock: real time plus an offset a test can move."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Cloud:
    db: Path | str  # a SQLite file or a PostgreSQL URL (conftest.db_target)
    worker: IngestWorker
    server: HttpServer
    commander: Commander
    signer: Signer
    clock: Clock

    def post(self, store: str, body: Any, token: str | None = TOKEN,
             content_type: str = "application/json") -> tuple[int, http.client.HTTPMessage, Any]:
        headers = {"Content-Type": content_type}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return request(self.server, "POST", f"/api/stores/{store}/commands", raw, headers)

    def get(self, path: str) -> tuple[int, Any]:
        status, _, body = request(self.server, "GET", path,
                                  headers={"Authorization": f"Bearer {TOKEN}"})
        return status, body

    def command(self, command_id: str) -> dict[str, Any]:
        status, body = self.get(f"/api/commands/{command_id}")
        assert status == 200, body
        return dict(body)

    def wait_state(self, command_id: str, state: str) -> dict[str, Any]:
        wait(lambda: self.command(command_id)["state"] == state, timeout=10, what=f"state {state}")
        return self.command(command_id)


def request(srv: HttpServer, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, Any]:
    r = http_request(local(srv.port, path), method, data=body, headers=headers)
    return r.status, r.headers, r.json()


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def cloud(mqtt_settings: Settings, db_target: Path | str,
          key: Ed25519PrivateKey) -> Iterator[Cloud]:
    """A worker with the HTTP API; every test that uses it runs on SQLite and PostgreSQL."""
    db = db_target
    with Database.open(db) as d:  # both stores have been seen (their birth messages)
        for store in ("store-001", "store-002"):
            ingest(d, f"xd/v1/{store}/state",
                   state_payload(store, True, 1, time.time(), "0.1.0", ["fridge-1"]), "t",
                   time.time())
    gw = mqtt_settings("cloud-gateway")
    clock = Clock()
    worker = IngestWorker(gw, CloudSettings(**db_settings(db), worker_id="cloud-1",
                                            command_sweep_interval_s=0.05,
                                            command_expiry_grace_s=0.0), now=clock)
    signer = Signer(key, key_id_for(key.public_key()))
    publisher = CommandPublisher(gw, "cloud-1-cmd")
    worker.start()
    publisher.start()
    try:
        assert worker.wait_subscribed(10) and publisher.wait_connected(10)
        commander = Commander(signer, db, publisher, lifetime_s=LIFETIME_S,
                              publish_timeout_s=5.0)
        api = Api(db, worker.status, commander=commander, api_token=TOKEN.encode())
        with HttpServer(api, "127.0.0.1", 0) as server:
            yield Cloud(db, worker, server, commander, signer, clock)
    finally:
        publisher.stop()
        worker.stop()
        assert not worker.alive()


@pytest.fixture
def store(mqtt_settings: Settings, key: Ed25519PrivateKey) -> Iterator[FakeStore]:
    s = FakeStore(mqtt_settings("store-001"), "store-001",
                  {key_id_for(key.public_key()): key.public_key()})
    yield s
    s.close()


# ---------------------------------------------------------------- tests


def test_http_command_arrives_signed_and_its_answer_is_recorded(
    cloud: Cloud, store: FakeStore
) -> None:
    before = time.time()
    status, headers, body = cloud.post(
        "store-001", {"action": "defrost", "params": {"device": "fridge-1", "minutes": 20}})
    assert status == 202, body
    cid = body["id"]
    assert headers["Location"] == f"/api/commands/{cid}"
    assert body["command"]["published_at"] is not None  # the broker PUBACKed it

    (d,) = store.wait(1)
    assert (d.topic, d.qos) == ("xd/v1/store-001/cmd/req", 1)
    assert d.properties.ResponseTopic == "xd/v1/store-001/cmd/res"
    assert d.properties.CorrelationData == cid.encode()
    assert LIFETIME_S - 2 <= d.properties.MessageExpiryInterval <= LIFETIME_S
    # The store's own verifier accepted it: signature, target, times, parameters.
    assert d.answer["status"] == "ok" and d.answer["id"] == cid

    cmd = cloud.wait_state(cid, "answered")
    assert cmd["result"] == d.answer
    assert (cmd["store"], cmd["action"], cmd["params"]) == (
        "store-001", "defrost", {"device": "fridge-1", "minutes": 20})
    assert cmd["issued_by"] == "service-token@http:127.0.0.1" and cmd["answered_by"] == "cloud-1"
    assert cmd["key_id"] == cloud.signer.key_id
    with Database.open(cloud.db) as d:  # the audit trail names who sent it
        (row,) = d.conn.execute("SELECT actor, action, target FROM audit_log").fetchall()
    assert tuple(row) == ("service-token", "command.send", cid)
    assert int(before) <= cmd["issued_at"] and cmd["expires_at"] == cmd["issued_at"] + LIFETIME_S
    assert cmd["reason"] is None and cmd["answered_at"] >= cmd["published_at"]
    status, listing = cloud.get("/api/stores/store-001/commands")
    assert status == 200 and [c["id"] for c in listing["commands"]] == [cid]
    assert cloud.get("/api/stores/store-001/commands?state=sent")[1]["commands"] == []
    # The answer was acked after its commit, like telemetry.
    wait(lambda: cloud.worker.counters.snapshot()["acked"] >= 1, timeout=10, what="ack")
    assert cloud.worker.counters.snapshot()["results"] == 1


def test_a_refusal_is_recorded_with_the_stores_reason(
    cloud: Cloud, store: FakeStore, tmp_path: Path
) -> None:
    # Signed with a key the store does not pin: the store refuses and says why.
    other = Ed25519PrivateKey.generate()
    rogue = Commander(Signer(other, key_id_for(other.public_key())), cloud.db,
                      cloud.commander.publisher, lifetime_s=60, publish_timeout_s=5.0)
    cid = rogue.issue("store-001", "unlock", {"device": "fridge-1", "seconds": 5})
    store.wait(1)
    cmd = cloud.wait_state(cid, "refused")
    assert cmd["reason"] == "unknown_key"
    assert cmd["result"]["status"] == "refused" and cmd["result"]["id"] is None


def test_http_refuses_without_a_valid_token_and_validates_strictly(
    cloud: Cloud, store: FakeStore
) -> None:
    good = {"action": "reboot", "params": {"device": "agent"}}
    status, headers, body = cloud.post("store-001", good, token=None)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert cloud.post("store-001", good, token="not-the-token")[0] == 403
    assert cloud.post("store-001", good, token=TOKEN + "x")[0] == 403
    for bad_body, status_, message in [
        ({"action": "self_destruct", "params": {}}, 400, "unknown action 'self_destruct'"),
        ({"action": "defrost", "params": {"device": "fridge-1", "minutes": 99}}, 400,
         "minutes: 99 outside 1..45"),
        ({"action": "set_point", "params": {"device": "fridge-1", "tenths_c": -0.5}}, 400,
         "only whole numbers"),
        ({"action": "reboot", "params": {"device": "agent"}, "extra": 1}, 400,
         "extra: unknown field"),
        (b'{"action": "reboot", "action": "unlock"}', 400, "duplicate key"),
        (b"x" * 5000, 413, "over 4096 bytes"),
    ]:
        status, _, body = cloud.post("store-001", bad_body)
        assert (status, message in body["error"]) == (status_, True), body
    assert cloud.post("store-001", good, content_type="text/plain")[0] == 415
    assert cloud.post("store-999", good)[0] == 404  # never seen: a typo, not a store
    status, headers, _ = request(cloud.server, "PUT", "/api/stores/store-001/commands", b"")
    assert status == 405 and headers["Allow"] == "GET, HEAD, POST"
    # None of that reached the store or the database: the first command it sees is this one.
    status, _, body = cloud.post("store-001", good)
    assert status == 202
    (d,) = store.wait(1)
    assert d.properties.CorrelationData == body["id"].encode()
    assert cloud.get("/api/stores/store-001/commands")[1]["commands"][0]["id"] == body["id"]
    with Database.open_readonly(cloud.db) as db:
        assert db.count("commands") == 1


def test_unanswered_commands_expire_and_a_late_answer_still_counts(
    cloud: Cloud, mqtt_settings: Settings, key: Ed25519PrivateKey
) -> None:
    mute = FakeStore(mqtt_settings("store-002"), "store-002",
                     {key_id_for(key.public_key()): key.public_key()}, answer=False)
    try:
        status, _, body = cloud.post("store-002", {"action": "diagnostics",
                                                   "params": {"scope": "summary"}})
        assert status == 202
        cid = body["id"]
        mute.wait(1)
        time.sleep(0.2)  # several sweeps at the real time: not expired yet
        assert cloud.command(cid)["state"] == "sent"
        cloud.clock.offset = LIFETIME_S + 1.0  # the worker's clock passes expires_at
        cmd = cloud.wait_state(cid, "expired")
        assert cmd["reason"] == "no answer before expiry" and cmd["result"] is None
        assert cloud.worker.counters.snapshot()["expired"] == 1
        # The store did run it after all (its answer was only late): record what happened.
        mute.answer_raw(json.dumps({"id": cid, "status": "ok"}).encode(), cid.encode())
        cmd = cloud.wait_state(cid, "answered")
        assert cmd["result"] == {"id": cid, "status": "ok"}
    finally:
        mute.close()


def test_answers_that_match_no_command_are_parked(
    cloud: Cloud, store: FakeStore, mqtt_settings: Settings, key: Ed25519PrivateKey
) -> None:
    store.answer_raw(b'{"status":"ok"}', b"no-such-command")
    store.answer_raw(b'{"status":"ok"}', None)
    store.answer_raw(b"not json", b"whatever")
    # Another store answering store-001's command on its own topic (all the ACL allows it).
    status, _, body = cloud.post("store-001", {"action": "reboot", "params": {"device": "x"}})
    assert status == 202
    cid = body["id"]
    cloud.wait_state(cid, "answered")
    intruder = FakeStore(mqtt_settings("store-002"), "store-002", {})
    try:
        intruder.answer_raw(b'{"status":"refused","reason":"expired"}', cid.encode())
        wait(lambda: len(cloud.get("/api/dead-letters")[1]["dead_letters"]) == 4,
             timeout=10, what="four dead letters")
    finally:
        intruder.close()
    reasons = sorted(d["reason"] for d in cloud.get("/api/dead-letters")[1]["dead_letters"])
    assert reasons == sorted([
        "command result for unknown command id 'no-such-command'",
        "command result without Correlation Data",
        "command result is not UTF-8 JSON (not_json)",
        f"command {cid} was for store-001, answered on store-002's topic",
    ])
    assert cloud.command(cid)["state"] == "answered"  # the intruder changed nothing
    wait(lambda: cloud.worker.counters.snapshot()["acked"] == 5, timeout=10, what="all acked")


@pytest.fixture
def cloud_toml(cloud: Cloud, pki: DevPki, broker: Any, tmp_path: Path,
               key: Ed25519PrivateKey) -> Path:
    """The cloud.toml the `xiaodian cloud command` CLI reads: this test's database and
    broker, the signing key and the API token."""
    tls = pki.client("cloud-gateway")
    config = tmp_path / "cloud.toml"
    config.write_text(
        f'[cloud]\n{db_toml(cloud.db)}worker_id = "cloud-1"\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        f'[mqtt.tls]\nca = "{tls.ca}"\ncert = "{tls.cert}"\nkey = "{tls.key}"\n'
        f'[commands]\nsigning_key = "{write_secret(tmp_path / "k.pem", pem(key))}"\n'
        f'key_id = "{key_id_for(key.public_key())}"\n'
        f'api_token_file = "{write_secret(tmp_path / "token", TOKEN.encode())}"\n')
    return config


def test_cli_command_issues_and_waits_for_the_answer(
    cloud_toml: Path, store: FakeStore, capsys: pytest.CaptureFixture[str],
) -> None:
    code = run_cli(["cloud", "command", "--config", str(cloud_toml), "--store", "store-001",
                    "set_point", "device=fridge-1", "tenths_c=-5", "--timeout", "10"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    assert (out["state"], out["params"]) == ("answered", {"device": "fridge-1", "tenths_c": -5})
    assert out["issued_by"].startswith("cli:") and out["result"]["status"] == "ok"
    assert run_cli(["cloud", "command", "--config", str(cloud_toml), "--store", "store-001",
                    "defrost", "minutes=soon"]) == 1
    assert "minutes: expected a whole number" in capsys.readouterr().err


def test_cli_names_a_store_whose_terminal_takes_no_commands(
    cloud_toml: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """#16: a store whose edge config has no [commands] never subscribes to its request
    topic; the broker says "no matching subscribers" in its PUBACK, and the command fails at
    once saying so, instead of waiting out --timeout and blaming the cloud worker."""
    start = time.monotonic()
    code = run_cli(["cloud", "command", "--config", str(cloud_toml), "--store", "store-002",
                    "diagnostics", "scope=summary", "--timeout", "30"])
    took = time.monotonic() - start
    captured = capsys.readouterr()
    assert code == 4 and json.loads(captured.out)["state"] == "unsent"
    assert took < 15  # not the 30 s timeout
    assert "no terminal of this store takes commands" in captured.err
    assert "[commands]" in captured.err and "cloud run" not in captured.err


def run_cli(argv: list[str]) -> int:
    return run_commands(argv, cli.register)


# ---------------------------------------------------------------- secrets and parsing


def test_secrets_readable_by_others_or_mismatched_are_refused(
    tmp_path: Path, key: Ed25519PrivateKey, capsys: pytest.CaptureFixture[str]
) -> None:
    kid = key_id_for(key.public_key())
    key_file = write_secret(tmp_path / "k.pem", pem(key), 0o640)
    token_file = write_secret(tmp_path / "token", TOKEN.encode())
    settings = CommandSettings(signing_key=key_file, key_id=kid, api_token_file=token_file)
    with pytest.raises(CommandSetupError, match=rf"{key_file}: mode 0640 .* chmod 600"):
        load_signer(settings)
    config = tmp_path / "cloud.toml"
    config.write_text(
        '[cloud]\ndb = "c.sqlite"\nworker_id = "w"\n[mqtt]\nhost = "localhost"\nport = 8883\n'
        '[mqtt.tls]\nca = "ca.pem"\ncert = "c.pem"\nkey = "c.key"\n'
        f'[commands]\nsigning_key = "{key_file}"\nkey_id = "{kid}"\n'
        f'api_token_file = "{token_file}"\n')
    assert run_cli(["cloud", "run", "--config", str(config)]) == 1
    assert f"refusing to start: {key_file}: mode 0640" in capsys.readouterr().err
    assert not (tmp_path / "c.sqlite").exists()  # refused before anything started

    key_file.chmod(0o600)
    assert load_signer(settings).key_id == kid
    with pytest.raises(CommandSetupError, match="key_id 'abc' in the config, but this key"):
        load_signer(CommandSettings(signing_key=key_file, key_id="abc",
                                    api_token_file=token_file))
    assert load_api_token(token_file) == TOKEN.encode()
    token_file.chmod(0o604)
    with pytest.raises(CommandSetupError, match="token: mode 0604"):
        load_api_token(token_file)
    short = write_secret(tmp_path / "short", b"secret\n")
    with pytest.raises(CommandSetupError, match="at least 32"):
        load_api_token(short)
    with pytest.raises(ValueError, match="api_token_file: required"):
        CommandSettings(signing_key=key_file, key_id=kid)


def test_a_command_the_broker_never_got_is_unsent_and_the_caller_told(
    tmp_path: Path, db_target: Path | str, key: Ed25519PrivateKey
) -> None:
    db = db_target
    with Database.open(db) as d:
        ingest(d, "xd/v1/store-001/state",
               state_payload("store-001", True, 1, 1.0, "0.1.0", []), "t", 1.0)
    # A publisher that never connected (broker down at start-up, say).
    offline = CommandPublisher(MqttSettings("127.0.0.1", 1, TlsSettings(
        tmp_path / "ca", tmp_path / "c", tmp_path / "k")), "w-cmd")
    commander = Commander(Signer(key, key_id_for(key.public_key())), db, offline,
                          lifetime_s=60, publish_timeout_s=1.0)
    with HttpServer(Api(db, commander=commander, api_token=TOKEN.encode()), "127.0.0.1",
                    0) as server:
        status, headers, body = request(
            server, "POST", "/api/stores/store-001/commands",
            json.dumps({"action": "reboot", "params": {"device": "agent"}}).encode(),
            {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert status == 503 and "not connected to the broker" in body["error"]
    assert body["command"]["state"] == "unsent" and body["command"]["published_at"] is None
    assert headers["Location"] == f"/api/commands/{body['id']}"


def test_cli_params_are_typed_by_the_action() -> None:
    assert parse_cli_params("defrost", ["device=7", "minutes=20"]) == {
        "device": "7", "minutes": 20}
    assert parse_cli_params("set_point", ["device=f", "tenths_c=-5"])["tenths_c"] == -5
    for action, words, message in [
        ("explode", [], "unknown action"),
        ("defrost", ["minutes"], "expected KEY=VALUE"),
        ("defrost", ["hours=1"], "not a parameter of defrost"),
        ("defrost", ["minutes=1", "minutes=2"], "given twice"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_cli_params(action, words)
