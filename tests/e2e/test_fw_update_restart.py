"""An update started in the cloud survives the agent's restarts (edge/update_jobs.py).

The agent is a real `xiaodian edge run` process, killed with SIGKILL twice: once in the
middle of the download (a relay in front of the artefact server holds the bytes after the
first 20 kB, as a stalled link would), once in the middle of the push to the fridge (the
firmware in a real `micropython` process over the simulated 115200-baud link). Each new
agent takes the update up from the edge store: the download resumes with a Range request
(206), the push from the offset the fridge holds; the update ends `confirmed`, and each
state reached the cloud once, in order. Real Mosquitto (TLS, ACL), the cloud's ingest
worker and command publisher, real TLS for the download."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cloud_gateway.db import Database
from devstack.firmware_cli import firmware_files
from devstack.testkit.edge import QUICK, edge_config, events, query, readings, start_edge
from devstack.testkit.update_cloud import KEY, cloud, firmware_key, published
from devstack.testkit.wait import wait
from edge.config import FirmwareSettings
from firmware_bridge import fwimage
from hw_sim.micropython_host import micropython_binary
from hw_sim.runner import Runner
from hw_sim.scenario import Scenario
from xiaodian.config import build
from xiaodian.mqtt import MqttSettings
from xiaodian.pki import DevPki

pytestmark = pytest.mark.skipif(micropython_binary() is None, reason="no micropython binary")
STORE = "store-001"
STALL_AFTER = 20_000  # bytes the relay lets through before it holds the download
RANK = ("idle", "downloading", "downloaded", "updating", "done")


class Relay:
    """TCP from 127.0.0.1:port to the artefact server; while `stall` is set it forwards at
    most STALL_AFTER bytes of each answer and holds the rest (a stalled link)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.stall = True
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection(self.target)
            self._socks += [client, server]
            t = threading.Thread(target=self._pump, args=(client, server), daemon=True)
            t.start()
            self._threads.append(t)

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, server)
        sel.register(server, selectors.EVENT_READ, client)
        sent_down = 0
        stalled = self.stall
        with contextlib.suppress(OSError):
            while not self._stop.is_set():
                for key, _ in sel.select(0.2):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = src.recv(16384)
                    if not data:
                        return
                    if src is server and stalled:
                        data = data[: max(0, STALL_AFTER - sent_down)]
                        sent_down += len(data)
                    if data:
                        key.data.sendall(data)

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.close()
        for t in self._threads:
            t.join(timeout=5)


def update_events(db: Path) -> list[dict[str, Any]]:
    return [e for e in events(db, "update") if e["device"] == "fridge-1"]


def kill(proc: subprocess.Popen[bytes]) -> None:
    """A power cut of the agent: SIGKILL to its session (it runs in its own)."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def issue_when_subscribed(c: dict[str, Any], params: dict[str, Any]) -> str:
    """The update command, sent again until the agent's subscription takes it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        cid = c["commander"].issue(STORE, "update", params, issued_by="tech-1")
        with Database.open_readonly(c["db"]) as db:
            state = db.conn.execute("SELECT state FROM commands WHERE id = ?",
                                    (cid,)).fetchone()[0]
        if state != "unsent":
            return str(cid)
        time.sleep(0.5)  # the agent is still connecting: not a retry of a flaky check
    raise AssertionError("the agent never subscribed to its commands")


