"""A private PostgreSQL server for the tests: Debian's binaries, a temporary cluster.

One server per test session (initdb takes a second or two), a fresh database per test:

    server = PgServer.start()          # initdb + postgres on a free loopback port
    url = server.create_database()     # postgresql://xiaodian@127.0.0.1:PORT/t_1
    ...
    server.drop_database(url)
    server.stop()                      # fast shutdown, cluster directory removed

Never the machine's own PostgreSQL (port 5432): its own data directory, port and socket
directory, trust authentication for the test role `xiaodian` on loopback only. PostgreSQL
refuses to run as root, so as root the cluster belongs to the `postgres` system user (which
Debian's postgresql package creates) and the server runs as that user. Durability settings
are off (fsync, synchronous_commit) and the cluster lives in /dev/shm where there is one:
the tests check logic, not power cuts.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROLE = "xiaodian"


def find_bindir() -> Path | None:
    """Where initdb and postgres are: Debian's /usr/lib/postgresql/<newest>/bin, or PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name)
                   if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb and shutil.which("postgres"):
        return Path(initdb).parent
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    bindir: Path
    root: Path  # cluster, socket directory and log
    port: int
    proc: subprocess.Popen[bytes]
    user: str | None  # the OS user the server runs as (None: this process's own)
    template: str = "template1"  # what create_database copies
    _n: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def admin_url(self) -> str:
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/postgres"

    def url(self, dbname: str) -> str:
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{dbname}"

    @classmethod
    def start(cls, timeout: float = 60.0, *, parent: str | None = None,
              settings: tuple[str, ...] = ()) -> PgServer:
        """`parent`: where the cluster's directory goes (default /dev/shm when there is
        one); `settings`: more `name=value` server settings (a benchmark's memory)."""
        bindir = find_bindir()
        if bindir is None:
            raise FileNotFoundError("no PostgreSQL server binaries (initdb, postgres)")
        user = None
        as_user: dict[str, object] = {}
        if os.geteuid() == 0:
            user = "postgres"
            try:
                pw = pwd.getpwnam(user)
            except KeyError:
                raise RuntimeError("PostgreSQL refuses to run as root and there is no"
                                   " 'postgres' user to run it as (Debian's postgresql"
                                   " package creates it)") from None
            as_user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        # In memory when the machine has a tmpfs: creating a database per test then costs
        # ~20 ms instead of ~300 ms of disk writes.
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK | os.X_OK) else None
        root = Path(tempfile.mkdtemp(prefix="xiaodian-pg-", dir=parent or shm))
        (root / "sock").mkdir()
        if user is not None:
            for p in (root, root / "sock"):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        data = root / "data"
        log = root / "initdb.log"
        with log.open("wb") as out:
            rc = subprocess.run(
                [str(bindir / "initdb"), "-D", str(data), "-U", ROLE, "--auth=trust",
                 "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"],
                stdout=out, stderr=subprocess.STDOUT, cwd=root, timeout=timeout,
                **as_user).returncode  # type: ignore[call-overload]
        if rc != 0:
            text = log.read_text(errors="replace")
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"initdb failed ({rc}):\n{text}")
        for attempt in range(5):
            port = _free_port()
            server_log = (root / f"postgres-{attempt}.log").open("wb")
            proc = subprocess.Popen(
                [str(bindir / "postgres"), "-D", str(data), "-p", str(port),
                 "-k", str(root / "sock"), "-c", "listen_addresses=127.0.0.1",
                 "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=200",
                 "-c", "shared_buffers=32MB", "-c", "dynamic_shared_memory_type=mmap",
                 *(a for kv in settings for a in ("-c", kv))],
                stdout=server_log, stderr=subprocess.STDOUT, cwd=root,
                start_new_session=True, **as_user)  # type: ignore[call-overload]
            server_log.close()
            server = cls(bindir, root, port, proc, user)
            if server._wait_ready(timeout):
                return server
            server._kill()
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start; logs in {root}")

    def _wait_ready(self, timeout: float) -> bool:
        import psycopg

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False  # e.g. the port was taken meanwhile
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        return False

    def create_database(self, name: str | None = None) -> str:
        """A new database, a copy of `template` (tens of ms when that is small); its URL."""
        import psycopg

        name = name or f"t_{next(self._n)}"
        with psycopg.connect(self.admin_url, autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name} TEMPLATE {self.template}".encode())
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.admin_url, autocommit=True) as c:
            # FORCE: a worker thread of the test may still hold a connection.
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        self._kill()
        shutil.rmtree(self.root, ignore_errors=True)


def db_settings(target: Path | str) -> dict[str, Any]:
    """CloudSettings keywords for a database target (conftest.db_target)."""
    return {"database_url": target} if isinstance(target, str) else {"db": target}


def db_toml(target: Path | str) -> str:
    """The `[cloud]` line that names a database target in a cloud.toml."""
    key = "database_url" if isinstance(target, str) else "db"
    return f'{key} = "{target}"\n'
