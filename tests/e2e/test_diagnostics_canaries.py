"""The technician's "collect diagnostics" button end to end, and diagnostics that never
carry a secret (#16 point 2).

Real parts: the simulator, the agent (signed commands on, a pickup key), Mosquitto with
TLS and ACL, a cloud ingest worker, its command publisher and HTTP server, and Chromium.
Every secret holds a canary: the command-signing key, the store's TLS key, the pickup key,
the technician's password and the cloud's API token. After a diagnostics command from the
page and a capture command through the API, none of them is in the page's answer, the
stored command results, the logs of every part, the captures or either database file."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cloud_gateway import accounts
from cloud_gateway.commands import Commander, CommandPublisher, Signer
from cloud_gateway.config import CloudSettings
from cloud_gateway.db import Database
from cloud_gateway.ingest import IngestWorker
from cloud_gateway.web import Api, HttpServer
from devstack.testkit.browser import (
    DESKTOP,
    browser_page,
    english_words,
    have_chromium,
    log_in,
    overflow_px,
    screenshot,
    visible_text,
)
from devstack.testkit.edge import QUICK, RunningAgent, edge_config, quiet_fridge_sim
from devstack.testkit.http_client import get, post
from devstack.testkit.wait import wait
from edge.config import CommandKey, CommandSettings, PickupSettings
from xiaodian.mqtt import MqttSettings
from xiaodian.pki import load_command_private_key, make_command_key

pytestmark = pytest.mark.skipif(not have_chromium(), reason="Debian's chromium missing")

STORE = "store-001"


def _pem_body(path: Path) -> list[str]:
    """A key file's base64 lines: any one of them in an output would be a leak."""
    return [line for line in path.read_text().splitlines() if line and "-----" not in line]