def test_an_update_survives_agent_restarts_mid_download_and_mid_push(
    tmp_path: Path, pki: DevPki, mqtt_settings: Callable[[str], MqttSettings]
) -> None:
    key, pub = firmware_key(tmp_path)
    assert key is KEY
    files = firmware_files((1, 1, 0))
    files["pad.bin"] = os.urandom(24_000)  # ~60 kB: a push of several seconds
    raw = fwimage.sign(fwimage.pack(files, (1, 1, 0), fwimage.HARDWARE, "0.1.0"), key)
    scenario = {
        "sim": {"seed": 6, "speed": 20.0, "link_dir": "run", "truth": "run/truth.jsonl",
                "baud": 115200,
                "firmware_keys": [fwimage.raw_public(KEY.public_key()).hex()]},
        "fridges": [{"id": "fridge-1", "controller": "micropython", "initial_air_c": 4.0,
                     "door_openings_per_hour": 0, "defrost_every_h": 0,
                     "sample_interval_s": 10}],
    }
    runner = Runner(build(scenario, Scenario, tmp_path / "scenario.toml"))
    sim = threading.Thread(target=runner.run, daemon=True)
    sim.start()
    procs: list[subprocess.Popen[bytes]] = []
    log = tmp_path / "agent.log"
    with cloud(tmp_path, pki, mqtt_settings) as c:
        relay = Relay(("127.0.0.1", c["server"].port))
        cfg = edge_config(tmp_path / "edge", mqtt_settings(STORE),
                          fridges=[("fridge-1", runner.scenario.sim.link_dir / "fridge-1")],
                          commands=c["command_keys"], firmware=FirmwareSettings(keys=(pub,)),
                          **QUICK)
        db = cfg.edge.db_path

        def agent() -> subprocess.Popen[bytes]:
            procs.append(start_edge(cfg, tmp_path / "edge.toml", log))
            return procs[-1]

        try:
            proc = agent()
            wait(lambda: readings(db) >= 1, 60, "readings through the agent process")
            artefact = published(c, raw)
            params = artefact.params() | {"url": artefact.url.replace(
                f":{c['server'].port}/", f":{relay.port}/")}
            issue_when_subscribed(c, params)
            part = tmp_path / "edge" / "artefacts" / f"{artefact.sha256}.part"
            # 1. killed with the download held part way
            wait(lambda: part.is_file() and part.stat().st_size >= STALL_AFTER // 2, 60,
                 "part of the download on disk")
            kill(proc)
            held = part.stat().st_size
            assert 0 < held < len(raw)
            assert query(db, "SELECT state FROM update_jobs") == [("downloading",)] or (
                query(db, "SELECT state FROM update_jobs") == [("idle",)])
            relay.stall = False
            # 2. a new agent resumes the download (Range), then pushes; killed mid-push
            proc = agent()
            wait(lambda: any(e["state"] == "updating" and e["percent"] >= 30
                             for e in update_events(db)), 180, "the push part way")
            kill(proc)
            assert (STORE, artefact.sha256, 206) in c["server"].fetches
            before = update_events(db)
            last_percent = max(e["percent"] for e in before if e["state"] == "updating")
            # 3. the third agent goes on from what the fridge holds, to the confirm
            proc = agent()
            done = wait(lambda: [e for e in update_events(db) if e["state"] == "done"], 300,
                        "the update's end")
            assert done[-1]["result"] == "confirmed", done
            text = log.read_text(errors="replace")
            assert f"taken up again after updating {last_percent}%" in text
            # Each state once, in order, in the edge store ...
            got = update_events(db)
            ranks = [RANK.index(e["state"]) for e in got]
            assert ranks == sorted(ranks), [(e["state"], e["percent"]) for e in got]
            for state in ("downloaded", "done"):
                assert [e["state"] for e in got].count(state) == 1, state
            for state in ("downloading", "updating"):
                pcts = [e["percent"] for e in got if e["state"] == state]
                assert pcts == sorted(set(pcts)), (state, pcts)
            assert query(db, "SELECT * FROM update_jobs") == []

            # ... and in the cloud, once the outbox drained
            def cloud_states() -> list[tuple[str, int]] | None:
                with Database.open_readonly(c["db"]) as cdb:
                    rows = cdb.conn.execute(
                        "SELECT data FROM events WHERE store = ? AND type = 'update' "
                        "ORDER BY boot, seq", (STORE,)).fetchall()  # a boot per agent run
                out = [(json.loads(r[0])["state"], json.loads(r[0])["percent"]) for r in rows]
                return out if len(out) == len(got) else None

            assert wait(cloud_states, 60, "the events in the cloud") == [
                (e["state"], e["percent"]) for e in got]
        finally:
            for p in procs:
                if p.poll() is None:
                    kill(p)
            relay.close()
            runner.request_stop()
            sim.join(timeout=15)
            runner.close()
