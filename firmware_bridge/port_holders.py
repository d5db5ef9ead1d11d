"""Which processes have a serial port open, from /proc/*/fd (Linux).

A serial port has no notion of a second reader: whoever calls read() first gets the byte.
So before opening a port, a tool asks who holds it and refuses if anyone does. The agent
also takes an exclusive lock (flock, pyserial's `exclusive=True`), but a plain `cat` or
`screen` takes none, which is why this looks at every process's open files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str  # the process's command line, shortened


def _command(proc_dir: Path) -> str:
    try:
        raw = (proc_dir / "cmdline").read_bytes()
    except OSError:
        return "?"
    words = [w.decode(errors="replace") for w in raw.split(b"\0") if w]
    text = " ".join(words) or "?"
    return text if len(text) <= 120 else text[:117] + "..."


def holders(port: str, *, proc: Path = Path("/proc"), me: int | None = None) -> list[Holder]:
    """Processes other than `me` (default: this one) with `port` open. Processes whose
    files we may not read (another user's, without root) are not seen."""
    me = os.getpid() if me is None else me
    try:
        target = os.path.realpath(port)
        target_stat = os.stat(target)
    except OSError:
        return []
    found: list[Holder] = []
    try:
        entries = list(proc.iterdir())
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) != target:
                    continue
                st = os.stat(fd)
            except OSError:
                continue
            if (st.st_rdev, st.st_ino) == (target_stat.st_rdev, target_stat.st_ino):
                found.append(Holder(int(entry.name), _command(entry)))
                break
    return found


def describe_holders(port: str) -> str:
    """`pid 123 (xiaodian edge run ...)`, or "" when nobody (we can see) holds the port."""
    return ", ".join(f"pid {h.pid} ({h.command})" for h in holders(port))
