"""Small files another program reads while this one rewrites them (the agent's health
statement, the update request, the update helper's status): a reader sees the old content
or the new, never a mix, and (unless `durable=False`) after a power cut one of the two is
on disk."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path: Path, data: bytes, mode: int = 0o644, *,
                     durable: bool = True) -> None:
    """Write `data` beside `path`, fsync it, rename it over `path`, fsync the directory.
    The temporary file is opened without following links (its directory may be writable
    by a less trusted user) and given `mode` whatever the umask (systemd's UMask=0077)
    would make of it. `durable=False` skips both fsyncs, for a file worth nothing after a
    power cut (the rename alone keeps readers from seeing half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(fd, mode)
        f.write(data)
        f.flush()
        if durable:
            os.fsync(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new name in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