@contextmanager
def _log_to(path: Path) -> Iterator[None]:
    """Every part's log records (agent, worker, server run in this process) into a file."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


def test_collect_diagnostics_from_the_device_page_leaks_no_secret(
    tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings]
) -> None:
    from playwright.sync_api import expect

    priv, pub, kid = make_command_key(tmp_path / "cmdkey")
    pickup_hex = secrets.token_hex(32)
    pickup_file = tmp_path / "pickup.key"
    pickup_file.write_text(pickup_hex + "\n")
    pickup_file.chmod(0o600)
    password = "canary-pw-" + secrets.token_hex(8)
    token = "canary-tok-" + secrets.token_hex(16)
    store_mqtt = mqtt_settings(STORE)
    canaries = {"pickup key": [pickup_hex, pickup_hex.upper(),
                               base64.b64encode(bytes.fromhex(pickup_hex)).decode()],
                "password": [password], "api token": [token],
                "command key": _pem_body(priv), "store TLS key": _pem_body(store_mqtt.tls.key)}

    cfg = edge_config(tmp_path / "edge", store_mqtt,
                      fridges=[("fridge-1", tmp_path / "run" / "fridge-1")],
                      commands=CommandSettings(keys=(CommandKey(kid, pub),)),
                      pickup=PickupSettings(pickup_file), **QUICK)
    cloud_db = tmp_path / "cloud.sqlite"
    with Database.open(cloud_db) as db, db.transaction() as conn:
        accounts.add_user(conn, "tech", "technician", [STORE], password, time.time())
    gw = mqtt_settings("cloud-gateway")
    worker = IngestWorker(gw, CloudSettings(db=cloud_db, worker_id="cloud-1",
                                            command_sweep_interval_s=0.2))
    publisher = CommandPublisher(gw, "cloud-1-cmd")
    log_file = tmp_path / "all.log"
    with _log_to(log_file), quiet_fridge_sim(tmp_path):
        worker.start()
        publisher.start()
        try:
            assert worker.wait_subscribed(10) and publisher.wait_connected(10)
            commander = Commander(Signer(load_command_private_key(priv), kid), cloud_db,
                                  publisher, lifetime_s=60, publish_timeout_s=5.0)
            api = Api(cloud_db, worker.status, commander=commander, api_token=token.encode())
            with RunningAgent(cfg) as agent, HttpServer(api, "127.0.0.1", 0) as server:
                wait(lambda: agent.uplink.commands_subscribed
                     and agent.fridge_readers["fridge-1"].hello is not None, 30,
                     "the agent takes commands and the fridge said HELLO")
                wait(lambda: _knows_fridge(server.url, token), 30, "the fridge in the cloud")
                with browser_page(DESKTOP) as page:
                    log_in(page, server.url, "tech", password, f"/tech/{STORE}/fridge-1")
                    page.click("#diag")
                    expect(page.locator("#diag-summary")).to_be_visible(timeout=30_000)
                    expect(page.locator("#diag-status")).to_have_text("终端回复：")
                    frames = page.locator("#diag-summary dd[data-key=frames]").inner_text()
                    expect(page.locator("#diag-summary dd[data-key=connected]")).to_have_text(
                        "是")
                    # The summary in words; the whole answer (data) behind "the whole answer".
                    assert english_words(visible_text(page),
                                         ["tech", "English", "fridge-1"]) == []
                    page.click("#diag-details summary")
                    shown = page.locator("#diag-out").inner_text()
                    screenshot(page, "device-diagnostics")
                    assert overflow_px(page) == 0
                answer = json.loads(shown)
                capture = post(server.url + f"api/stores/{STORE}/commands",
                               {"action": "capture", "params": {"seconds": 3}},
                               headers={"Authorization": f"Bearer {token}"})
                assert capture.status == 202, capture.body
                cid = capture.json()["id"]
                wait(lambda: _command(server.url, token, cid)["state"] == "answered", 30,
                     "the capture's answer")
                captured = _command(server.url, token, cid)["result"]
                stored = _results(cloud_db)
        finally:
            publisher.stop()
            worker.stop()

    # The answer is the terminal's diagnostics of that fridge, shown on the page.
    assert answer["status"] == "executed" and answer["outcome"] == "ok"
    link = answer["diagnostics"]["links"]["fridge-1"]
    assert link["frames_ok"] > 0 and answer["diagnostics"]["scope"] == "full"
    assert int(frames) == link["frames_ok"]
    pcapng = base64.b64decode(captured["capture"]["pcapng_b64"])
    assert captured["capture"]["packets"] > 0
    outputs = {
        "page answer": shown.encode(), "stored results": "\n".join(stored).encode(),
        "capture": pcapng, "log": log_file.read_bytes(),
        **{f"kept capture {p.name}": p.read_bytes()
           for p in (cfg.edge.data_dir / "captures").glob("*")},
        **{f"database {p.name}": p.read_bytes() for p in [
            *tmp_path.glob("cloud.sqlite*"), *cfg.edge.data_dir.glob("*.sqlite3*")]},
    }
    assert len(stored) >= 2 and len(log_file.read_bytes()) > 1000
    assert {"database cloud.sqlite", "database edge.sqlite3", "database commands.sqlite3"
            } <= set(outputs)
    assert any(k.startswith("kept capture") for k in outputs)
    leaks = [(what, secret, where) for what, values in canaries.items() for secret in values
             for where, data in outputs.items() if secret.encode() in data]
    assert leaks == []


def _knows_fridge(url: str, token: str) -> bool:
    r = get(url + f"api/stores/{STORE}/fridges/fridge-1/vitals?days=1",
            headers={"Authorization": f"Bearer {token}"})
    seen = get(url + f"api/stores/{STORE}/gaps", headers={"Authorization": f"Bearer {token}"})
    return r.status == 200 and seen.status == 200 and "fridge-1" in seen.body.decode()


def _command(url: str, token: str, cid: str) -> dict[str, object]:
    r = get(url + f"api/commands/{cid}", headers={"Authorization": f"Bearer {token}"})
    assert r.status == 200, r.body
    return dict(r.json())


def _results(db: Path) -> list[str]:
    with Database.open_readonly(db) as d, d.transaction() as conn:
        return [str(r[0]) for r in conn.execute(
            "SELECT result FROM commands WHERE result IS NOT NULL")]
