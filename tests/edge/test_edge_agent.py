"""The edge agent against a real Mosquitto and a pseudo-terminal written by the test."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fake_fridge import FakeFridge, agent_config, fridge_counts, reader_up, settled

from cloud_gateway.ingest import IngestWorker
from devstack.broker import Broker
from devstack.testkit.edge import (
    RunningAgent,
    edge_config,
    free_port,
    ingest_worker,
)
from devstack.testkit.wait import wait
from edge.agent import Agent
from edge.store import EdgeStore, NewReading
from firmware_bridge import codec
from xiaodian.mqtt import MqttSettings
from xiaodian.wire import compact

STORE = "store-001"


def _received_dev_ms(messages: list) -> list[int]:  # type: ignore[type-arg]
    """Device times of the readings in the agent's (compact, the default) messages."""
    out = []
    for m in messages:
        for batch in compact.parse_bundle(m.topic, m.payload):
            if batch.kind == "readings":
                out.extend(r.dev_ms for r in batch.records)
    return out


def _pending(agent: Agent) -> int:
    return fridge_counts(agent).get("fridge-1", {}).get("readings_pending", 0)


def _stored(agent: Agent) -> int:
    return fridge_counts(agent).get("fridge-1", {}).get("readings_stored", 0)


def test_readings_reach_the_broker_batched_and_garbage_is_counted(
    cloud: IngestWorker,
    tmp_path: Path,
    mqtt_settings: Callable[[str], MqttSettings],
    collect: Callable[..., object],
    fridge: FakeFridge,
) -> None:
    sub = collect("cloud-gateway", f"xd/v1/{STORE}/bundle")
    state = collect("cloud-gateway", f"xd/v1/{STORE}/state")
    cfg = agent_config(tmp_path, mqtt_settings(STORE), tmp_path / "fridge-1")
    with RunningAgent(cfg) as agent:
        wait(lambda: reader_up(agent), 10, "serial port opened")
        fridge.temp(1, 9.0)  # before the HELLO: no identity yet, so not stored
        fridge.hello()
        for i in range(10):
            fridge.temp(i * 10_000, 3.0 + i / 16)
        # Line noise: random bytes, a frame with a flipped bit, a frame cut short.
        fridge.garbage(b"\x13\x37\xff\xfe\x00")
        bad = bytearray(codec.encode_frame(codec.TEMP, 99, codec.pack_temp(1, [(0, "ok", 1.0)])))
        bad[5] ^= 0x10
        fridge.garbage(bytes(bad))
        fridge.garbage(codec.encode_frame(codec.TEMP, 99, codec.pack_temp(1, [(0, "ok", 1.0)]))[:7])
        fridge.garbage(b"\x00")
        for i in range(10, 20):
            fridge.temp(i * 10_000, 3.0 + i / 16)
        expected = fridge.sent[1:]
        wait(
            lambda: sorted(_received_dev_ms(sub.messages)) == expected,  # type: ignore[attr-defined]
            10,
            "all 20 readings at the broker",
        )
        # Every stored reading was receipted to the device, the one before HELLO was not.
        # Temps were seq 3-12 and 13-22 (1 came before the HELLO, 2 was the HELLO).
        wait(
            lambda: sorted(set(fridge.receipts())) == list(range(3, 23)),
            5,
            "receipts for exactly the 20 stored readings",
        )
        wait(lambda: _pending(agent) == 0, 5, "outbox emptied by the cloud's receipts")
        stats = agent.readers[0].stats()
        assert stats["crc_errors"] + stats["cobs_errors"] + stats["length_errors"] >= 2
        assert stats["frames_ok"] >= 20
    # Batched: far fewer messages than readings, each naming store, device and boot.
    messages = sub.messages  # type: ignore[attr-defined]
    assert len(messages) < 20
    streams = {(b.store, b.kind, b.device, b.boot) for m in messages
               for b in compact.parse_bundle(m.topic, m.payload)}
    assert (STORE, "readings", "fridge-1", 1) in streams
    births = [json.loads(m.payload) for m in state.messages]  # type: ignore[attr-defined]
    assert births[0]["online"] is True and births[-1]["online"] is False  # clean stop says so


