"""A stack's processes (`Part`: start, stop, kill) and read-only looks into their databases."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class StackError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Part:
    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # our Ctrl-C handling stops it, not the tty
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _ro(db: Path) -> Any:
    import sqlite3

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    return con


def _edge_outbox(db: Path) -> tuple[int, int]:
    """(outbox rows pending, records stored) at the edge."""
    if not db.exists():
        return (0, 0)
    con = _ro(db)
    try:
        pending = con.execute("SELECT count(*) FROM outbox").fetchone()[0]
        stored = con.execute(
            "SELECT (SELECT count(*) FROM readings) + (SELECT count(*) FROM events)"
        ).fetchone()[0]
        return int(pending), int(stored)
    finally:
        con.close()


def _cloud_count(db: Path, store: str) -> int:
    if not db.exists():
        return 0
    con = _ro(db)
    try:
        n = con.execute(
            "SELECT (SELECT count(*) FROM readings WHERE store=?)"
            " + (SELECT count(*) FROM events WHERE store=?)",
            (store, store),
        ).fetchone()[0]
        return int(n)
    finally:
        con.close()
