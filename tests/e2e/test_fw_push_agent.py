"""`xiaodian firmware push` through the running agent: the agent updates the firmware inside a
real `micropython` process over the link it holds (115200 baud in the simulator), the
readings keep reaching its database between the chunks, and it refuses an image it does not
trust before sending a byte."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from devstack.cli import main as xiaodian
from devstack.firmware_cli import firmware_files
from devstack.testkit.edge import edge_toml, events, readings, running
from devstack.testkit.wait import wait
from edge.config import FirmwareSettings
from firmware_bridge import fwimage
from firmware_bridge.tap import TapError, firmware_progress, tap_path
from hw_sim.micropython_host import micropython_binary
from xiaodian.mqtt import MqttSettings

pytestmark = pytest.mark.skipif(micropython_binary() is None, reason="no micropython binary")
STORE = "store-001"
KEY = ed25519.Ed25519PrivateKey.generate()  # the firmware-signing key


def scenario() -> dict[str, object]:
    return {
        "sim": {"seed": 4, "speed": 20.0, "link_dir": "run", "truth": "run/truth.jsonl",
                "baud": 115200,
                # the factory's key in the fridge's fwkeys.json: it checks the image itself
                "firmware_keys": [fwimage.raw_public(KEY.public_key()).hex()]},
        "fridges": [{"id": "fridge-1", "controller": "micropython", "initial_air_c": 4.0,
                     "door_openings_per_hour": 0, "defrost_every_h": 0,
                     "sample_interval_s": 10}],
    }


def test_push_through_the_agent_keeps_the_readings_flowing(
    tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings],
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = KEY
    pub = tmp_path / "firmware-signing.pub"
    pub.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    unpadded = fwimage.pack(firmware_files((1, 1, 0)), (1, 1, 0), fwimage.HARDWARE, "0.1.0")
    image = tmp_path / "fw.xdfw"
    image.write_bytes(fwimage.sign(unpadded, key))
    untrusted = tmp_path / "other.xdfw"
    untrusted.write_bytes(fwimage.sign(unpadded, ed25519.Ed25519PrivateKey.generate()))
    newer_agent = tmp_path / "needs-agent.xdfw"  # signed and trusted, but for a newer agent
    newer_agent.write_bytes(fwimage.sign(fwimage.pack(
        firmware_files((1, 1, 0)), (1, 1, 0), fwimage.HARDWARE, "999.0.0"), key))
    with running(scenario(), tmp_path, mqtt_settings(STORE),
                 firmware=FirmwareSettings(keys=(pub,))) as (_, agent):
        db = agent.config.edge.db_path
        wait(lambda: readings(db) >= 2, 60, "readings from the micropython firmware")
        sock = tap_path(agent.config.edge.data_dir)
        with pytest.raises(TapError, match="bad_signature"):
            next(firmware_progress(sock, "fridge-1", untrusted))
        with pytest.raises(TapError, match=r"agent_too_old: image needs agent 999\.0\.0"):
            next(firmware_progress(sock, "fridge-1", newer_agent))
        progress = []
        during = []
        for item in firmware_progress(sock, "fridge-1", image, deadline_s=120):
            progress.append(item)
            if item["state"] in ("offering", "sending"):
                during.append(readings(db))
        assert progress[-1]["done"] and progress[-1]["result"] == "confirmed", progress[-1]
        # The transfer took several seconds at 115200 baud; readings were stored meanwhile.
        assert len(during) >= 4 and during[-1] > during[0], during
        assert any(0 < p["percent"] < 100 for p in progress)
        hellos = [e for e in events(db, "hello") if e["device"] == "fridge-1"]
        assert hellos[-1]["firmware"] == [1, 1, 0]
        sha = fwimage.parse(image.read_bytes()).sha256.hex()
        wait(lambda: [(e["result"], e["sha256"]) for e in events(db, "firmware", outbox=True)]
             == [("installed", sha), ("confirmed", sha)], 30,
             "the update's outcome as events in the outbox")
        after = readings(db)
        wait(lambda: readings(db) > after, 30, "readings from the new firmware")
        # The CLI, through the same socket: the device runs 1.1.0 now, so 1.1.0 is refused.
        cfg = tmp_path / "edge.toml"
        cfg.write_text(edge_toml(agent.config))
        capsys.readouterr()
        assert xiaodian(["firmware", "push", "fridge-1", str(image), "--config", str(cfg)]) == 2
        assert "downgrade: image 1.1.0 is not newer than the running 1.1.0" in (
            capsys.readouterr().err)


def test_a_rollback_through_the_agent_is_an_event_for_the_cloud(
    tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings]
) -> None:
    key = KEY
    pub = tmp_path / "firmware-signing.pub"
    pub.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    src = tmp_path / "src"
    shutil.copytree(Path(fwimage.__file__).parent / "firmware", src)
    main = (src / "main.py").read_text()
    (src / "main.py").write_text(main.replace("    hw = board.Board()\n",
                                              "    raise RuntimeError('broken build')\n", 1))
    files = firmware_files((1, 1, 0), src)
    image = tmp_path / "broken.xdfw"
    image.write_bytes(fwimage.sign(fwimage.pack(files, (1, 1, 0), fwimage.HARDWARE, "0.1.0"),
                                   key))
    with running(scenario(), tmp_path, mqtt_settings(STORE),
                 firmware=FirmwareSettings(keys=(pub,))) as (_, agent):
        db = agent.config.edge.db_path
        wait(lambda: readings(db) >= 1, 60, "readings from the micropython firmware")
        *_, last = firmware_progress(tap_path(agent.config.edge.data_dir), "fridge-1", image,
                                    deadline_s=120)
        assert last["done"] and last["result"] == "rolled_back", last
        sha = fwimage.parse(image.read_bytes()).sha256.hex()
        wait(lambda: ("rolled_back", sha) in [
            (e["result"], e["sha256"]) for e in events(db, "firmware", outbox=True)],
            30, "the rollback as an event in the outbox")
        hellos = [e for e in events(db, "hello") if e["device"] == "fridge-1"]
        assert hellos[-1]["firmware"] == [1, 0, 0]  # the factory image runs again
        after = readings(db)
        wait(lambda: readings(db) > after, 30, "readings after the rollback")