def test_outage_of_the_broker_loses_nothing(
    cloud: IngestWorker,
    tmp_path: Path,
    broker: Broker,
    mqtt_settings: Callable[[str], MqttSettings],
    collect: Callable[..., object],
    fridge: FakeFridge,
) -> None:
    cfg = agent_config(tmp_path, mqtt_settings(STORE), tmp_path / "fridge-1")
    with RunningAgent(cfg) as agent:
        wait(lambda: reader_up(agent), 10, "serial port opened")
        fridge.hello()
        for i in range(5):
            fridge.temp(i * 10_000, 3.0)
        # One snapshot for both: read apart, "none pending" could be seen before the five
        # were stored at all, and then they were still unconfirmed when the broker stopped.
        wait(lambda: settled(agent, 5), 10, "first five acked")
        broker.stop()
        for i in range(5, 15):
            fridge.temp(i * 10_000, 4.0)
        wait(lambda: _stored(agent) == 15, 10, "readings stored during the outage")
        assert _pending(agent) == 10
        broker.start()
        sub = collect("cloud-gateway", f"xd/v1/{STORE}/bundle")
        wait(lambda: _pending(agent) == 0, 30, "backlog drained after the broker came back")
        got = _received_dev_ms(sub.messages)  # type: ignore[attr-defined]
        assert set(range(50_000, 150_000, 10_000)) <= set(got)
        assert agent.uplink.counters.connects >= 2


