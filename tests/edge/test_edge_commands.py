"""Signed commands end to end: cloud client → Mosquitto → edge agent → serial → fridge → back.

The fridge is the simulator's real `FridgeController`, either inside `hw_sim.runner.Runner`
(physics and all) or behind a pty served by `ControllerOnPty`, which can lose an ACK on
purpose. The cloud side is a plain paho client holding the real signing key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import select
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from command_cloud import STORE, Cloud, cloud
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_gateway.rollouts import artefact_path
from cloud_gateway.web.artefact_server import ArtefactServer, server_context
from devstack.testkit.edge import QUICK, RunningAgent, edge_config, events, pty_link
from devstack.testkit.wait import wait
from edge.agent import Agent
from edge.config import CommandKey, CommandSettings, EdgeConfig, FirmwareSettings
from edge.store import EdgeStore
from firmware_bridge import codec
from hw_sim.controller import ControllerConfig, FridgeController
from hw_sim.runner import Runner
from hw_sim.scenario import FridgeSpec, Scenario, SimSettings
from xiaodian.config import ConfigError, load_config
from xiaodian.mqtt import MqttSettings
from xiaodian.pki import DevPki
from xiaodian.wire import compact
from xiaodian.wire.commands import (
    CommandError,
    Scalar,
    key_id_for,
    sign_command,
)

__all__ = ["cloud"]  # the fixture, used by name


# ------------------------------------------------------------------------------ parts


class ControllerOnPty:
    """The device end of a pty driven by a real simulated controller (no physics).

    `lose_acks` ACKs of command frames are dropped on the way to the host, as line noise
    would; `commands_seen` lists every command frame that reached the device.
    """

    def __init__(self, link: Path, lose_acks: int = 0) -> None:
        self.controller = FridgeController("fridge-1", ControllerConfig(defrost_every_s=0))
        self.master = pty_link(link)
        self.lose_acks = lose_acks
        self.commands_seen: list[codec.Frame] = []
        self._watch = codec.FrameDecoder()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:  # no host has the slave open (yet, or any more)
                time.sleep(0.02)
                continue
            command_seqs = set()
            for frame in self._watch.feed(data):
                if frame.type in codec.COMMAND_TYPES:
                    self.commands_seen.append(frame)
                    command_seqs.add(frame.seq)
            for out in self.controller.receive(data):
                lost = out.kind == "ack" and out.fields["acked_seq"] in command_seqs
                if lost and self.lose_acks > 0:
                    self.lose_acks -= 1
                    continue
                os.write(self.master, out.data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        os.close(self.master)


def _config(tmp_path: Path, mqtt: MqttSettings, kid: str, pub: Path) -> EdgeConfig:
    return edge_config(
        tmp_path / "edge",
        mqtt,
        fridges=[("fridge-1", tmp_path / "fridge-1")],
        commands=CommandSettings(keys=(CommandKey(kid, pub),)),
        **QUICK,
    )


def _hello_seen(agent: Agent) -> bool:
    """The fridge introduced itself and the agent listens for commands."""
    return agent.fridge_readers["fridge-1"].hello is not None and agent.uplink.commands_subscribed


def _audit(agent: Agent) -> list[dict[str, Any]]:
    """The "command" events in the agent's outbox database (read through our own handle)."""
    store = EdgeStore.open_readonly(agent.config.edge.db_path)
    try:
        rows = store.db.execute(
            "SELECT data FROM events WHERE type='command' ORDER BY seq"
        ).fetchall()
    finally:
        store.close()
    return [json.loads(r[0]) for r in rows]


def _commands_published(messages: list[Any]) -> int:
    n = 0
    for m in messages:  # the agent's compact messages (the default format)
        for batch in compact.parse_bundle(m.topic, m.payload):
            n += sum(1 for r in batch.records if getattr(r, "type", None) == "command")
    return n


# ------------------------------------------------------------------------------ end to end


