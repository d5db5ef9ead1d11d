"""Ingest workers against a real Mosquitto (TLS, client certificates, ACL) and real SQLite;
the tests that take `db_target` run once more on a real PostgreSQL (conftest.db_target).

To hold a message "received but not yet committed" without mocks, a test takes SQLite's write
lock itself (BEGIN IMMEDIATE): the worker's commit then waits, so it cannot ack either.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from cloud_gateway.config import CloudSettings
from cloud_gateway.db import Database
from cloud_gateway.ingest import IngestWorker
from devstack.testkit.http_client import get
from devstack.testkit.pg_server import db_settings, db_toml
from devstack.testkit.wait import wait
from xiaodian.mqtt import MqttSettings, TlsSettings, new_client
from xiaodian.pki import dev_pki
from xiaodian.wire.payloads import batch_payload, reading_record, state_payload

Settings = Callable[[str], MqttSettings]


def readings(store: str, seqs: range | list[int], device: str = "fridge-1",
             boot: int = 1) -> bytes:
    records = [reading_record(s, s, 1000 * s, 1_700_000_000.0 + s, True,
                              [(0, "ok", 3.0), (1, "ok", 4.0)]) for s in seqs]
    return batch_payload("readings", store, device, boot, records)


@contextmanager
def store_client(settings: MqttSettings, store: str) -> Iterator[mqtt.Client]:
    client = new_client(settings, store)
    client.connect(settings.host, settings.port, settings.keepalive)
    client.loop_start()
    try:
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def publish(client: mqtt.Client, store: str, payload: bytes, leaf: str = "telemetry") -> None:
    info = client.publish(f"xd/v1/{store}/{leaf}", payload, qos=1)
    info.wait_for_publish(5)
    assert info.is_published()


@contextmanager
def running(settings: MqttSettings, db: Path | str, worker_id: str, *,
            now: Callable[[], float] = time.time, **overrides: Any) -> Iterator[IngestWorker]:
    worker = IngestWorker(settings, CloudSettings(**db_settings(db), worker_id=worker_id,
                                                  **overrides), now=now)
    worker.start()
    try:
        assert worker.wait_subscribed(10), "worker did not subscribe"
        yield worker
    finally:
        worker.stop()
        assert not worker.alive()


@contextmanager
def write_lock(db: Path | str) -> Iterator[None]:
    """Hold what a worker's commit of readings needs: SQLite's write lock, or on PostgreSQL
    the stream table (a worker waits up to its lock_timeout, then retries)."""
    if isinstance(db, str):
        import psycopg

        with psycopg.connect(db) as pg:  # a transaction until the block ends
            pg.execute("LOCK TABLE streams IN EXCLUSIVE MODE")
            try:
                yield
            finally:
                pg.rollback()
        return
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def seqs_in(db: Path | str) -> list[tuple[str, int]]:
    with Database.open_readonly(db) as d:
        return [(r[0], r[1]) for r in d.conn.execute(
            "SELECT store, seq FROM readings ORDER BY store, seq")]


def test_telemetry_is_stored_then_acked(
    mqtt_settings: Settings, db_target: Path | str
) -> None:
    db = db_target
    gw = mqtt_settings("cloud-gateway")
    with running(gw, db, "cloud-1", now=lambda: 1234.5) as worker, \
            store_client(mqtt_settings("store-001"), "store-001") as store:
        publish(store, "store-001", readings("store-001", [1, 2, 3]))
        wait(lambda: worker.counters.snapshot()["acked"] == 1, timeout=10, what="ack")
        counts = worker.counters.snapshot()
    assert (counts["received"], counts["stored"], counts["duplicates"]) == (1, 3, 0)
    assert seqs_in(db) == [("store-001", 1), ("store-001", 2), ("store-001", 3)]
    with Database.open_readonly(db) as d:
        assert {r["received_at"] for r in d.readings("store-001", "fridge-1")} == {1234.5}
    # The broker really took the ack: the same session, resumed, gets nothing redelivered
    # before a fresh marker message (a resumed session's unacked messages come first).
    with running(gw, db, "cloud-1") as again, \
            store_client(mqtt_settings("store-001"), "store-001") as store:
        publish(store, "store-001", readings("store-001", [4]))
        wait(lambda: again.counters.snapshot()["acked"] == 1, timeout=10, what="marker")
        assert again.counters.snapshot()["received"] == 1


def test_a_duplicate_publish_is_one_row(
    mqtt_settings: Settings, db_target: Path | str
) -> None:
    db = db_target
    with running(mqtt_settings("cloud-gateway"), db, "cloud-1") as worker, \
            store_client(mqtt_settings("store-001"), "store-001") as store:
        payload = readings("store-001", [1, 2])
        publish(store, "store-001", payload)
        publish(store, "store-001", payload)
        wait(lambda: worker.counters.snapshot()["acked"] == 2, timeout=10, what="two acks")
        counts = worker.counters.snapshot()
    assert (counts["stored"], counts["duplicates"]) == (2, 2)
    assert seqs_in(db) == [("store-001", 1), ("store-001", 2)]


def test_garbage_is_parked_and_the_stream_goes_on(mqtt_settings: Settings,
                                                  db_target: Path | str) -> None:
    db = db_target
    with running(mqtt_settings("cloud-gateway"), db, "cloud-1") as worker, \
            store_client(mqtt_settings("store-001"), "store-001") as store:
        publish(store, "store-001", b"\x00garbage")
        publish(store, "store-001", readings("store-001", [1]))
        wait(lambda: worker.counters.snapshot()["acked"] == 2, timeout=10, what="both acked")
        counts = worker.counters.snapshot()
    assert (counts["parked"], counts["stored"]) == (1, 1)
    with Database.open_readonly(db) as d:
        (letter,) = d.dead_letters()
    assert (letter.topic, letter.payload, letter.worker) == (
        "xd/v1/store-001/telemetry", b"\x00garbage", "cloud-1")
    assert letter.reason.startswith("payload is not JSON")
    assert seqs_in(db) == [("store-001", 1)]


def test_two_workers_share_the_stream_and_keep_each_record_once(
    mqtt_settings: Settings, db_target: Path | str
) -> None:
    db = db_target
    gw = mqtt_settings("cloud-gateway")
    expected = []
    with running(gw, db, "cloud-1") as a, running(gw, db, "cloud-2") as b, \
            store_client(mqtt_settings("store-001"), "store-001") as s1, \
            store_client(mqtt_settings("store-002"), "store-002") as s2:
        for n in range(20):
            seqs = [2 * n + 1, 2 * n + 2]
            for client, store in ((s1, "store-001"), (s2, "store-002")):
                publish(client, store, readings(store, seqs))
                expected += [(store, s) for s in seqs]
        wait(lambda: a.counters.snapshot()["acked"] + b.counters.snapshot()["acked"] == 40,
             timeout=10, what="40 acks")
        ca, cb = a.counters.snapshot(), b.counters.snapshot()
    assert ca["received"] > 0 and cb["received"] > 0, (ca, cb)  # both took a share
    assert ca["received"] + cb["received"] == 40  # each message went to one worker only
    assert ca["stored"] + cb["stored"] == 80 and ca["duplicates"] + cb["duplicates"] == 0
    assert seqs_in(db) == sorted(expected)


def test_retained_state_reaches_every_worker(
    mqtt_settings: Settings, db_target: Path | str
) -> None:
    db = db_target
    gw = mqtt_settings("cloud-gateway")
    with store_client(mqtt_settings("store-001"), "store-001") as store:
        info = store.publish("xd/v1/store-001/state", state_payload(
            "store-001", True, 4, 1_700_000_000.0, "0.1.0", ["fridge-1"]), qos=1, retain=True)
        info.wait_for_publish(5)
    # Published before either worker existed: the retained copy is what they get.
    with running(gw, db, "cloud-1") as a, running(gw, db, "cloud-2") as b:
        wait(lambda: a.counters.snapshot()["states"] == 1
             and b.counters.snapshot()["states"] == 1, timeout=10, what="state at both workers")
    with Database.open_readonly(db) as d:
        (s,) = d.stores()
    assert (s["store"], s["online"], s["boot"], s["devices"]) == ("store-001", True, 4,
                                                                  ["fridge-1"])


def test_receive_maximum_keeps_the_broker_from_flooding_a_slow_worker(
    mqtt_settings: Settings, db_target: Path | str
) -> None:
    db = db_target
    with running(mqtt_settings("cloud-gateway"), db, "cloud-1", queue_size=1) as worker, \
            store_client(mqtt_settings("store-001"), "store-001") as store:
        with write_lock(db):  # the database thread blocks on its first message
            for seq in (1, 2, 3):
                publish(store, "store-001", readings("store-001", [seq]))
            wait(lambda: worker.counters.snapshot()["received"] == 1, timeout=10, what="1 received")
            time.sleep(0.5)
            # Receive Maximum = queue size: the broker holds the rest until we ack.
            counts = worker.counters.snapshot()
            assert counts["received"] == 1 and counts["acked"] == 0
        wait(lambda: len(seqs_in(db)) == 3, timeout=10, what="all three stored")
        wait(lambda: worker.counters.snapshot()["acked"] == 3, timeout=10, what="all acked")
        counts = worker.counters.snapshot()
    assert counts["queue_full"] == 0 and counts["receipts"] == 3
    assert seqs_in(db) == [("store-001", 1), ("store-001", 2), ("store-001", 3)]


# ---------------------------------------------------------------- the `cloud run` process


def cloud_toml(path: Path, db: Path | str, settings: MqttSettings, worker_id: str) -> Path:
    path.write_text(
        f'[cloud]\n{db_toml(db)}worker_id = "{worker_id}"\nhttp_port = 0\n'
        f'[mqtt]\nhost = "{settings.host}"\nport = {settings.port}\n'
        f'reconnect_min_s = 0.1\nreconnect_max_s = 1.0\n'
        f'[mqtt.tls]\nca = "{settings.tls.ca}"\ncert = "{settings.tls.cert}"\n'
        f'key = "{settings.tls.key}"\n',
        encoding="utf-8",
    )
    return path


@contextmanager
def cloud_process(config: Path, log: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    with log.open("a") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "xiaodian", "cloud", "run", "--config", str(config)],
            stdout=subprocess.PIPE, stderr=err, text=True,
        )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), (url, log.read_text())
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def ingest_status(url: str) -> dict[str, Any]:
    r = get(url + "api/ingest", timeout=5)
    assert r.status == 200, (r.status, r.body)
    result: dict[str, Any] = r.json()
    return result


def test_a_worker_killed_before_its_commit_gets_the_message_again(
    mqtt_settings: Settings, tmp_path: Path, db_target: Path | str
) -> None:
    """`xiaodian cloud run` (on SQLite and on PostgreSQL) SIGKILLed mid-commit."""
    db = db_target
    config = cloud_toml(tmp_path / "cloud.toml", db, mqtt_settings("cloud-gateway"), "cloud-k")
    log = tmp_path / "cloud.log"
    with cloud_process(config, log) as (proc, url):
        wait(lambda: ingest_status(url)["subscribed"], timeout=10, what="subscribed")
        with write_lock(db), store_client(mqtt_settings("store-001"), "store-001") as store:
            publish(store, "store-001", readings("store-001", [1, 2, 3]))
            wait(lambda: ingest_status(url)["received"] == 1, timeout=10, what="received")
            assert ingest_status(url)["acked"] == 0
            os.kill(proc.pid, signal.SIGKILL)  # mid-commit: nothing stored, nothing acked
            proc.wait()
    assert seqs_in(db) == []
    # Restarted with the same worker id, it resumes its session: the broker redelivers.
    with cloud_process(config, log) as (proc, url):
        wait(lambda: ingest_status(url)["acked"] == 1, timeout=10, what="redelivery acked")
        status = ingest_status(url)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0, log.read_text()
    assert (status["received"], status["stored"], status["duplicates"]) == (1, 3, 0)
    assert seqs_in(db) == [("store-001", 1), ("store-001", 2), ("store-001", 3)]


def test_bad_config_names_the_key_and_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[cloud]\ndb = "c.sqlite"\nworker_id = "w"\nhttp_port = 70000\n'
                   '[mqtt]\nhost = "h"\nport = 8883\n'
                   '[mqtt.tls]\nca = "a"\ncert = "b"\nkey = "c"\n', encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "xiaodian", "cloud", "run", "--config", str(bad)],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert str(bad) in result.stderr and "cloud.http_port" in result.stderr
    assert result.stdout == ""



# paho 2.2 does not close its socket when the TLS handshake fails (client.py,
# _ssl_wrap_socket); the garbage collector does, with a ResourceWarning we cannot prevent.
PAHO_SOCKET_LEAK = ("ignore:Exception ignored in. <ssl.SSLSocket"
                    ":pytest.PytestUnraisableExceptionWarning")


@pytest.mark.filterwarnings(PAHO_SOCKET_LEAK)
@pytest.mark.parametrize(
    ("which", "explanation"),
    [
        ("ca", "broker certificate not signed by the configured CA"),
        ("client", "broker does not trust our client certificate's CA"),
    ],
)
def test_tls_failures_are_explained_and_retried(
    mqtt_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    which: str, explanation: str,
) -> None:
    other = dev_pki(tmp_path / "other-pki", ["store-001"], ["cloud-gateway"])
    good = mqtt_settings("cloud-gateway")
    foreign = other.client("cloud-gateway")
    tls = (TlsSettings(foreign.ca, good.tls.cert, good.tls.key) if which == "ca"
           else TlsSettings(good.tls.ca, foreign.cert, foreign.key))
    settings = MqttSettings(good.host, good.port, tls, reconnect_min_s=0.05,
                            reconnect_max_s=0.1)
    worker = IngestWorker(settings, CloudSettings(db=tmp_path / "c.sqlite", worker_id="w"))
    caplog.set_level(logging.INFO, logger="cloud_gateway.ingest")
    worker.start()
    try:
        wait(lambda: sum(explanation in r.getMessage() for r in caplog.records) >= 2,
             timeout=10, what="two explained failures (it keeps retrying)")
    finally:
        worker.stop()
    assert worker.counters.snapshot()["connects"] == 0


# ---------------------------------------------------------------- two workers, one killed


def stream_state(db: Path | str) -> tuple[int, int, int, int]:
    """(readings, distinct ids, open gaps, filled gaps) in the database."""
    with Database.open_readonly(db) as d:
        n, distinct = d.conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT store || '/' || device || '/' || boot || '/' || seq)"
            " FROM readings").fetchone()
        open_gaps = len(d.gaps(state="open"))
        filled = len(d.gaps(state="filled"))
    return n, distinct, open_gaps, filled


def test_two_processes_one_killed_mid_stream_keep_every_record_once(
    mqtt_settings: Settings, tmp_path: Path, db_target: Path | str
) -> None:
    """Two `xiaodian cloud run` processes, one SIGKILLed mid-stream, on SQLite and on
    PostgreSQL (there the batches of a stream are serialised by its row lock, not by a
    database-wide write lock, so this is the parallel-commit check)."""
    db = db_target
    gw = mqtt_settings("cloud-gateway")
    configs = {w: cloud_toml(tmp_path / f"{w}.toml", db, gw, w) for w in ("cloud-a", "cloud-b")}
    log = tmp_path / "cloud.log"
    # Three streams over two workers: the broker's round robin splits every stream between
    # them, so records of one stream are committed out of order and by both processes.
    devices, per_batch, batches = ("fridge-1", "fridge-2", "fridge-3"), 20, 34  # 2040 records
    total = len(devices) * per_batch * batches
    with cloud_process(configs["cloud-a"], log) as (proc_a, url_a), \
            cloud_process(configs["cloud-b"], log) as (proc_b, url_b), \
            store_client(mqtt_settings("store-001"), "store-001") as store:
        wait(lambda: ingest_status(url_a)["subscribed"] and ingest_status(url_b)["subscribed"],
             timeout=10, what="both subscribed")
        for n in range(batches):
            seqs = range(n * per_batch + 1, (n + 1) * per_batch + 1)
            for device in devices:
                publish(store, "store-001", readings("store-001", seqs, device=device))
            if n == batches // 3:
                # Mid-stream, SIGKILL: no goodbye, no flush. What A had received but not acked,
                # and what the broker goes on queueing for A's session, is not in the database.
                wait(lambda: ingest_status(url_a)["acked"] > 0, timeout=10, what="A at work")
                os.kill(proc_a.pid, signal.SIGKILL)
                proc_a.wait()
        # B has gone past what waits for A: those stretches are open gaps, not silence.
        wait(lambda: stream_state(db)[2] > 0, timeout=10, what="open gaps while A is down")
        # A supervisor restarts the killed worker with the same id: its session resumes and
        # the broker redelivers; the gaps close as the records arrive.
        with cloud_process(configs["cloud-a"], log) as (proc_a2, _url):
            wait(lambda: stream_state(db)[:3] == (total, total, 0), timeout=20,
                 what=f"all {total} records and no open gap")
            proc_a2.send_signal(signal.SIGTERM)
            assert proc_a2.wait(10) == 0, log.read_text()
        proc_b.send_signal(signal.SIGTERM)
        assert proc_b.wait(10) == 0, log.read_text()
    n, distinct, open_gaps, filled = stream_state(db)
    assert (n, distinct, open_gaps) == (total, total, 0) and filled > 0
    with Database.open_readonly(db) as d:
        for device in devices:
            seqs = [r["seq"] for r in d.readings("store-001", device)]
            assert seqs == list(range(1, per_batch * batches + 1)), device
        gap_rows = d.gaps("store-001")
        streams = d.streams("store-001")
    # Opened by the worker that went ahead, filled by the restarted one, kept as filled.
    assert ("cloud-b", "cloud-a") in {(g["detected_by"], g["filled_by"]) for g in gap_rows}
    assert all(g["state"] == "filled" for g in gap_rows)
    assert all(s["max_seq"] == s["records"] == per_batch * batches for s in streams)
