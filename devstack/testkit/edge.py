"""The edge agent in tests and benchmarks: its config (and the TOML file `xiaodian edge run`
reads), a run in a thread (alone or beside the simulator, or beside one quiet simulated
fridge) or as its own process, the device end of a pseudo-terminal, the shop seeded in its
database before it starts, and reading the agent's SQLite through a read-only handle of our
own (the agent's connection belongs to its thread).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cloud_gateway.config import CloudSettings
from cloud_gateway.ingest import IngestWorker
from edge.agent import Agent
from edge.config import (
    AgentUpdateSettings,
    CommandSettings,
    EdgeConfig,
    EdgeSettings,
    FirmwareSettings,
    FridgePort,
    PickupSettings,
    ScannerPort,
)
from edge.retail.service import Retail
from edge.store import EdgeStore
from edge.wallclock import WallClock
from hw_sim.fridge import FridgeDevice, SimFridge
from hw_sim.runner import Runner
from hw_sim.scenario import FridgeSpec, Scenario, SimSettings
from xiaodian.config import build
from xiaodian.mqtt import MqttSettings

from .wait import wait

STORE = "store-001"
# What the tests run the agent with: publish and batch readings at once, not each minute.
QUICK: dict[str, Any] = {"publish_interval_s": 0.1, "readings_interval_s": 0.1}

def free_port() -> int:
    """A TCP port free on loopback just now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pty_link(link: Path) -> int:
    """A pseudo-terminal with `link` pointing at its slave (the port the agent opens);
    returns the master, the device's end. The slave is closed here: the agent opens it."""
    master, slave = os.openpty()
    link.symlink_to(os.ttyname(slave))
    os.close(slave)
    return master


def edge_config(
    data_dir: Path,
    mqtt: MqttSettings,
    store: str = STORE,
    fridges: Sequence[tuple[str, Path]] = (),
    scanners: Sequence[tuple[str, Path]] = (),
    commands: CommandSettings | None = None,
    pickup: PickupSettings | None = None,
    firmware: FirmwareSettings | None = None,
    agent_update: AgentUpdateSettings | None = None,
    **edge: Any,
) -> EdgeConfig:
    """An EdgeConfig: `edge` are EdgeSettings fields (defaults otherwise; tests pass QUICK)."""
    return EdgeConfig(
        edge=EdgeSettings(store_id=store, data_dir=data_dir, **edge),
        mqtt=mqtt,
        fridges=tuple(FridgePort(i, p) for i, p in fridges),
        scanners=tuple(ScannerPort(i, p) for i, p in scanners),
        commands=commands,
        pickup=pickup,
        firmware=firmware,
        agent_update=agent_update or AgentUpdateSettings(),
    )


# ---------------------------------------------------------------- TOML and processes


def toml_value(value: object) -> str:
    """A TOML scalar: booleans, numbers, and strings or paths (a JSON string is a valid TOML
    basic string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    raise TypeError(f"no TOML scalar for {value!r}")


def _table(header: str, name: str, obj: Any) -> str:
    """`header` and the dataclass `obj`'s fields: required ones always, others only when not
    their default (the loader fills those in); a dataclass field becomes `[name.field]`."""
    lines, subtables = [header], []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            subtables.append(_table(f"[{name}.{f.name}]", f"{name}.{f.name}", value))
        elif value is not None and (f.default is dataclasses.MISSING or value != f.default):
            lines.append(f"{f.name} = {toml_value(value)}")
    return "\n".join(lines) + "\n" + "".join(subtables)


def mqtt_toml(settings: MqttSettings) -> str:
    """The `[mqtt]` table (with `[mqtt.tls]`) the agent and the cloud read."""
    return _table("[mqtt]", "mqtt", settings)


def edge_toml(cfg: EdgeConfig) -> str:
    """The TOML `xiaodian edge run --config` reads for `cfg` (defaults left implicit)."""
    parts = [_table("[edge]", "edge", cfg.edge), mqtt_toml(cfg.mqtt)]
    if cfg.commands is not None:
        c = cfg.commands
        parts.append(f"[commands]\nskew_s = {c.skew_s}\n" + (
            f"replay_db = {toml_value(c.replay_db)}\n" if c.replay_db is not None else ""))
        parts += [_table("[[commands.keys]]", "commands.keys", k) for k in c.keys]
    parts += [_table("[[fridges]]", "fridges", f) for f in cfg.fridges]
    parts += [_table("[[scanners]]", "scanners", s) for s in cfg.scanners]
    if cfg.pickup is not None:
        parts.append(_table("[pickup]", "pickup", cfg.pickup))
    if cfg.firmware is not None:
        keys = ", ".join(toml_value(k) for k in cfg.firmware.keys)
        parts.append(f"[firmware]\nkeys = [{keys}]\n")
    if cfg.agent_update != AgentUpdateSettings():
        au = dataclasses.replace(cfg.agent_update, keys=())
        keys = ", ".join(toml_value(k) for k in cfg.agent_update.keys)
        parts.append(_table("[agent_update]", "agent_update", au) + f"keys = [{keys}]\n")
    retail = _table("[retail]", "retail", cfg.retail)
    if retail != "[retail]\n":  # not all defaults
        parts.append(retail)
    return "".join(parts)


def start_child(args: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    """`python -m xiaodian ARGS` in its own session, output to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "xiaodian", *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )


