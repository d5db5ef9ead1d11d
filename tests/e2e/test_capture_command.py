"""A capture the cloud asks for with a signed `capture` command (#16 point 5): the agent
records through its own tap, never the port, answers with the pcapng, keeps a copy for the
technician, and its link counters do not move."""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from devstack.testkit.edge import QUICK, RunningAgent, edge_config, quiet_fridge_sim
from devstack.testkit.mqtt_clients import start_client, stop_client, subscribe
from devstack.testkit.wait import wait
from edge.config import CommandKey, CommandSettings
from edge.remote_capture import MAX_CAPTURE_BYTES
from firmware_bridge import codec, pcapng
from xiaodian.mqtt import MqttSettings, command_publish
from xiaodian.pki import load_command_private_key, make_command_key
from xiaodian.wire.commands import MAX_RESULT_BYTES, response_topic, sign_command

STORE = "store-001"
COUNTERS = ("crc_errors", "missed_frames", "seq_gaps", "reconnects", "bytes_discarded")


def test_a_signed_capture_records_through_the_agent(
    tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings]
) -> None:
    priv, pub, kid = make_command_key(tmp_path / "cmdkey")
    key = load_command_private_key(priv)
    answers: queue.Queue[dict[str, Any]] = queue.Queue()

    def on_answer(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        answers.put(json.loads(msg.payload))

    with quiet_fridge_sim(tmp_path) as port:
        cfg = edge_config(tmp_path / "edge", mqtt_settings(STORE), fridges=[("fridge-1", port)],
                          commands=CommandSettings(keys=(CommandKey(kid, pub),)), **QUICK)
        cloud = start_client(mqtt_settings("cloud-gateway"), "cloud-gateway-commands")
        subscribe(cloud, response_topic(STORE), on_answer)
        try:
            with RunningAgent(cfg) as agent:
                reader = agent.fridge_readers["fridge-1"]
                wait(lambda: reader.hello is not None and agent.uplink.commands_subscribed, 20,
                     "HELLO and the command subscription")
                wait(lambda: reader.receipts_sent >= 2, 20, "a few records receipted")
                before = reader.stats()
                signed = sign_command(key, kid, target=STORE, action="capture",
                                      params={"device": "fridge-1", "seconds": 3},
                                      issued_at=int(time.time()))
                p = command_publish(signed, time.time())
                cloud.publish(p.topic, p.payload, qos=1, properties=p.properties)
                answer = answers.get(timeout=20)
                after = reader.stats()
        finally:
            stop_client(cloud)

    assert (answer["status"], answer["outcome"], answer["device"]) == (
        "executed", "ok", "fridge-1")
    cap = answer["capture"]
    data = base64.b64decode(cap["pcapng_b64"])
    assert hashlib.sha256(data).hexdigest() == cap["sha256"]
    assert len(json.dumps(answer)) <= MAX_RESULT_BYTES and len(data) <= MAX_CAPTURE_BYTES
    interfaces, packets = pcapng.read(data)
    assert [i.name for i in interfaces] == ["fridge-1"] and cap["packets"] == len(packets)
    assert {p.direction for p in packets} == {pcapng.INBOUND, pcapng.OUTBOUND}
    kinds = {f.type for p in packets for f in codec.FrameDecoder().feed(p.data)}
    assert codec.TEMP in kinds and codec.RECEIPT in kinds
    # Kept on the terminal for the technician, private.
    kept = cfg.edge.data_dir / "captures" / cap["file"]
    assert kept.read_bytes() == data and oct(kept.stat().st_mode & 0o777) == "0o600"
    # The agent's link never noticed.
    assert {k: after[k] for k in COUNTERS} == {k: before[k] for k in COUNTERS}
