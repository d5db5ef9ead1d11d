"""A firmware update started in the cloud (#17 point 4): the cloud publishes the signed image
on its artefact server and sends the store a signed `update` command naming it (URL, size,
SHA-256); the agent fetches it over HTTPS with its own certificate, checks it, pushes it to
the firmware in a real `micropython` process over the simulated 115200-baud link, and its
`update` events (downloading, downloaded, updating, done) reach the cloud's database, where
the rollout reads them. Real Mosquitto (TLS, ACL), a real cloud ingest worker and command
publisher, real TLS for the download.

Two rollouts over two stores (only store-001 has a terminal here): a good image completes
on the canary and the rollout opens the next stage; a broken image (it raises at boot, so
the controller rolls it back) halts the rollout by itself, and store-002 is never sent it.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cloud_gateway import commands, rollouts
from cloud_gateway.db import Database
from cloud_gateway.web.artefact_server import ArtefactServer
from devstack.cli import main as xiaodian
from devstack.firmware_cli import firmware_files
from devstack.testkit.edge import events, readings, running
from devstack.testkit.update_cloud import KEY, cloud, firmware_key, published, summary_if
from devstack.testkit.wait import wait
from edge.config import FirmwareSettings
from firmware_bridge import fwimage
from hw_sim.micropython_host import micropython_binary
from xiaodian.mqtt import MqttSettings
from xiaodian.pki import DevPki

pytestmark = pytest.mark.skipif(micropython_binary() is None, reason="no micropython binary")
STORES = ["store-001", "store-002"]


def scenario() -> dict[str, object]:
    return {
        "sim": {"seed": 5, "speed": 20.0, "link_dir": "run", "truth": "run/truth.jsonl",
                "baud": 115200,
                # the factory's key in the fridge's fwkeys.json: it checks the image itself
                "firmware_keys": [fwimage.raw_public(KEY.public_key()).hex()]},
        "fridges": [{"id": "fridge-1", "controller": "micropython", "initial_air_c": 4.0,
                     "door_openings_per_hour": 0, "defrost_every_h": 0,
                     "sample_interval_s": 10}],
    }


def test_an_update_started_in_the_cloud_completes_and_the_cloud_shows_it(
    tmp_path: Path, pki: DevPki, mqtt_settings: Callable[[str], MqttSettings]
) -> None:
    key, pub = firmware_key(tmp_path)
    raw = fwimage.sign(fwimage.pack(firmware_files((1, 1, 0)), (1, 1, 0), fwimage.HARDWARE,
                                    "0.1.0"), key)
    with cloud(tmp_path, pki, mqtt_settings) as c, running(
            scenario(), tmp_path, mqtt_settings("store-001"), commands=c["command_keys"],
            firmware=FirmwareSettings(keys=(pub,))) as (_, agent):
        edge_db = agent.config.edge.db_path
        wait(lambda: readings(edge_db) >= 1 and agent.uplink.commands_subscribed, 60,
             "readings and the command subscription")
        artefact = published(c, raw)
        with Database.open(c["db"]) as db:
            rid = rollouts.create(db, artefact, STORES, time.time(), share=0.5,
                                  created_by="tech-1")
        # Advanced by the cloud's own ticker (as in `cloud run`), no technician's process.
        ticker = rollouts.RolloutTicker(c["db"], c["commander"], interval_s=0.5)
        ticker.start()
        try:
            s = wait(lambda: summary_if(c, rid, lambda s: s["state"] != "running"), 180,
                     "the rollout settled, in the cloud")
        finally:
            ticker.stop()
        assert s is not None and s["succeeded"] == 1
        first = s["stores"][0]
        assert (first["store"], first["state"], first["result"], first["percent"]) == (
            "store-001", "done", "confirmed", 100)
        assert first["command_state"] == "answered"
        assert first["command_result"]["outcome"] == "update_started"
        # The next stage opened: store-002 was sent the command; it has no terminal here, so
        # the broker says nobody takes it, which is a failure past the threshold (0 of 2).
        assert [x["store"] for x in s["stores"]] == STORES
        assert s["state"] == "halted" and s["reason"] == "1 failed, the threshold is 0", s
        assert [x["command_state"] for x in s["stores"]] == ["answered", "unsent"]
        # Every stage of the update reached the cloud, in order.
        with Database.open_readonly(c["db"]) as db:
            rows = db.conn.execute("SELECT data FROM events WHERE store = 'store-001' AND"
                                   " type = 'update' ORDER BY seq").fetchall()
        states = [json.loads(r[0])["state"] for r in rows]
        assert states[0] == "downloading" and states[-1] == "done"
        assert {"downloaded", "updating"} <= set(states)
        # The fetch went over TLS with the store's own certificate.
        assert ("store-001", artefact.sha256, 200) in c["server"].fetches
        hellos = [e for e in events(edge_db, "hello") if e["device"] == "fridge-1"]
        assert hellos[-1]["firmware"] == [1, 1, 0]


def test_a_rollout_halts_by_itself_when_the_canary_rolls_back(
    tmp_path: Path, pki: DevPki, broker: Any,
    mqtt_settings: Callable[[str], MqttSettings], capsys: pytest.CaptureFixture[str],
) -> None:
    """Through the technician's CLI: `cloud rollout start`, `watch` (exit 3: halted),
    `status`."""
    key, pub = firmware_key(tmp_path)
    src = tmp_path / "src"
    shutil.copytree(Path(fwimage.__file__).parent / "firmware", src)
    main = (src / "main.py").read_text()
    (src / "main.py").write_text(main.replace("    hw = board.Board()\n",
                                              "    raise RuntimeError('broken build')\n", 1))
    image = tmp_path / "broken.xdfw"
    image.write_bytes(fwimage.sign(fwimage.pack(firmware_files((1, 1, 0), src), (1, 1, 0),
                                                fwimage.HARDWARE, "0.1.0"), key))
    with cloud(tmp_path, pki, mqtt_settings) as c, running(
            scenario(), tmp_path, mqtt_settings("store-001"), commands=c["command_keys"],
            firmware=FirmwareSettings(keys=(pub,))) as (_, agent):
        wait(lambda: readings(agent.config.edge.db_path) >= 1
             and agent.uplink.commands_subscribed, 60, "readings and the command subscription")
        tls = pki.client("cloud-gateway")
        token = tmp_path / "token"
        token.write_bytes(b"t" * 32)
        token.chmod(0o600)
        config = tmp_path / "cloud.toml"
        config.write_text(
            f'[cloud]\ndb = "{c["db"]}"\nworker_id = "cloud-1"\n'
            f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
            f'[mqtt.tls]\nca = "{tls.ca}"\ncert = "{tls.cert}"\nkey = "{tls.key}"\n'
            f'[commands]\nsigning_key = "{c["signing_key"]}"\nkey_id = "{c["key_id"]}"\n'
            f'api_token_file = "{token}"\n')
        server: ArtefactServer = c["server"]
        base = f"https://{server.host}:{server.port}"
        capsys.readouterr()
        assert xiaodian(["cloud", "rollout", "start", "--config", str(config), "--image",
                         str(image), "--device", "fridge-1", "--store", STORES[0],
                         "--store", STORES[1], "--artefacts", str(server.directory),
                         "--base-url", base, "--share", "0.5"]) == 0
        rid = capsys.readouterr().out.splitlines()[0]
        assert xiaodian(["cloud", "rollout", "watch", "--config", str(config), rid,
                         "--interval", "0.5", "--timeout", "180"]) == 3
        assert xiaodian(["cloud", "rollout", "status", "--config", str(config), rid,
                         "--format", "json"]) == 0
        s = json.loads(capsys.readouterr().out.splitlines()[-1])
        assert s["state"] == "halted" and "store-001" in s["reason"], s
        assert [(x["store"], x["result"]) for x in s["stores"]] == [("store-001", "rolled_back")]
        # Halted is final: another tick starts nothing; store-002 was never sent the image.
        assert xiaodian(["cloud", "rollout", "tick", "--config", str(config), rid]) == 3
        with Database.open(c["db"]) as db:
            assert not commands.list_commands(db, "store-002")
        assert xiaodian(["cloud", "rollout", "status", "--config", str(config)]) == 0
        text = capsys.readouterr().out
        assert f"{rid}  firmware 1.1.0 -> fridge-1  halted" in text
        assert "store-001\tdone\t" in text and "rolled_back" in text