def test_bad_config_names_the_key_and_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "edge.toml"
    bad.write_text(
        '[edge]\nstore_id = "store-001"\ndata_dir = "d"\npublish_interval_s = "fast"\n'
        '[mqtt]\nhost = "127.0.0.1"\nport = 8883\n'
        '[mqtt.tls]\nca = "ca.crt"\ncert = "c.crt"\nkey = "c.key"\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "xiaodian", "edge", "run", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert str(bad) in proc.stderr
    assert "edge.publish_interval_s" in proc.stderr
    missing = tmp_path / "missing.toml"
    proc = subprocess.run(
        [sys.executable, "-m", "xiaodian", "edge", "run", "--config", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "no such file" in proc.stderr


def test_a_serial_port_that_vanishes_is_reopened_without_a_restart(
    tmp_path: Path,
    mqtt_settings: Callable[[str], MqttSettings],
    collect: Callable[..., object],
) -> None:
    link = tmp_path / "fridge-1"
    sub = collect("cloud-gateway", f"xd/v1/{STORE}/bundle")
    first = FakeFridge(link)
    cfg = agent_config(tmp_path, mqtt_settings(STORE), link)
    with RunningAgent(cfg) as agent:
        wait(lambda: reader_up(agent), 10, "serial port opened")
        first.hello()
        first.temp(10_000, 3.0)
        wait(lambda: _stored(agent) == 1, 5, "first reading stored")
        # Unplug: the device end goes away and the link points nowhere for a while.
        first.close()
        link.unlink()
        wait(lambda: _link_states(agent)[-1:] == ["down"], 10, "link reported down")
        time.sleep(0.5)
        # Plug back in (a new pty, as after a USB re-enumeration).
        second = FakeFridge(link)
        try:
            wait(lambda: _link_states(agent)[-1:] == ["up"], 15, "link reopened")
            second.hello()
            second.temp(20_000, 3.5)
            wait(
                lambda: sorted(_received_dev_ms(sub.messages)) == [10_000, 20_000],  # type: ignore[attr-defined]
                10,
                "readings from before and after the unplug at the broker",
            )
            assert agent.readers[0].stats()["reconnects"] >= 1
        finally:
            second.close()


def _link_states(agent: Agent) -> list[str]:
    store = EdgeStore.open_readonly(agent.config.edge.db_path)
    try:
        rows = store.db.execute(
            "SELECT data FROM events WHERE type='link' ORDER BY boot, seq"
        ).fetchall()
    finally:
        store.close()
    return [json.loads(r[0])["state"] for r in rows]


def test_what_the_broker_took_but_the_cloud_never_stored_is_sent_again(
    tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings], fridge: FakeFridge
) -> None:
    # No cloud worker yet: the broker acknowledges and then drops the messages (nobody is
    # subscribed), which is what a broker restarted without its database does too.
    cfg = agent_config(tmp_path, mqtt_settings(STORE), tmp_path / "fridge-1", confirm_timeout_s=1.0)
    with RunningAgent(cfg) as agent:
        wait(lambda: reader_up(agent), 10, "serial port opened")
        fridge.hello()
        for i in range(5):
            fridge.temp(i * 10_000, 3.0)
        def readings_acked() -> int:
            # The readings' own PUBACKs: the state message's or an event batch's come first,
            # and a reading published only once the late worker is there needs no resend.
            store = EdgeStore.open_readonly(agent.config.edge.db_path)
            try:
                return int(store.db.execute(
                    "SELECT count(*) FROM outbox WHERE kind='readings' "
                    "AND published_at IS NOT NULL").fetchone()[0])
            finally:
                store.close()

        wait(lambda: readings_acked() == 5, 10, "PUBACKs from the broker")
        assert _pending(agent) == 5  # PUBACKed is not confirmed: the rows stay
        late = ingest_worker(mqtt_settings("cloud-gateway"), tmp_path / "cloud.sqlite3",
                             "late-worker")
        with late:
            wait(lambda: _pending(agent) == 0, 15, "republished and confirmed")
            assert agent.outbox.republished >= 5
    con = sqlite3.connect(tmp_path / "cloud.sqlite3")
    try:
        rows = con.execute("SELECT dev_ms FROM readings ORDER BY dev_ms").fetchall()
    finally:
        con.close()
    assert [r[0] for r in rows] == [0, 10_000, 20_000, 30_000, 40_000]


def test_a_warm_fridge_raises_cold_chain_alerts_as_outbox_events(
    tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings], fridge: FakeFridge
) -> None:
    cfg = agent_config(tmp_path, mqtt_settings(STORE), tmp_path / "fridge-1")
    with RunningAgent(cfg) as agent:
        wait(lambda: reader_up(agent), 10, "serial port opened")
        fridge.hello()
        # 40 minutes of device time (a reading a minute), the product at 9 °C throughout.
        for minute in range(41):
            fridge.temp(minute * 60_000, 8.5)  # air 8.5 °C, product 9.0 °C

        def alerts() -> list[dict[str, object]]:
            store = EdgeStore.open_readonly(agent.config.edge.db_path)
            try:
                rows = store.db.execute(
                    "SELECT data FROM events WHERE type='alert' ORDER BY seq").fetchall()
            finally:
                store.close()
            return [json.loads(r[0]) for r in rows]

        wait(lambda: {a["rule"] for a in alerts()} >= {"hot", "warm"}, 10, "hot and warm")
        hot = next(a for a in alerts() if a["rule"] == "hot")
        assert hot["change"] == "raised" and hot["severity"] == "critical"
        # Judged on the fridge's own clock: 15 minutes above 8 °C, not 15 real minutes.
        assert hot["at"] - hot["started_at"] == pytest.approx(15 * 60, abs=61)
        assert "above 8" in str(hot["message"])


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium missing: apt-get install chromium")
def test_the_terminal_page_shows_alerts_and_buzzes_without_any_network(
    tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings], fridge: FakeFridge,
    broker: Broker,
) -> None:
    import dataclasses

    from playwright.sync_api import sync_playwright

    port = free_port()
    cfg = agent_config(tmp_path, mqtt_settings(STORE), tmp_path / "fridge-1")
    cfg = dataclasses.replace(cfg, edge=dataclasses.replace(cfg.edge, kiosk_port=port))
    broker.stop()  # the shop's internet is down: the terminal must still warn the clerk
    with RunningAgent(cfg) as agent:
        wait(lambda: reader_up(agent), 10, "serial port opened")
        fridge.hello()
        for minute in range(41):
            fridge.temp(minute * 60_000, 8.5)
        wait(lambda: any(a.rule == "hot" for a in agent.alerting.active()), 10, "hot alert")
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM),
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--autoplay-policy=no-user-gesture-required"],
            )
            try:
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_selector(".card.critical")
                text = page.inner_text("main")
                assert "fridge-1" in text and "严重" in text  # critical, in Chinese first
                assert "离线" in page.inner_text("#net")
                page.wait_for_function("document.body.dataset.buzzing === 'yes'")
                page.click("#mute")
                page.wait_for_function("document.body.dataset.buzzing === 'no'")
            finally:
                browser.close()