def test_set_point_changes_the_simulated_fridge_and_the_answer_comes_back(
    tmp_path: Path,
    mqtt_settings: Callable[[str], MqttSettings],
    collect: Callable[..., Any],
    cloud: Cloud,
    signing: tuple[Ed25519PrivateKey, str, Path],
) -> None:
    events = collect("cloud-gateway", f"xd/v1/{STORE}/bundle")
    scenario = Scenario(
        sim=SimSettings(link_dir=tmp_path, truth=tmp_path / "truth.jsonl", speed=1.0),
        fridges=(FridgeSpec(id="fridge-1", set_point_c=3.0, defrost_every_h=0),),
    )
    runner = Runner(scenario)
    sim_thread = threading.Thread(target=runner.run, daemon=True)
    sim_thread.start()
    controller = runner.devices[0].sim.controller  # type: ignore[attr-defined]
    try:
        cfg = _config(tmp_path, mqtt_settings(STORE), signing[1], signing[2])
        with RunningAgent(cfg) as agent:
            wait(lambda: _hello_seen(agent), 10, "HELLO from the simulated fridge")
            signed = cloud.sign("set_point", {"device": "fridge-1", "tenths_c": -5})
            answer = cloud.answer(cloud.send(signed))
            assert answer["id"] == signed.command.command_id
            assert (answer["status"], answer["outcome"], answer["device"]) == (
                "executed",
                "ok",
                "fridge-1",
            )
            assert answer["attempts"] == 1
            assert answer["received_at"] <= answer["finished_at"]
            assert controller.set_point_c == -0.5
            assert [e["type"] for e in controller.executed] == ["set_point"]

            # Diagnostics: answered by the agent itself, with counters and no secrets.
            diag = cloud.sign("diagnostics", {"scope": "full"})
            report = cloud.answer(cloud.send(diag))
            assert report["status"] == "executed"
            body = report["diagnostics"]
            assert body["links"]["fridge-1"]["frames_ok"] > 0
            assert body["links"]["fridge-1"]["commands"]["sent"] == 1
            assert body["uplink"]["commands_received"] == 2
            assert "outbox_pending" in body
            text = json.dumps(report)
            assert str(signing[2]) not in text and "PRIVATE" not in text

            wait(lambda: len(_audit(agent)) == 2, 5, "both commands in the audit trail")
            trail = _audit(agent)
            assert [(e["action"], e["status"]) for e in trail] == [
                ("set_point", "executed"),
                ("diagnostics", "executed"),
            ]
            assert trail[1]["diagnostics"] == "sent in the response"
            # The trail reaches the cloud through the outbox like any other event.
            wait(lambda: _commands_published(events.messages) == 2, 5, "the trail published")
    finally:
        runner.request_stop()
        sim_thread.join(timeout=5)
        runner.close()


def test_forged_expired_misdirected_and_replayed_commands_change_nothing(
    tmp_path: Path,
    mqtt_settings: Callable[[str], MqttSettings],
    cloud: Cloud,
    signing: tuple[Ed25519PrivateKey, str, Path],
) -> None:
    fridge = ControllerOnPty(tmp_path / "fridge-1")
    c = fridge.controller
    try:
        cfg = _config(tmp_path, mqtt_settings(STORE), signing[1], signing[2])
        with RunningAgent(cfg) as agent:
            wait(lambda: _hello_seen(agent), 10, "HELLO")
            first = cloud.sign("defrost", {"device": "fridge-1", "minutes": 10})
            done = cloud.answer(cloud.send(first))
            assert (done["status"], done["outcome"]) == ("executed", "ok")
            assert c.defrosting

            # Replayed: the same signed bytes again. Answered with the first result, not run.
            replay = cloud.answer(cloud.send(first), count=2)
            assert (replay["status"], replay["reason"]) == ("refused", "replayed")
            assert replay["earlier_result"] == done

            now = int(time.time())
            set_point: dict[str, Scalar] = {"device": "fridge-1", "tenths_c": 80}
            refused: dict[str, bytes] = {}
            # Forged: the real key id, but signed by another key.
            other = Ed25519PrivateKey.generate()
            forged = sign_command(
                other, cloud.kid, target=STORE, action="set_point", params=set_point, issued_at=now
            )
            refused["bad_signature"] = cloud.send(forged)
            # Tampered: a genuine command with one parameter changed after signing.
            genuine = cloud.sign("set_point", set_point)
            tampered = genuine.wire.replace(b'"tenths_c":80', b'"tenths_c":90')
            refused["bad_signature "] = cloud.send_raw(tampered, b"tampered")
            # A key this store does not pin.
            foreign = sign_command(
                other,
                key_id_for(other.public_key()),
                target=STORE,
                action="set_point",
                params=set_point,
                issued_at=now,
            )
            refused["unknown_key"] = cloud.send(foreign)
            # Expired: issued 20 minutes ago for 5 minutes (a stale queue could deliver it).
            stale = cloud.sign("set_point", set_point, issued_at=now - 1200)
            refused["expired"] = cloud.send_raw(stale.wire, stale.command.command_id.encode())
            # Misdirected: for store-002, delivered on store-001's topic (the broker's ACL
            # would not deliver it here; a compromised broker could).
            misdirected = cloud.sign("set_point", set_point, target="store-002")
            refused["wrong_target"] = cloud.send_raw(
                misdirected.wire, misdirected.command.command_id.encode()
            )
            refused["malformed"] = cloud.send_raw(b"not a command", b"junk")

            for reason, correlation in refused.items():
                answer = cloud.answer(correlation)
                assert (answer["status"], answer["reason"]) == ("refused", reason.strip())

            # A valid command for a device this store does not have: fails, nothing sent.
            nowhere = cloud.sign("unlock", {"device": "fridge-9", "seconds": 5})
            missing = cloud.answer(cloud.send(nowhere))
            assert (missing["status"], missing["outcome"]) == ("failed", "unknown_device")

            wait(lambda: len(_audit(agent)) == 9, 5, "every verdict in the audit trail")
            reasons = [e.get("reason") for e in _audit(agent)]
            assert reasons.count("replayed") == 1 and reasons.count("bad_signature") == 2
        # The fridge saw exactly one command, once; its set point never moved.
        assert [f.type for f in fridge.commands_seen] == [codec.DEFROST_NOW]
        assert [e["type"] for e in c.executed] == ["defrost_now"]
        assert c.set_point_c == 3.0
    finally:
        fridge.close()


