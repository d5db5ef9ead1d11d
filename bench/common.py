"""Shared pieces of the benchmarks: broker + cloud process, edge configs, synthetic
backlogs, a byte-counting loopback relay and table printing.

Everything listens on 127.0.0.1 only and lives in a temporary directory per benchmark.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.broker import Broker

# Shared with the tests through devstack.testkit (one edge config and TOML writer, one way
# to start a child); bench/ never imports tests/ (an import-linter contract).
from devstack.testkit.edge import edge_config as edge_config
from devstack.testkit.edge import edge_toml as edge_toml
from devstack.testkit.edge import mqtt_toml
from devstack.testkit.edge import start_child as start_child
from devstack.testkit.edge import start_edge as start_edge
from devstack.testkit.edge import stop_child as stop_child
from devstack.testkit.edge import toml_value as _toml
from edge.store import EdgeStore, NewReading
from xiaodian.mqtt import MqttSettings
from xiaodian.pki import DevPki, dev_pki

STORE = "store-001"
IDLE_STORE = "store-002"
SERVICE = "cloud-gateway"
CLOUD_WORKER = "bench-ingest"
# One certificate per cloud connection (the broker makes the CN the client id): the
# benchmark's observer, and the worker with its publishers (found beside SERVICE's).
SERVICES = (SERVICE, *(f"{CLOUD_WORKER}{s}" for s in ("", "-cmd", "-down", "-cli")))
# Records per EdgeStore.add transaction when building a backlog (the agent's DRAIN_MAX).
ADD_CHUNK = 2000


class BenchError(RuntimeError):
    """A benchmark could not set up or finish; the message says what and where to look."""


def wait_for(ready: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() >= deadline:
            raise BenchError(f"{what}: not ready after {timeout:g} s")
        time.sleep(step)


# ---------------------------------------------------------------- broker and cloud


def make_pki(directory: Path) -> DevPki:
    return dev_pki(directory / "pki", stores=[STORE, IDLE_STORE], services=SERVICES)


def mqtt_settings(host: str, port: int, pki: DevPki, name: str) -> MqttSettings:
    return MqttSettings(host=host, port=port, tls=pki.client(name))


class CloudProcess:
    """The real `xiaodian cloud run` (ingest worker + HTTP API) as a child process."""

    def __init__(self, directory: Path, settings: MqttSettings) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.db = directory / "cloud.sqlite3"
        self.config = directory / "cloud.toml"
        self.out = directory / "cloud.out"
        self.log = directory / "cloud.log"
        self.config.write_text(
            f"[cloud]\ndb = {_toml(self.db)}\nworker_id = \"{CLOUD_WORKER}\"\n"
            'http_host = "127.0.0.1"\nhttp_port = 0\n' + mqtt_toml(settings),
            encoding="utf-8",
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 20.0) -> None:
        with self.out.open("wb") as out, self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "xiaodian", "cloud", "run", "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        # It prints its URL (port 0 = a free port it chose) once the HTTP server listens.
        wait_for(self._read_url, timeout, f"cloud HTTP URL (see {self.log})")
        wait_for(self._subscribed, timeout, f"cloud subscriptions (see {self.log})", 0.1)

    def _read_url(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(f"cloud exited with {self.proc.returncode}; see {self.log}")
        line = self.out.read_text(encoding="utf-8").strip()
        self.url = line.splitlines()[0] if line else ""
        return self.url.startswith("http://")

    def _subscribed(self) -> bool:
        try:
            return bool(self.get("healthz").get("ingest", {}).get("subscribed"))
        except OSError:
            return False

    def get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + path, timeout=5) as resp:
            body: dict[str, Any] = json.load(resp)
            return body

    def ingest_status(self) -> dict[str, Any]:
        return self.get("api/ingest")

    def readings(self, store: str = STORE) -> int:
        return count_rows(self.db, "readings", store)

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def count_rows(db: Path, table: str, store: str) -> int:
    if table not in ("readings", "events"):
        raise ValueError(f"table: {table!r}")
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = con.execute(f"SELECT count(*) FROM {table} WHERE store=?", (store,)).fetchone()
        return int(row[0])
    finally:
        con.close()


@contextlib.contextmanager
def broker_and_cloud(directory: Path, pki: DevPki) -> Iterator[tuple[Broker, CloudProcess]]:
    """A fresh broker and cloud database: each measured phase gets its own, so one phase's
    sessions and rows cannot slow down or pad the next."""
    with Broker(directory / "broker", pki) as broker:
        cloud = CloudProcess(directory / "cloud", mqtt_settings(broker.host, broker.port, pki,
                                                                SERVICE))
        try:
            cloud.start()
            yield broker, cloud
        finally:
            cloud.stop()


# ---------------------------------------------------------------- edge


def synthetic_readings(
    fridges: int, interval_s: float, hours: float, *, seed: int = 4, t0: float = 1.76e9
) -> list[NewReading]:
    """Readings as the agent stores them: fridges interleaved in time order, two probes in
    exact 1/16 °C steps, wall clock with sub-second jitter (as time.time() gives)."""
    rng = random.Random(seed)
    per_fridge = int(hours * 3600 / interval_s)
    out: list[NewReading] = []
    air = [3.0 + f for f in range(fridges)]
    for i in range(per_fridge):
        for f in range(fridges):
            air[f] += rng.choice((-0.0625, 0.0, 0.0, 0.0625))
            product = round((air[f] + 0.5) * 16) / 16
            out.append(
                NewReading(
                    device=f"fridge-{f + 1}",
                    fseq=(i + 1) & 0xFFFF,
                    dev_ms=3_600_000 + int(i * interval_s * 1000),
                    wall=t0 + i * interval_s + rng.random() * 0.05,
                    synced=True,
                    probes=[(0, "ok", air[f]), (1, "ok", product)],
                )
            )
    return out


def build_outbox(path: Path, readings: Sequence[NewReading]) -> None:
    """Write the backlog with EdgeStore.add, in the agent's transaction size."""
    store = EdgeStore(path)
    try:
        for i in range(0, len(readings), ADD_CHUNK):
            store.add(readings[i : i + ADD_CHUNK])
    finally:
        store.close()