def test_after_a_restart_an_active_alert_stays_active_and_is_not_raised_twice(
    tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings], fridge: FakeFridge
) -> None:
    cfg = agent_config(tmp_path, mqtt_settings(STORE), tmp_path / "fridge-1")

    def raised_hot() -> int:
        store = EdgeStore.open_readonly(cfg.edge.db_path)
        try:
            rows = store.db.execute("SELECT data FROM events WHERE type='alert'").fetchall()
        finally:
            store.close()
        return sum(1 for (d,) in rows
                   if json.loads(d)["rule"] == "hot" and json.loads(d)["change"] == "raised")

    with RunningAgent(cfg) as agent:
        wait(lambda: reader_up(agent), 10, "serial port opened")
        fridge.hello()
        for minute in range(21):
            fridge.temp(minute * 60_000, 8.5)
        wait(lambda: raised_hot() == 1, 10, "hot raised once")
    with RunningAgent(cfg) as agent:  # a new process: the engine starts empty
        wait(lambda: any(a.rule == "hot" for a in agent.alerting.active()), 10,
              "hot active again after the replay of stored records")
        wait(lambda: reader_up(agent), 10, "serial port reopened")
        fridge.hello()
        for minute in range(21, 31):
            fridge.temp(minute * 60_000, 8.5)
        wait(lambda: _stored(agent) == 31, 10, "new readings stored")
        time.sleep(0.5)
        assert raised_hot() == 1


def test_the_replay_after_a_restart_anchors_device_time_where_the_live_run_did(
    tmp_path: Path,
) -> None:
    """A HELLO arrives first but takes no anchor (the engine never judges it); the replay
    must anchor where the live run did, or an alert comes back with another id (a
    millisecond off) and is raised a second time. (Here the live run's anchors were never
    kept, as after a crash right after the records were stored.)"""
    from edge.store import NewEvent, NewReading
    from xiaodian.mqtt import TlsSettings

    tls = TlsSettings(tmp_path / "ca.crt", tmp_path / "c.crt", tmp_path / "c.key")
    cfg = edge_config(tmp_path / "edge", MqttSettings("127.0.0.1", 1, tls))
    # The HELLO, an hour ago; the first reading is read 0.8 ms after it.
    wall0 = round(time.time() - 3600) + 0.0004
    hello = NewEvent("fridge-1", "hello", 1, 0, wall0, True, {"boot_count": 1}, 1)
    temps = [NewReading("fridge-1", 2 + m, m * 60_000, wall0 + 0.0008 + m * 60, True,
                        [(0, "ok", 8.5), (1, "ok", 9.0)], 1) for m in range(21)]
    live = Agent(cfg)
    try:
        added = live.store.add([hello, *temps])
        live._record_alerts(live.alerting.feed(added.fresh))
    finally:
        live.store.close()
    again = Agent(cfg)  # a new process replays the stored records
    try:
        again.rebuild_rules()
        rows = again.store.db.execute("SELECT data FROM events WHERE type='alert'").fetchall()
        assert [json.loads(d)["change"] for (d,) in rows] == ["raised"]  # not raised again
        assert [a.rule for a in again.alerting.active()] == ["hot"]
    finally:
        again.store.close()


def test_readings_beyond_the_unconfirmed_cap_go_out_as_receipts_free_room(
    tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings], cloud: IngestWorker,
) -> None:
    # A backlog found at start, the shipped 60 s readings interval and a cap of 10 sent
    # but unconfirmed: held-back readings once waited for the next interval (a day's
    # backlog took minutes); they must follow the cloud's receipts instead.
    cfg = edge_config(tmp_path / "edge", mqtt_settings(STORE), publish_interval_s=0.1,
                      readings_interval_s=60.0, unconfirmed_readings_max=10)
    backlog = EdgeStore(cfg.edge.db_path)
    try:
        backlog.add([NewReading("fridge-1", i, i * 10_000, time.time() - 3600 + i, True,
                                [(0, "ok", 3.0), (1, "ok", 3.5)], 1) for i in range(100)])
    finally:
        backlog.close()
    with RunningAgent(cfg) as agent:
        wait(lambda: _pending(agent) == 0, 20, "every reading confirmed, ten at a time")
