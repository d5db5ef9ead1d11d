"""Every simulator fault, seen where a user sees it: in the edge agent's database.

Two store runs, each a module fixture: simulator (one fridge per fault, on real ptys) and
edge agent in threads of this process, a real Mosquitto as the broker. The physics and link
faults run on the Python reference controller at 600x (two simulated hours in 12 s); the
probe, restart and shelf faults on the firmware in-process at 60x; a third run has the
restart faults (reboot, watchdog) on the firmware inside real `micropython` processes at
20x. Each parametrised case then checks one fault's effect in the edge's SQLite: an event,
an alert, a counter, readings that kept coming. The unplug and line-noise faults are also
judged end to end, cloud included, in tests/e2e/test_faults.py.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack.broker import Broker
from devstack.testkit.edge import query, running
from devstack.testkit.wait import wait
from hw_sim.micropython_host import micropython_binary
from xiaodian.mqtt import MqttSettings
from xiaodian.pki import DevPki

STORE = "store-001"
LONG_S = 2 * 3600  # the slow physics faults need an hour or two to show
SCAN = "]E06901234567892"


def _fridge(fid: str, *faults: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": fid,
        "door_openings_per_hour": 0,
        "defrost_every_h": 0,
        "faults": list(faults),
        **extra,
    }


def window(fault: str, at_s: float, for_s: float, **kw: Any) -> dict[str, Any]:
    return {"fault": fault, "at_s": at_s, "for_s": for_s, **kw}


PHYSICS = [
    _fridge("door-left-open", window("door_open", 300, 900)),
    _fridge("door-ajar", window("door_ajar", 60, LONG_S)),
    _fridge("compressor-fail", window("compressor_fail", 60, LONG_S)),
    _fridge("thermostat-stuck", window("thermostat_stuck_on", 60, LONG_S)),
    _fridge("heater-stuck", window("heater_stuck_on", 60, LONG_S)),
    _fridge("power-cut", window("power_cut", 600, 900)),
    _fridge(
        "noisy-line",
        window("noise", 600, 1200, ber=2e-3),
        line_noise_ber=1e-4,
        drop_byte_rate=1e-4,
    ),
    _fridge("unplugged", window("unplug", 600, 600, every_s=1800)),
]
FIRMWARE = [
    _fridge("probe-unplugged", window("probe_unplugged", 60, 120, probe=0)),
    _fridge("probe-flatline", window("probe_flatline", 60, 300, probe=1)),
    _fridge("probe-85", window("probe_85", 60, 5, probe=1)),
    _fridge("rebooted", {"fault": "reboot", "at_s": 120}),
    _fridge("watchdog", {"fault": "watchdog", "at_s": 120}),
    _fridge(
        "shelves",
        window("lane_drift", 60, 480, lane=0, drift_g_per_h=600),
        {"fault": "item_taken", "at_s": 100, "lane": 1, "grams": 200},
        {"fault": "restock", "at_s": 200, "lane": 2, "grams": 1500},
        lanes=[1000, 600, 0],
    ),
]


RESTARTED = ("rebooted", "watchdog")


@dataclass
class Run:
    db: Path
    truth: Path

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return query(self.db, sql, *args, missing_ok=False)

    def events(self, device: str, kind: str) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT data, dev_ms, dev_boot FROM events WHERE device=? AND type=? "
            "ORDER BY boot, seq",
            device,
            kind,
        )
        return [{**json.loads(d), "dev_ms": ms, "dev_boot": b} for d, ms, b in rows]

    def changes(self, device: str, kind: str) -> list[dict[str, Any]]:
        """Events that are changes, not the state reported when the agent attached."""
        return [e for e in self.events(device, kind) if not e.get("state_report")]

    def readings(self, device: str) -> list[tuple[int, int, list[list[Any]]]]:
        """(dev_boot, dev_ms, probes) in device order."""
        rows = self.query(
            "SELECT dev_boot, dev_ms, probes FROM readings WHERE device=? "
            "ORDER BY dev_boot, dev_ms",
            device,
        )
        return [(b, ms, json.loads(p)) for b, ms, p in rows]

    def alerts(self, device: str) -> set[str]:
        return {a["rule"] for a in self.events("alerts", "alert")
                if a["fridge"] == device and a["change"] == "raised"}

    def status(self, device: str) -> dict[str, Any]:
        rows = self.query("SELECT status FROM device_status WHERE device=?", device)
        return json.loads(rows[0][0]) if rows else {}

    def made(self, device: str, before_s: float) -> set[int]:
        """dev_ms of the readings the fridge took before `before_s` (ground truth)."""
        out = set()
        for line in self.truth.read_text().splitlines():
            rec = json.loads(line)
            if rec["device"] == device and rec["kind"] == "temp":
                out.add(rec["dev_ms"])
        return {ms for ms in out if ms < before_s * 1000}

    def arrived(self, device: str) -> set[int]:
        return {ms for _, ms, _ in self.readings(device)}


def _caught_up(db: Path, truth: Path) -> Callable[[], bool]:
    """True once the edge has, for every fridge, a reading at least as late (device clock)
    as the last one the fridge had written to its pty when this was called (ground truth)."""
    last: dict[str, int] = {}
    for line in truth.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # the line the simulator is writing just now
            continue
        if rec["kind"] == "temp":
            last[rec["device"]] = rec["dev_ms"]

    def caught_up() -> bool:
        got = dict(query(db, "SELECT device, MAX(dev_ms) FROM readings GROUP BY device"))
        return all(got.get(device, -1) >= ms for device, ms in last.items())

    return caught_up


def _store_run(
    tmp: Path, pki: DevPki, fridges: list[dict[str, Any]], controller: str, speed: float,
    sim_s: float, scanners: list[dict[str, Any]] | None = None,
) -> Iterator[Run]:
    scenario = {
        "sim": {"seed": 11, "speed": speed, "link_dir": "run", "truth": "run/truth.jsonl"},
        "fridges": [{"controller": controller, "sample_interval_s": 60, **f} for f in fridges],
        "scanners": scanners or [],
    }
    with Broker(tmp / "broker", pki) as broker:
        mqtt = MqttSettings(host=broker.host, port=broker.port, tls=pki.client(STORE))
        with running(scenario, tmp, mqtt) as (runner, agent):
            wait(lambda: runner.stepper.sim_time >= sim_s, 3 * sim_s / speed + 60,
                 "the simulator to reach the end of the run (it fell far behind)", 0.1)
            # The last frames through the ptys and into SQLite.
            wait(_caught_up(agent.config.edge.db_path, runner.scenario.sim.truth), 60,
                 "the edge to store the last reading each fridge had sent")
            db, truth = agent.config.edge.db_path, runner.scenario.sim.truth
    yield Run(db, truth)


@pytest.fixture(scope="module")
def physics(tmp_path_factory: pytest.TempPathFactory, pki: DevPki) -> Iterator[Run]:
    scanner = {"id": "scanner-1", "scans_per_hour": 0, "scans": [{"at_s": 60, "line": SCAN}]}
    yield from _store_run(
        tmp_path_factory.mktemp("physics"), pki, PHYSICS, "python", 600.0, LONG_S, [scanner]
    )


@pytest.fixture(scope="module")
def fidelity(tmp_path_factory: pytest.TempPathFactory, pki: DevPki) -> Iterator[Run]:
    fridges = [{**f, "sample_interval_s": 10} for f in FIRMWARE if f["id"] in RESTARTED]
    yield from _store_run(
        tmp_path_factory.mktemp("fidelity"), pki, fridges, "micropython", 20.0, 240
    )


@pytest.fixture(scope="module")
def firmware(tmp_path_factory: pytest.TempPathFactory, pki: DevPki) -> Iterator[Run]:
    fridges = [{**f, "sample_interval_s": 10} for f in FIRMWARE]
    yield from _store_run(tmp_path_factory.mktemp("firmware"), pki, fridges, "firmware", 60.0, 540)


def _air(run: Run, device: str) -> list[float]:
    return [p[0][2] for _, _, p in run.readings(device) if p[0][1] == "ok"]


def _longest_run_on_s(run: Run, device: str) -> float:
    """Longest stretch the compressor stayed on, in device seconds, to the last reading."""
    end = run.readings(device)[-1][1]
    longest, since = 0, None
    for e in run.changes(device, "compressor"):
        if e["on"] and since is None:
            since = e["dev_ms"]
        elif not e["on"] and since is not None:
            longest, since = max(longest, e["dev_ms"] - since), None
    if since is not None:
        longest = max(longest, end - since)
    return longest / 1000


def door_left_open(r: Run) -> None:
    assert [e["open"] for e in r.changes("door-left-open", "door")] == [True, False]
    assert "door" in r.alerts("door-left-open")  # the clerk's buzzer, then the owner


def door_ajar(r: Run) -> None:
    # The switch never saw it (no door event), but the compressor could not stop.
    assert r.changes("door-ajar", "door") == []
    assert _longest_run_on_s(r, "door-ajar") > 3600


def compressor_fail(r: Run) -> None:
    assert _longest_run_on_s(r, "compressor-fail") > 3600
    assert max(_air(r, "compressor-fail")) > 5.0  # running, yet the cabinet warms


def thermostat_stuck_on(r: Run) -> None:
    # The controller never asked for cooling, the welded relay cooled anyway.
    assert not [e for e in r.changes("thermostat-stuck", "compressor") if e["on"]]
    assert min(_air(r, "thermostat-stuck")) < 0.0


def heater_stuck_on(r: Run) -> None:
    assert _longest_run_on_s(r, "heater-stuck") > 3600


def power_cut(r: Run) -> None:
    assert [e["mains"] for e in r.changes("power-cut", "power")] == [True, False, True]
    assert "mains" in r.alerts("power-cut")


def line_noise_and_dropped_bytes(r: Run) -> None:
    status = r.status("noisy-line")
    assert status["crc_errors"] + status["cobs_errors"] > 5
    # Frames were spoilt, records were not: every reading made arrived (but for the last
    # minutes', which may still be on their way when the run stops).
    made = r.made("noisy-line", LONG_S - 300)
    assert len(made) > 100 and made <= r.arrived("noisy-line")


def cable_unplugged(r: Run) -> None:
    links = [e["state"] for e in r.events("unplugged", "link")]
    assert links.count("down") >= 2 and links.count("up") >= 3
    # What the fridge logged while its cable was out came after the replug; the last window
    # (6000-6600 s) may end with the agent still in its reopen back-off when the run stops.
    made = r.made("unplugged", 6000)
    assert len(made) > 90 and made <= r.arrived("unplugged")


def scanner_scans(r: Run) -> None:
    scans = r.events("scanner-1", "scan")
    assert [(s["symbology"], s["data"]) for s in scans] == [("E0", "6901234567892")]


def probe_unplugged(r: Run) -> None:
    statuses = [p[0][1] for _, _, p in r.readings("probe-unplugged")]
    assert "missing" in statuses and statuses[-1] == "ok"  # and it came back
    assert "probe_fault" in r.alerts("probe-unplugged")


def probe_flatline(r: Run) -> None:
    product = [p[1][2] for _, _, p in r.readings("probe-flatline")]
    longest = run = 1
    for a, b in itertools.pairwise(product):
        run = run + 1 if a == b else 1
        longest = max(longest, run)
    assert longest >= 20  # five minutes of one value, every 10 s


def probe_85(r: Run) -> None:
    suspect = [p[1] for _, _, p in r.readings("probe-85") if p[1][1] == "suspect"]
    assert suspect and suspect[0][2] == 85.0


def firmware_reboot(r: Run) -> None:
    hellos = [(h["boot_count"], h["reset_cause"]) for h in r.events("rebooted", "hello")]
    assert (2, "soft") in hellos
    assert any(boot == 2 for boot, _, _ in r.readings("rebooted"))  # streaming again


def watchdog_reset(r: Run) -> None:
    hellos = [(h["boot_count"], h["reset_cause"]) for h in r.events("watchdog", "hello")]
    assert (2, "watchdog") in hellos
    assert any(boot == 2 for boot, _, _ in r.readings("watchdog"))


def _lane(r: Run, lane: int) -> list[tuple[int, bool]]:
    return [(e["lanes"][lane]["grams"], e["lanes"][lane]["stable"]) for e in r.events(
        "shelves", "lanes")]


def lane_drift(r: Run) -> None:
    stable = [g for g, s in _lane(r, 0) if s]
    # 600 g/h for 8 minutes: 80 g of creep, in steps just over the deadband.
    assert stable[0] == 1000 and 1075 <= stable[-1] <= 1081 and len(stable) >= 10


def item_taken(r: Run) -> None:
    assert [g for g, s in _lane(r, 1) if s][-1] == 400


def restock(r: Run) -> None:
    assert [g for g, s in _lane(r, 2) if s][-1] == 1500


PHYSICS_CASES: list[Callable[[Run], None]] = [
    door_left_open,
    door_ajar,
    compressor_fail,
    thermostat_stuck_on,
    heater_stuck_on,
    power_cut,
    line_noise_and_dropped_bytes,
    cable_unplugged,
    scanner_scans,
]
FIRMWARE_CASES: list[Callable[[Run], None]] = [
    probe_unplugged,
    probe_flatline,
    probe_85,
    firmware_reboot,
    watchdog_reset,
    lane_drift,
    item_taken,
    restock,
]


@pytest.mark.parametrize("check", PHYSICS_CASES, ids=lambda c: c.__name__)
def test_physics_and_link_faults_at_the_edge(physics: Run, check: Callable[[Run], None]) -> None:
    check(physics)


@pytest.mark.parametrize("check", FIRMWARE_CASES, ids=lambda c: c.__name__)
def test_firmware_faults_at_the_edge(firmware: Run, check: Callable[[Run], None]) -> None:
    check(firmware)


@pytest.mark.skipif(micropython_binary() is None, reason="no micropython binary")
@pytest.mark.parametrize("check", [firmware_reboot, watchdog_reset], ids=lambda c: c.__name__)
def test_restart_faults_at_the_edge_in_fidelity_mode(
    fidelity: Run, check: Callable[[Run], None]
) -> None:
    check(fidelity)