def outbox_size(path: Path) -> int:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return int(con.execute("SELECT count(*) FROM outbox").fetchone()[0])
    finally:
        con.close()


# ---------------------------------------------------------------- byte counting


# Offsets in Linux's struct tcp_info (include/uapi/linux/tcp.h, since 4.2).
TCPI_SEGS_OUT, TCPI_SEGS_IN = 136, 140


class ByteRelay:
    """A loopback TCP relay that counts the bytes each way (TLS passes through untouched).

    Put between an MQTT client and the broker, it measures what the line would carry above
    TCP: TLS records, handshakes, MQTT packets, PUBACKs and PINGs.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port: int = self.listener.getsockname()[1]
        self.up = 0  # client -> broker
        self.down = 0  # broker -> client
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._clients: list[socket.socket] = []  # the client-facing ends
        self._threads = [threading.Thread(target=self._accept, name="relay-accept", daemon=True)]

    def __enter__(self) -> ByteRelay:
        self._threads[0].start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self.listener.close()
        for t in self._threads:
            t.join(2.0)

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return self.up, self.down

    def segments(self) -> int:
        """TCP segments both ways on the client's connections so far, pure ACKs included
        (Linux TCP_INFO: tcpi_segs_out and tcpi_segs_in, RFC 4898), for IP-level bytes."""
        total = 0
        with self._lock:
            clients = list(self._clients)
        for sock in clients:
            with contextlib.suppress(OSError):
                info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
                if len(info) >= TCPI_SEGS_IN + 4:
                    total += int.from_bytes(info[TCPI_SEGS_OUT:TCPI_SEGS_OUT + 4], "little")
                    total += int.from_bytes(info[TCPI_SEGS_IN:TCPI_SEGS_IN + 4], "little")
        return total

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection(self.target, timeout=5)
            server.settimeout(None)
            client.settimeout(None)
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._socks += [client, server]
                self._clients.append(client)
                self.connections += 1
            for src, dst, up in ((client, server, True), (server, client, False)):
                t = threading.Thread(target=self._pump, args=(src, dst, up), daemon=True)
                self._threads.append(t)
                t.start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    if up:
                        self.up += len(data)
                    else:
                        self.down += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)


# ---------------------------------------------------------------- output


@dataclass(frozen=True)
class Table:
    title: str
    headers: Sequence[str]
    rows: Sequence[Sequence[object]]

    def render(self) -> str:
        cells = [[str(h) for h in self.headers]] + [[_cell(c) for c in r] for r in self.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.headers))]

        def line(r: list[str]) -> str:
            # First column (the label) left-aligned, figures right-aligned.
            return "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths,
                                                                                strict=True))
            ).rstrip()

        rule = "  ".join("-" * w for w in widths)
        return "\n".join([self.title, rule, line(cells[0]), rule, *map(line, cells[1:]), rule])

    def print(self) -> None:
        print(self.render() + "\n", flush=True)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def note(text: str) -> None:
    print(text, flush=True)


# ---------------------------------------------------------------- smoke checks

SMOKE_PREFIX = "figure "  # tests/test_bench_smoke.py parses these lines


def check_figures(figures: Sequence[tuple[str, float | None]]) -> int:
    """Print each headline figure as `figure NAME = VALUE` and return the exit code: 1 when
    one is missing (None), zero or NaN, each named in a `FAILED` line (a benchmark that
    measured nothing must not pass for one that measured something), else 0."""
    failed = []
    for name, value in figures:
        print(f"{SMOKE_PREFIX}{name} = {value!r}", flush=True)
        if value is None or math.isnan(value) or value == 0:
            failed.append(name)
    for name in failed:
        note(f"FAILED {name}: no figure (missing, zero or NaN)")
    return 1 if failed or not figures else 0