def test_a_lost_serial_ack_is_retried_with_the_same_seq_and_runs_once(
    tmp_path: Path,
    mqtt_settings: Callable[[str], MqttSettings],
    cloud: Cloud,
    signing: tuple[Ed25519PrivateKey, str, Path],
) -> None:
    fridge = ControllerOnPty(tmp_path / "fridge-1", lose_acks=1)
    try:
        cfg = _config(tmp_path, mqtt_settings(STORE), signing[1], signing[2])
        with RunningAgent(cfg) as agent:
            wait(lambda: _hello_seen(agent), 10, "HELLO")
            signed = cloud.sign("set_point", {"device": "fridge-1", "tenths_c": 45})
            answer = cloud.answer(cloud.send(signed))
            # The retry found the command already run: `duplicate` means executed.
            assert (answer["status"], answer["outcome"], answer["attempts"]) == (
                "executed",
                "duplicate",
                2,
            )
            stats = agent.fridge_readers["fridge-1"].stats()["commands"]
            assert (stats["sent"], stats["retransmitted"]) == (1, 1)
        first, retry = fridge.commands_seen
        assert retry.seq == first.seq and retry.payload == first.payload
        assert first.flags == codec.ACK_REQUESTED
        assert retry.flags == codec.ACK_REQUESTED | codec.RETRANSMISSION
        assert [e["type"] for e in fridge.controller.executed] == ["set_point"]
        assert fridge.controller.set_point_c == 4.5
    finally:
        fridge.close()


def test_a_command_interrupted_by_a_restart_is_redelivered_and_never_run_twice(
    tmp_path: Path,
    mqtt_settings: Callable[[str], MqttSettings],
    cloud: Cloud,
    signing: tuple[Ed25519PrivateKey, str, Path],
) -> None:
    # The fridge runs it but every ACK is lost: the agent is stopped while it still waits.
    fridge = ControllerOnPty(tmp_path / "fridge-1", lose_acks=100)
    try:
        cfg = _config(tmp_path, mqtt_settings(STORE), signing[1], signing[2])
        signed = cloud.sign("unlock", {"device": "fridge-1", "seconds": 20})
        with RunningAgent(cfg) as agent:
            wait(lambda: _hello_seen(agent), 10, "HELLO")
            correlation = cloud.send(signed)
            wait(lambda: bool(fridge.commands_seen), 5, "the command on the serial line")
        assert correlation not in cloud.answers  # stopped before answering: not acknowledged
        # The broker kept it for the store's session and delivers it again after the restart;
        # the replay memory says it was claimed but never finished.
        with RunningAgent(cfg) as agent:
            answer = cloud.answer(correlation, timeout=10)
            assert (answer["status"], answer["reason"]) == ("refused", "replayed")
            assert answer["earlier_result"] is None
        assert {f.seq for f in fridge.commands_seen} == {fridge.commands_seen[0].seq}
        assert [e["type"] for e in fridge.controller.executed] == ["unlock"]
    finally:
        fridge.close()


# ------------------------------------------------------------------------------ the controller


