"""Files only their owner may read: the databases hold customer data (orders, names,
pickup details) and a pickup key forges pickup codes."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_MODE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def prepare_private_sqlite(path: Path) -> None:
    """Before sqlite3.connect: create the database file 0600 if it is absent, and take group
    and other permissions off an existing one and its side files.

    SQLite gives the -wal, -shm and -journal files it creates the mode of the database file,
    so a 0600 database keeps them 0600 too, whatever the umask (a process-wide umask change
    would also hit files other threads create meanwhile). An empty file is a valid empty
    database.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        pass
    else:
        os.close(fd)
    for p in (path, *(path.with_name(path.name + s) for s in SQLITE_SIDE_FILES)):
        try:
            mode = stat.S_IMODE(p.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            # A database made by an earlier version (created with the umask's 0644).
            try:
                os.chmod(p, mode & 0o700)
            except OSError as exc:  # not ours: say so, the owner has to fix it
                log.warning("%s is open to group or others (%04o) and cannot be changed: %s",
                            p, mode, exc)
                continue
            log.warning("%s was open to group or others (%04o); now %04o", p, mode,
                        mode & 0o700)


def check_private_file(path: Path, what: str) -> None:
    """PermissionError naming the file and the fix if group or others may read or write it."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise PermissionError(
            f"{what} {path} is open to group or others (mode {mode:04o}): "
            f"run `chmod 600 {path}`")
