"""`xiaodian doctor` (#16 point 4): the pure judgement on made-up facts, then the real command
against a real agent, simulator, broker, a second CA and a process that holds a port."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.testkit.edge import (
    edge_config,
    edge_toml,
    query,
    quiet_fridge_sim,
    start_edge,
    stop_child,
)
from devstack.testkit.wait import wait
from edge.doctor_checks import (
    BrokerFacts,
    CertFacts,
    CommandFacts,
    DeviceFacts,
    Facts,
    PortFacts,
    diagnose,
    worst,
)
from xiaodian.i18n import translator
from xiaodian.mqtt import MqttSettings, TlsSettings
from xiaodian.pki import DevPki, dev_pki

STORE = "store-001"
HEALTHY_STATUS = {"frames_ok": 500, "crc_errors": 0, "hello": {
    "firmware": [1, 2, 3], "reset_cause": "power_on", "boot_count": 3}}


def facts(**changes: Any) -> Facts:
    base = Facts(
        store_id=STORE, agent_pid=42,
        ports=(PortFacts("fridge-1", "/dev/ttyUSB0", True, ((42, "xiaodian edge run"),)),),
        devices=(DeviceFacts("fridge-1", "fridge", HEALTHY_STATUS, 2.0, "up",
                             [[0, "ok", 3.1], [1, "ok", 3.4]]),),
        clock_synced=True, cert=CertFacts("c.crt", 300.0),
        broker=BrokerFacts("broker", 8883, "ok"), disk_used=10_000_000,
        disk_budget=512_000_000, disk_free=10_000_000_000, db_check="ok",
        commands=CommandFacts(True, ("k1",), True, STORE))
    return dataclasses.replace(base, **changes)


def levels(f: Facts) -> dict[str, str]:
    return {v.check: v.level for v in diagnose(f)}


def test_a_healthy_terminal_is_all_ok() -> None:
    verdicts = diagnose(facts())
    assert worst(verdicts) == "ok", [(v.check, v.level) for v in verdicts]
    assert {"agent", "port:fridge-1", "link:fridge-1", "firmware:fridge-1", "probes:fridge-1",
            "clock", "certificate", "broker", "disk", "database", "commands"} == {
        v.check for v in verdicts}


def test_each_fault_is_named_with_what_to_do() -> None:
    t = translator("en")
    other = PortFacts("fridge-1", "/dev/ttyUSB0", True, ((42, "agent"), (99, "screen")))
    v = {x.check: x for x in diagnose(facts(ports=(other,)))}["port:fridge-1"]
    assert v.level == "failure" and "pid 99 (screen)" in t.render(v.message)
    assert v.fix is not None and "serial sniff --config" in t.render(v.fix)
    assert levels(facts(cert=CertFacts("c", 12.5)))["certificate"] == "warning"
    assert levels(facts(cert=CertFacts("c", -1.0)))["certificate"] == "failure"
    assert levels(facts(commands=CommandFacts(False)))["commands"] == "warning"
    assert levels(facts(commands=CommandFacts(True, ("k",), True, "store-002")))[
        "commands"] == "failure"
    noisy = dataclasses.replace(facts().devices[0], status={**HEALTHY_STATUS, "crc_errors": 20})
    assert levels(facts(devices=(noisy,)))["link:fridge-1"] == "warning"
    probe = dataclasses.replace(facts().devices[0], probes=[[0, "ok", 3.0], [1, "missing", None]])
    assert levels(facts(devices=(probe,)))["probes:fridge-1"] == "warning"
    down = dataclasses.replace(facts().devices[0], link_state="down")
    assert levels(facts(devices=(down,)))["link:fridge-1"] == "failure"
    stopped = levels(facts(agent_pid=None))
    assert stopped["agent"] == "failure" and stopped["link:fridge-1"] == "warning"
    assert levels(facts(disk_free=1_000_000))["disk"] == "failure"
    assert levels(facts(db_check="database disk image is malformed"))["database"] == "failure"
    assert levels(facts(clock_synced=False))["commands"] == "warning"


# ---------------------------------------------------------------- the real command


@pytest.fixture
def store(tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings]) -> Iterator[
        tuple[Path, Any]]:
    with quiet_fridge_sim(tmp_path) as port:
        cfg = edge_config(tmp_path / "edge", mqtt_settings(STORE), fridges=[("fridge-1", port)],
                          publish_interval_s=0.1, readings_interval_s=0.1)
        toml = tmp_path / "edge.toml"
        agent = start_edge(cfg, toml, tmp_path / "agent.log")
        try:
            # A reading stored and a status report that has the controller's HELLO.
            wait(lambda: query(cfg.edge.db_path, "SELECT 1 FROM readings LIMIT 1") and query(
                cfg.edge.db_path, "SELECT 1 FROM device_status WHERE json_extract(status,"
                " '$.hello') IS NOT NULL"), 30, "the first reading and a link report")
            yield toml, cfg
        finally:
            stop_child(agent)


def doctor(toml: Path, *args: str) -> tuple[int, Any, float]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "xiaodian", "doctor", "--config", str(toml),
                           *args], capture_output=True, text=True, timeout=30, check=False)
    took = time.monotonic() - start
    out = json.loads(done.stdout) if "--json" in args else done.stdout
    return done.returncode, out, took


def by_check(out: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["check"]: c for c in out["checks"]}


def test_doctor_on_a_running_store(store: tuple[Path, Any], tmp_path: Path,
                                   pki: DevPki) -> None:
    toml, cfg = store
    code, out, took = doctor(toml, "--json", "--lang", "en")
    checks = by_check(out)
    assert took < 10
    assert code == {"ok": 0, "warning": 1, "failure": 2}[out["level"]]
    for name in ("agent", "port:fridge-1", "link:fridge-1", "firmware:fridge-1",
                 "probes:fridge-1", "certificate", "broker", "database", "disk"):
        assert checks[name]["level"] == "ok", checks[name]
    # The test store takes no signed commands, and doctor says so and how to change it.
    assert checks["commands"]["level"] == "warning"
    assert "[commands]" in checks["commands"]["fix"]

    # `edge status` for a person, from the same running store.
    status = subprocess.run([sys.executable, "-m", "xiaodian", "edge", "status", "--config",
                             str(toml), "--lang", "en"], capture_output=True, text=True,
                            timeout=30, check=True).stdout.splitlines()
    assert status[0] == "fridge-1 (fridge)" and status[1].startswith("  link up, ")
    assert "  open alerts: none" in status and "  door closed" in status

    # Chinese by default, one line per check.
    code_zh, text, _ = doctor(toml)
    assert code_zh == code and "[正常]" in text and "边缘代理正在运行" in text

    # Another process holds the fridge's port (without reading: it must not steal here).
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; f = open(sys.argv[1],"
                               " 'rb', buffering=0); print('open', flush=True); time.sleep(60)",
                               str(cfg.fridges[0].port)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        code, out, _ = doctor(toml, "--json", "--lang", "en", "--no-network")
        port = by_check(out)["port:fridge-1"]
        assert code == 2 and port["level"] == "failure"
        assert f"pid {holder.pid}" in port["message"]
        assert "broker" not in by_check(out)
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()

    # The broker through a CA that did not sign it: the TLS cause is named.
    other = dev_pki(tmp_path / "other-pki", [STORE])
    wrong_ca = dataclasses.replace(cfg, mqtt=dataclasses.replace(
        cfg.mqtt, tls=TlsSettings(ca=other.ca, cert=cfg.mqtt.tls.cert, key=cfg.mqtt.tls.key)))
    bad = tmp_path / "wrong-ca.toml"
    bad.write_text(edge_toml(wrong_ca), encoding="utf-8")
    code, out, took = doctor(bad, "--json", "--lang", "en")
    broker = by_check(out)["broker"]
    assert code == 2 and broker["level"] == "failure" and took < 10
    assert "not signed by the CA" in broker["message"]

    # A store certificate from another CA: the broker refuses it.
    foreign = dataclasses.replace(cfg, mqtt=dataclasses.replace(
        cfg.mqtt, tls=TlsSettings(ca=pki.ca, cert=other.client(STORE).cert,
                                  key=other.client(STORE).key)))
    bad.write_text(edge_toml(foreign), encoding="utf-8")
    code, out, _ = doctor(bad, "--json", "--lang", "en")
    assert "refused the store certificate" in by_check(out)["broker"]["message"]

    # Nothing listens: refused.
    closed = dataclasses.replace(cfg, mqtt=dataclasses.replace(cfg.mqtt, port=1))
    bad.write_text(edge_toml(closed), encoding="utf-8")
    code, out, _ = doctor(bad, "--json", "--lang", "en")
    assert "connection refused" in by_check(out)["broker"]["message"]


def test_doctor_on_a_stopped_terminal_with_a_damaged_database(
        tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings]) -> None:
    cfg = edge_config(tmp_path / "edge", mqtt_settings(STORE),
                      fridges=[("fridge-1", tmp_path / "no-such-port")])
    cfg.edge.data_dir.mkdir()
    cfg.edge.db_path.write_bytes(b"this is not an SQLite database" * 200)
    toml = tmp_path / "edge.toml"
    toml.write_text(edge_toml(cfg), encoding="utf-8")
    code, out, took = doctor(toml, "--json", "--lang", "en", "--no-network")
    checks = by_check(out)
    assert code == 2 and took < 10
    assert checks["agent"]["level"] == "failure" and "edge run" in checks["agent"]["fix"]
    assert checks["port:fridge-1"]["level"] == "failure"
    assert "missing" in checks["port:fridge-1"]["message"]
    assert checks["database"]["level"] == "failure"
    assert "moves a damaged database aside" in checks["database"]["fix"]
    # A config that cannot even be loaded is the first failure, not a traceback.
    toml.write_text("[edge]\nstore_id = 'bad id!'\n", encoding="utf-8")
    code, out, _ = doctor(toml, "--json", "--lang", "en")
    assert code == 2 and out["checks"][0]["check"] == "config"