def _command(msg_type: int, seq: int, payload: bytes, flags: int = codec.ACK_REQUESTED) -> bytes:
    return codec.encode_frame(msg_type, seq, payload, flags)


def _acks(out: list[Any]) -> list[str]:
    return [f.fields["status"] for f in out if f.kind == "ack"]


def _attached() -> FridgeController:
    c = FridgeController("f", ControllerConfig(defrost_every_s=0), boot_count=7)
    c.receive(codec.encode_frame(codec.GET_HELLO, 1, b"", codec.ACK_REQUESTED))
    c.tick(1000, 48, 48, False)
    return c


def test_controller_acks_duplicates_bad_payloads_and_busy() -> None:
    c = _attached()
    assert _acks(c.receive(_command(codec.SET_POINT, 2, codec.pack_set_point(-20)))) == ["ok"]
    retry = _command(codec.SET_POINT, 2, codec.pack_set_point(-20), codec.ACK_REQUESTED | 2)
    assert _acks(c.receive(retry)) == ["duplicate"]
    assert _acks(c.receive(_command(codec.SET_POINT, 3, codec.pack_set_point(400)))) == [
        "bad_payload"
    ]
    assert _acks(c.receive(_command(codec.SET_POINT, 4, b"\x01"))) == ["bad_payload"]
    out = c.receive(_command(codec.DEFROST_NOW, 5, codec.pack_defrost_now(5)))
    assert _acks(out) == ["ok"]
    assert [(f.kind, f.fields.get("reason")) for f in out if f.kind == "defrost"] == [
        ("defrost", "command")
    ]
    assert _acks(c.receive(_command(codec.DEFROST_NOW, 6, codec.pack_defrost_now(5)))) == ["busy"]
    assert _acks(c.receive(_command(codec.TARE, 7, codec.pack_tare(0)))) == ["bad_payload"]
    assert c.set_point_c == -2.0
    assert [e["type"] for e in c.executed] == ["set_point", "defrost_now"]
    # Only the last 8 executed seqs are remembered.
    for seq in range(10, 18):
        c.receive(_command(codec.SET_POINT, seq, codec.pack_set_point(30)))
    assert _acks(c.receive(retry)) == ["ok"]


def test_controller_unlock_relocks_on_door_close_or_timeout() -> None:
    c = _attached()
    assert c.locked
    c.receive(_command(codec.UNLOCK, 2, codec.pack_unlock(30)))
    assert not c.locked
    c.tick(2000, 48, 48, True)  # the customer opens the door
    c.tick(3000, 48, 48, False)  # and closes it: locked again
    assert c.locked
    c.receive(_command(codec.UNLOCK, 3, codec.pack_unlock(5)))
    c.tick(7000, 48, 48, False)
    assert not c.locked
    c.tick(8000, 48, 48, False)  # nobody opened it within 5 s
    assert c.locked
    assert [e[1:] for e in c.lock_events] == [
        ("unlocked", "command"),
        ("locked", "door_closed"),
        ("unlocked", "command"),
        ("locked", "timeout"),
    ]


def test_controller_reboot_says_hello_again_with_a_new_boot() -> None:
    c = _attached()
    c.receive(_command(codec.SET_POINT, 2, codec.pack_set_point(15)))
    out = c.receive(_command(codec.REBOOT, 3, codec.pack_reboot()))
    assert _acks(out) == ["ok"]
    out = c.tick(60_000, 48, 48, False)
    hello = out[0]
    assert (hello.kind, hello.seq) == ("hello", 0)
    assert hello.fields["reset_cause"] == "soft" and hello.fields["boot_count"] == 8
    assert hello.fields["dev_ms"] == 0 and c.dev_ms == 0
    assert c.set_point_c == 1.5  # persisted across the reboot
    # The new boot numbers commands afresh: seq 2 is a new command, not a duplicate.
    assert _acks(c.receive(_command(codec.SET_POINT, 2, codec.pack_set_point(20)))) == ["ok"]
    later = c.tick(70_000, 48, 48, False)
    assert any(f.kind == "temp" and f.fields["dev_ms"] == 10_000 for f in later)


# ------------------------------------------------------------------------------ configuration


def _edge_toml(tmp_path: Path, commands: str) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(
        '[edge]\nstore_id = "store-001"\ndata_dir = "data"\n'
        '[mqtt]\nhost = "127.0.0.1"\nport = 8883\n'
        '[mqtt.tls]\nca = "ca.crt"\ncert = "c.crt"\nkey = "c.key"\n' + commands
    )
    return path


