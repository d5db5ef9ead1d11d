"""A whole simulated store as real processes: broker, cloud gateway, simulator, edge agent.

Used by `xiaodian demo` and by the end-to-end tests, so both exercise exactly what a user
runs: each part is started through the `xiaodian` command with its own TOML file and log.

This module is the process control (`StoreStack`: write the configs, start, wait, fault,
stop); the processes themselves are in `devstack.process`, the TOML helpers in
`devstack.stack_config` and retail keys and seeding in `devstack.retail_seed`. Their
names are re-exported here.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.broker import Broker
from devstack.inbox_server import InboxServer
from xiaodian.i18n import DEFAULT_TZ
from xiaodian.pki.ca import DevPki, dev_pki

from .process import Part, StackError, _cloud_count, _edge_outbox, _free_port, _ro, _tail
from .retail_seed import (
    DEMO_CATALOGUE,
    DEMO_DELIVERY,
    _edge_has_catalogue,
    retail_setup,
    seed_retail,
)
from .stack_config import _catalogue_toml, _mqtt_toml, _owner_alerts_toml, _toml_str

__all__ = [
    "DEFAULT_SCENARIO", "DEMO_CATALOGUE", "DEMO_DELIVERY", "STORE_ID", "Part", "StackError",
    "StoreStack", "_catalogue_toml", "_cloud_count", "_edge_has_catalogue",
    "_edge_outbox", "_free_port", "_mqtt_toml", "_ro", "_tail", "_toml_str", "scenario_devices",
]

DEFAULT_SCENARIO = Path(__file__).resolve().parent.parent / "hw_sim" / "scenarios" / "demo.toml"
STORE_ID = "store-001"


def scenario_devices(scenario: Path) -> tuple[list[str], list[str]]:
    """(fridge ids, scanner ids) of a scenario file."""
    from hw_sim.scenario import load_scenario

    sc = load_scenario(scenario)
    return [f.id for f in sc.fridges], [s.id for s in sc.scanners]


@dataclass
class StoreStack:
    workdir: Path
    speed: float = 60.0
    scenario: Path = DEFAULT_SCENARIO
    store: str = STORE_ID
    http_port: int = 0
    kiosk_port: int = 0  # the terminal's own page (alerts, buzzer)
    # Ingest workers on one shared subscription. Part "cloud" (worker ingest-1) serves the
    # dashboard on http_port; "cloud-2", ... are further workers, each on a free port of its
    # own.
    cloud_workers: int = 1
    # Seconds the simulator gives the edge at exit to take what the fridges still hold;
    # the fault tests use 0 so that only what was delivered during the run counts.
    sim_flush_s: float = 2.0
    # How long the edge waits for the cloud's receipt before publishing a record again.
    edge_confirm_timeout_s: float = 30.0
    edge_disk_budget_mb: float = 512.0
    # The demo and the tests run the clock fast: a minute of real time is an hour of
    # readings, so they batch per second rather than per (real) minute.
    edge_readings_interval_s: float = 1.0
    # Longest back-off between reconnection attempts (edge and cloud), as in the configs.
    reconnect_max_s: float = 30.0
    # Extra environment for the edge agent's process (the clock-jump test preloads
    # libfaketime through it).
    edge_env: dict[str, str] = field(default_factory=dict)
    edge_compact_bucket_s: float = 600.0
    # TOML appended to every worker's cloud.toml (e.g. an [alerts] table with contacts).
    cloud_alerts_toml: str = ""
    # The owner's phone: a notification inbox (devstack/inbox_server.py) on loopback, made
    # the store owner's only contact (its signed webhook), so the cloud's alert notices reach
    # a page a person can open. Its [alerts] table replaces cloud_alerts_toml.
    owner_inbox: bool = False
    timezone: str = DEFAULT_TZ  # the store's own, for the notices' times
    # Retail: a pickup key ([pickup] in both configs), a command key and API token
    # ([commands] in the cloud's), so catalogues and orders can be made over the API.
    retail: bool = False
    parts: dict[str, Part] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    broker: Broker | None = None
    inbox: InboxServer | None = None
    demo_password: str = ""  # of the owner and technician accounts (`people()`)

    # Where everything goes, relative to the work directory.
    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def link_dir(self) -> Path:
        return self.workdir / "run" / "tty"

    @property
    def truth(self) -> Path:
        return self.workdir / "run" / "truth.jsonl"

    @property
    def edge_db(self) -> Path:
        return self.workdir / "edge" / "edge.sqlite3"

    @property
    def cloud_db(self) -> Path:
        return self.workdir / "cloud" / "cloud.sqlite3"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/"

    @property
    def api_token_file(self) -> Path:
        """The personal API token of the stack's operator account (`people()`)."""
        return self.workdir / "secrets" / "api-token"

    @property
    def service_token_file(self) -> Path:
        """[commands] still requires a token file; the stack itself uses its operator's."""
        return self.workdir / "secrets" / "service-token"

    @property
    def owner_login_url(self) -> str:
        """The login form, going on to the owner page."""
        return f"{self.http_url}login?next=/owner"

    @property
    def inbox_url(self) -> str:
        return self.inbox.url if self.inbox is not None else ""

    @property
    def counter_url(self) -> str:
        return f"http://127.0.0.1:{self.kiosk_port}/counter"

    @property
    def cloud_identities(self) -> list[str]:
        """One certificate per cloud connection: the broker makes the CN the client id."""
        return [f"ingest-{n}{suffix}" for n in range(1, self.cloud_workers + 1)
                for suffix in ("", "-cmd", "-down", "-cli")]

    @property
    def cloud_part_names(self) -> list[str]:
        return ["cloud"] + [f"cloud-{n}" for n in range(2, self.cloud_workers + 1)]

    def prepare(self) -> None:
        """Fresh data for this run; certificates are kept between runs."""
        for sub in ("run", "edge", "cloud", "logs", "broker"):
            shutil.rmtree(self.workdir / sub, ignore_errors=True)
        for sub in ("run", "edge", "cloud", "logs", "broker"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.link_dir.mkdir(parents=True, exist_ok=True)
        if not self.http_port:
            self.http_port = _free_port()
        if not self.kiosk_port:
            self.kiosk_port = _free_port()

    def start(self) -> None:
        """Start every part; if one fails to come up, stop those already running (a test
        whose fixture fails in start() never reaches its stop(), and would leave a broker
        and processes behind for the rest of the run)."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        if self.cloud_workers < 1:
            raise StackError("cloud_workers: must be at least 1")
        self.prepare()
        self.people()
        alerts_toml = self.cloud_alerts_toml
        if self.owner_inbox:
            if alerts_toml:
                raise StackError("owner_inbox and cloud_alerts_toml: one [alerts] table only")
            alerts_toml = self._start_inbox()
        fridges, scanners = scenario_devices(self.scenario)
        pki = dev_pki(self.workdir / "pki", stores=[self.store], services=self.cloud_identities)
        self.broker = Broker(self.workdir / "broker", pki)
        self.broker.start()

        cloud_retail, edge_retail = self._retail_setup(pki) if self.retail else ("", "")
        cloud_tomls = []
        for n in range(1, self.cloud_workers + 1):
            cloud_toml = self.workdir / "cloud" / ("cloud.toml" if n == 1 else f"cloud-{n}.toml")
            cloud_toml.write_text(
                f'[cloud]\ndb = {_toml_str(self.cloud_db)}\nworker_id = "ingest-{n}"\n'
                f'http_host = "127.0.0.1"\nhttp_port = {self.http_port if n == 1 else 0}\n'
                + ("downlink_retry_s = 1.0\n" if self.retail else "")
                + _mqtt_toml(self.broker, pki, f"ingest-{n}", self.reconnect_max_s)
                + cloud_retail
                + (f"\n{alerts_toml}\n" if alerts_toml else ""),
                encoding="utf-8",
            )
            cloud_tomls.append(cloud_toml)
        edge_toml = self.workdir / "edge" / "edge.toml"
        lines = [
            f"[edge]\nstore_id = {_toml_str(self.store)}\n"
            f"data_dir = {_toml_str(self.edge_db.parent)}\n"
            f"confirm_timeout_s = {self.edge_confirm_timeout_s}\n"
            f"disk_budget_mb = {self.edge_disk_budget_mb}\n"
            f"kiosk_port = {self.kiosk_port}\n"
            f"readings_interval_s = {self.edge_readings_interval_s}\n"
            f"compact_bucket_s = {self.edge_compact_bucket_s}\n"
        ]
        lines.append(_mqtt_toml(self.broker, pki, self.store, self.reconnect_max_s))
        for fid in fridges:
            lines.append(
                f"[[fridges]]\nid = {_toml_str(fid)}\nport = {_toml_str(self.link_dir / fid)}\n"
            )
        for sid in scanners:
            lines.append(
                f"[[scanners]]\nid = {_toml_str(sid)}\nport = {_toml_str(self.link_dir / sid)}\n"
            )
        lines.append(edge_retail)
        edge_toml.write_text("".join(lines), encoding="utf-8")

        cli = [sys.executable, "-m", "xiaodian"]
        self.parts = {
            name: Part(
                name, [*cli, "cloud", "run", "--config", str(toml)], self.logs / f"{name}.log"
            )
            for name, toml in zip(self.cloud_part_names, cloud_tomls, strict=True)
        }
        self.parts |= {
            "sim": Part(
                "sim",
                [
                    *cli,
                    "sim",
                    "run",
                    str(self.scenario),
                    "--speed",
                    str(self.speed),
                    "--link-dir",
                    str(self.link_dir),
                    "--truth",
                    str(self.truth),
                    "--flush-s",
                    str(self.sim_flush_s),
                ],
                self.logs / "sim.log",
            ),
            "edge": Part(
                "edge", [*cli, "edge", "run", "--config", str(edge_toml)], self.logs / "edge.log"
            ),
        }
        env = self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for name in self.cloud_part_names:
            self.parts[name].start(env)
        self._wait(lambda: self._http_ok("healthz"), "cloud gateway HTTP", "cloud")
        self.parts["sim"].start(env)
        self._wait(
            lambda: all((self.link_dir / d).exists() for d in fridges + scanners),
            "simulator links",
            "sim",
        )
        self.parts["edge"].start({**env, **self.edge_env})
        self._wait(self.edge_db.exists, "edge database", "edge")

    def _start_inbox(self) -> str:
        """Fresh secrets (0600) and a started inbox; the cloud's [alerts] TOML for it."""
        folder = self.workdir / "secrets"
        files = {}
        for name in ("owner-webhook", "ack-link"):
            files[name] = folder / name
            fd = os.open(files[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
        # The cloud signs with the file's text (stripped), so the inbox checks with that.
        secret = files["owner-webhook"].read_text(encoding="ascii").strip().encode()
        self.inbox = InboxServer(secret, tz=self.timezone)
        self.inbox.start()
        return _owner_alerts_toml(self.store, "owner", self.inbox.hook_url,
                                  files["owner-webhook"], files["ack-link"], self.timezone)

    def _retail_setup(self, pki: DevPki) -> tuple[str, str]:
        """Keys and token (kept between runs, like the certificates); TOML for both sides."""
        return retail_setup(self, pki)

    def seed_retail(self, timeout: float = 20.0) -> dict[str, Any]:
        """What a shop's first morning looks like (`devstack.retail_seed.seed_retail`)."""
        return seed_retail(self, timeout)

    # -- people: the cloud's accounts (cloud_gateway/accounts.py) -----------------------------

    def people(self) -> None:
        """In the fresh cloud database: an operator whose token the stack uses (written to
        `api_token_file`), and an owner, a technician of the store and a supply operator to
        log in as."""
        from cloud_gateway import accounts
        from cloud_gateway.db import Database

        now = time.time()
        self.demo_password = secrets.token_urlsafe(9)  # new each run; the demo prints it
        with Database.open(self.cloud_db) as db, db.transaction() as conn:
            accounts.add_user(conn, "stack-operator", "operator", [], None, now)
            _, token = accounts.create_token(conn, "stack-operator", "devstack", [], now)
            for name in ("owner", "technician"):
                accounts.add_user(conn, name, name, [self.store], self.demo_password, now)
            # The supply operator of the demo (the /supply page): a person, with a password.
            accounts.add_user(conn, "operator", "operator", [], self.demo_password, now)
        self.api_token_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.api_token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")

    def _auth(self) -> dict[str, str]:
        token = self.api_token_file.read_text(encoding="ascii").strip()
        return {"Authorization": f"Bearer {token}"}

    def _wait(self, ready: Any, what: str, part: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if not self.parts[part].alive():
                raise StackError(
                    f"{part} exited while starting; see {self.parts[part].log}:\n"
                    + _tail(self.parts[part].log)
                )
            time.sleep(0.1)
        raise StackError(f"{what} not ready after {timeout:g} s; see {self.parts[part].log}")

    def _http_ok(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.http_url + path, timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def api(self, path: str) -> Any:
        req = urllib.request.Request(self.http_url + path, headers=self._auth())
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.load(resp)

    # -- faults, for the fault-injection tests ------------------------------------------------

    def kill_and_restart(self, name: str) -> None:
        """SIGKILL a part (no clean-up of any kind) and start it again as before."""
        part = self.parts[name]
        part.kill()
        part.start({**self.env, **self.edge_env} if name == "edge" else self.env)

    def restart_broker(self, *, lose_state: bool = False, down_s: float = 0.0) -> None:
        """Stop Mosquitto, stay down `down_s`, start it on the same port. `lose_state`
        also deletes its persistence file, as if the broker's disk had been replaced:
        every session and queued message is gone."""
        assert self.broker is not None
        self.broker.stop()
        if lose_state:
            for db in (self.workdir / "broker").rglob("*.db"):
                db.unlink()
        time.sleep(down_s)
        self.broker.start()

    def settle(self, timeout: float = 30.0) -> bool:
        """Stop the simulator, then wait until the edge outbox is empty and the cloud has it.
        True when everything the edge stored reached the cloud in time."""
        if "sim" in self.parts:
            self.parts["sim"].stop()
        deadline = time.monotonic() + timeout
        last = (-1, -1)
        while time.monotonic() < deadline:
            pending, edge_n = _edge_outbox(self.edge_db)
            cloud_n = _cloud_count(self.cloud_db, self.store)
            if pending == 0 and cloud_n >= edge_n and (edge_n, cloud_n) == last:
                return True
            last = (edge_n, cloud_n)
            time.sleep(0.5)
        return False

    def stop(self) -> None:
        for name in ("sim", "edge", *self.cloud_part_names):
            part = self.parts.get(name)
            if part is not None:
                part.stop()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        if self.inbox is not None:  # last: the cloud may be sending to it until it stops
            self.inbox.stop()  # what it holds stays readable (the demo's summary)