def stop_child(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM, then SIGKILL to its whole session after `timeout`; its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def start_edge(cfg: EdgeConfig, toml: Path, log: Path) -> subprocess.Popen[bytes]:
    """The real `xiaodian edge run` for `cfg`, its config written to `toml` first."""
    toml.write_text(edge_toml(cfg), encoding="utf-8")
    return start_child(["edge", "run", "--config", str(toml)], log)


# ---------------------------------------------------------------- the agent in a thread


class RunningAgent:
    """`with RunningAgent(config) as agent:` the agent's loop in a thread, stopped (and
    checked to have stopped) on the way out."""

    def __init__(self, config: EdgeConfig) -> None:
        self.agent = Agent(config)
        self.done = threading.Event()
        self.thread = threading.Thread(
            target=self.agent.run, kwargs={"until": self.done.is_set}, daemon=True
        )

    def __enter__(self) -> Agent:
        self.thread.start()
        return self.agent

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), "agent did not stop"


@contextmanager
def running(
    scenario: dict[str, Any], tmp_path: Path, mqtt: MqttSettings, **edge: Any
) -> Iterator[tuple[Runner, Agent]]:
    """The simulator and the edge agent, each in its own thread, on the scenario's ptys.
    `edge`: more edge_config arguments (kiosk_port, pickup, ...)."""
    runner = Runner(build(scenario, Scenario, tmp_path / "scenario.toml"))
    sim = threading.Thread(target=runner.run, daemon=True)
    link_dir = runner.scenario.sim.link_dir
    config = edge_config(
        tmp_path / "edge",
        mqtt,
        fridges=[(f["id"], link_dir / f["id"]) for f in scenario["fridges"]],
        scanners=[(s["id"], link_dir / s["id"]) for s in scenario.get("scanners", [])],
        **{**QUICK, **edge},
    )
    agent = Agent(config)
    done = threading.Event()
    thread = threading.Thread(target=agent.run, kwargs={"until": done.is_set}, daemon=True)
    thread.start()
    # The simulator starts once the agent listens: a scanner line sent before the port is
    # open is lost, as with a real scanner, and a test must not depend on that race.
    wait(lambda: all(r.opened.is_set() for r in agent.readers), 30, "the agent's ports open")
    sim.start()
    try:
        yield runner, agent
    finally:
        done.set()
        thread.join(timeout=15)
        runner.request_stop()
        sim.join(timeout=15)
        runner.close()
    assert not thread.is_alive() and not sim.is_alive(), "agent or simulator did not stop"


@contextmanager
def quiet_fridge_sim(tmp_path: Path, speed: float = 10.0) -> Iterator[Path]:
    """The simulator in a thread with one quiet fridge-1 (no door openings, no defrost, a
    reading and a heartbeat every 10 simulated s) on a pseudo-terminal; yields its port
    (tmp_path/run/fridge-1) for the agent, and stops the simulator on the way out."""
    spec = FridgeSpec(id="fridge-1", sample_interval_s=10, heartbeat_interval_s=10,
                      door_openings_per_hour=0, defrost_every_h=0)
    runner = Runner(Scenario(SimSettings(link_dir=tmp_path / "run", truth=tmp_path / "t.jsonl",
                                         speed=speed), fridges=(spec,)))
    sim = threading.Thread(target=runner.run, daemon=True)
    sim.start()
    try:
        yield tmp_path / "run" / "fridge-1"
    finally:
        runner.request_stop()
        sim.join(timeout=15)
        runner.close()


def sim_fridge(runner: Runner, device: str = "fridge-1") -> SimFridge:
    """The shop floor of one simulated fridge (SimFridge's API) while the runner runs."""
    d = next(d for d in runner.devices if d.id == device)
    assert isinstance(d, FridgeDevice)
    return d.sim


@contextmanager
def ingest_worker(
    mqtt: MqttSettings, db: Path, worker_id: str = "ingest-test"
) -> Iterator[IngestWorker]:
    """A real cloud ingest worker, subscribed when it is handed over: it commits what
    arrives and sends the store its receipts."""
    worker = IngestWorker(mqtt, CloudSettings(db=db, worker_id=worker_id))
    worker.start()
    try:
        assert worker.wait_subscribed(10), "cloud worker did not subscribe"
        yield worker
    finally:
        worker.stop()


@contextmanager
def seed_terminal(cfg: EdgeConfig) -> Iterator[Retail]:
    """The terminal's retail service on `cfg`'s database before the agent runs, for a test
    to put the shop in as it was: what the cloud sent (`downlink`), what the clerk did
    (`handle`). Closed on the way out: the agent then has the database to itself."""
    cfg.edge.db_path.parent.mkdir(parents=True, exist_ok=True)
    store = EdgeStore(cfg.edge.db_path)
    try:
        yield Retail(store, cfg.edge.store_id, WallClock(), cfg.pickup, cfg.retail, {})
    finally:
        store.close()


# ---------------------------------------------------------------- the edge's SQLite


def query(db: Path, sql: str, *args: Any, missing_ok: bool = True) -> list[tuple[Any, ...]]:
    """Rows through a read-only connection of our own. With `missing_ok`, no database or no
    table yet (the agent has not created it) is no rows rather than an error."""
    if missing_ok and not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        if not missing_ok:
            raise
        return []
    finally:
        con.close()


def events(db: Path, kind: str, *, outbox: bool = False) -> list[dict[str, Any]]:
    """Stored events of one type (oldest first) as `{"device", **data}`; with `outbox`,
    only those with an outbox row."""
    join = (
        " JOIN outbox o ON o.kind='events' AND o.device=e.device AND o.boot=e.boot"
        " AND o.seq=e.seq"
        if outbox
        else ""
    )
    rows = query(
        db,
        f"SELECT e.device, e.data FROM events e{join} WHERE e.type=? ORDER BY e.boot, e.seq",
        kind,
    )
    return [{"device": d, **json.loads(data)} for d, data in rows]


def readings(db: Path) -> int:
    """How many readings the agent has stored."""
    rows = query(db, "SELECT count(*) FROM readings")
    return int(rows[0][0]) if rows else 0