def test_commands_table_pins_keys_by_id(
    tmp_path: Path, signing: tuple[Ed25519PrivateKey, str, Path]
) -> None:
    _, kid, pub = signing
    path = _edge_toml(tmp_path, f'[[commands.keys]]\nid = "{kid}"\npublic_key = "{pub}"\n')
    cfg = load_config(path, EdgeConfig)
    assert cfg.commands is not None and cfg.commands.keys[0].id == kid
    assert cfg.replay_db_path == tmp_path / "data" / "commands.sqlite3"
    # A key filed under the wrong id would refuse every command: refused at start-up.
    wrong = _edge_toml(
        tmp_path, f'[[commands.keys]]\nid = "0123456789abcdef"\npublic_key = "{pub}"\n'
    )
    with pytest.raises(ConfigError, match=f"has key id {kid}"):
        load_config(wrong, EdgeConfig)
    no_commands = load_config(_edge_toml(tmp_path, ""), EdgeConfig)
    assert no_commands.commands is None


# ------------------------------------------------------------------------------ updates


def test_update_commands_are_refused_or_report_their_failure(
    tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings], cloud: Cloud,
    signing: tuple[Ed25519PrivateKey, str, Path], pki: DevPki,
) -> None:
    """The `update` action at the agent: no [firmware] keys: unsupported; an unknown fridge;
    bytes that are not what the command named: the download's `bad_hash`, as `update`
    events (downloading, done) in the outbox. A plaintext URL cannot even be signed."""
    blob = b"not the image the command names" * 100
    sha = hashlib.sha256(b"the image the command names").hexdigest()
    served = tmp_path / "served"
    served.mkdir()
    artefact_path(served, sha).write_bytes(blob)  # a store serving the wrong bytes
    server = ArtefactServer(served, server_context(pki.ca, pki.server_cert, pki.server_key))
    params: dict[str, Any] = {"device": "fridge-1", "kind": "firmware", "url": server.url(sha),
                              "sha256": sha, "size": len(blob), "version": "1.1.0"}
    with pytest.raises(CommandError, match="url"):
        cloud.sign("update", params | {"url": params["url"].replace("https:", "http:")})
    fw_key = ed25519.Ed25519PrivateKey.generate().public_key()
    fw_pub = tmp_path / "fw.pub"
    fw_pub.write_bytes(fw_key.public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo))
    runner = Runner(Scenario(
        sim=SimSettings(link_dir=tmp_path, truth=tmp_path / "truth.jsonl", speed=1.0),
        fridges=(FridgeSpec(id="fridge-1", defrost_every_h=0),)))
    sim_thread = threading.Thread(target=runner.run, daemon=True)
    sim_thread.start()
    try:
        bare = _config(tmp_path, mqtt_settings(STORE), signing[1], signing[2])
        with RunningAgent(bare) as agent:
            wait(lambda: _hello_seen(agent), 10, "HELLO from the simulated fridge")
            answer = cloud.answer(cloud.send(cloud.sign("update", params)))
            assert (answer["status"], answer["outcome"]) == ("failed", "unsupported")
        cfg = dataclasses.replace(bare, firmware=FirmwareSettings(keys=(fw_pub,)))
        with server, RunningAgent(cfg) as agent:
            wait(lambda: _hello_seen(agent), 10, "HELLO from the simulated fridge")
            answer = cloud.answer(cloud.send(cloud.sign("update",
                                                        params | {"device": "fridge-7"})))
            assert (answer["status"], answer["outcome"]) == ("failed", "unknown_device")
            signed = cloud.sign("update", params)
            answer = cloud.answer(cloud.send(signed))
            assert (answer["status"], answer["outcome"]) == ("executed", "update_started")
            got = wait(lambda: [e for e in events(cfg.edge.db_path, "update", outbox=True)
                                if e.get("state") == "done"], 20, "the update's end")
            assert got[0]["result"] == "bad_hash" and got[0]["ok"] is False
            assert got[0]["command"] == signed.command.command_id
            # "downloading" again at 100 % if the loop polled between the last block and
            # the hash check: progress, not a second start.
            states = [e["state"] for e in events(cfg.edge.db_path, "update")]
            assert len(states) >= 2 and states == ["downloading"] * (len(states) - 1) + ["done"]
        assert list(server.fetches) == [(STORE, sha, 200)]  # with the store's own certificate
    finally:
        runner.request_stop()
        sim_thread.join(timeout=5)
        runner.close()
