"""The cloud's side of an update started from the cloud, for the end-to-end tests: an
ingest worker, the command publisher and signer, the artefact server; a firmware-signing
key and publishing a signed image on the artefact store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from cloud_gateway import commands, rollouts
from cloud_gateway.db import Database
from cloud_gateway.web.artefact_server import ArtefactServer, server_context
from edge.config import CommandKey, CommandSettings
from firmware_bridge import fwimage
from xiaodian.mqtt import MqttSettings
from xiaodian.pki import DevPki, load_command_private_key, make_command_key

from .edge import ingest_worker

KEY = ed25519.Ed25519PrivateKey.generate()  # the firmware-signing key of one test run


@contextmanager
def cloud(tmp_path: Path, pki: DevPki,
          mqtt_settings: Callable[[str], MqttSettings]) -> Iterator[dict[str, Any]]:
    """The cloud's side: ingest worker, command publisher, artefact server; and the keys."""
    priv, pub, kid = make_command_key(tmp_path / "cmdkey")
    signer = commands.Signer(load_command_private_key(priv), kid)
    db = tmp_path / "cloud.db"
    publisher = commands.CommandPublisher(mqtt_settings("cloud-1-cmd"), "cloud-1-cmd")
    server = ArtefactServer(tmp_path / "artefacts",
                            server_context(pki.ca, pki.server_cert, pki.server_key))
    with ingest_worker(mqtt_settings("cloud-gateway"), db), server:
        publisher.start()
        try:
            assert publisher.wait_connected(10)
            commander = commands.Commander(signer, db, publisher, lifetime_s=300,
                                           publish_timeout_s=5.0)
            yield {"db": db, "commander": commander, "server": server,
                   "command_keys": CommandSettings(keys=(CommandKey(kid, pub),)),
                   "signing_key": priv, "key_id": kid}
        finally:
            publisher.stop()


def firmware_key(tmp_path: Path) -> tuple[ed25519.Ed25519PrivateKey, Path]:
    key = KEY
    pub = tmp_path / "firmware-signing.pub"
    pub.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key, pub


def published(c: dict[str, Any], raw: bytes) -> rollouts.Artefact:
    server: ArtefactServer = c["server"]
    sha = rollouts.publish_artefact(server.directory, raw)
    version = ".".join(map(str, fwimage.parse(raw).manifest.version))
    return rollouts.Artefact("firmware", "fridge-1", server.url(sha), sha, len(raw), version)


def summary_if(c: dict[str, Any], rid: str,
               cond: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    """The rollout's summary once `cond` holds for it, else None (for `wait`)."""
    with Database.open_readonly(c["db"]) as db:
        s = rollouts.summary(db, rid)
    return s if s is not None and cond(s) else None
