"""A job run every few seconds against the cloud database, on a thread of its own (never
the ingest thread): the supply tick, the residents' notice sender.

The database is opened on the thread at its first pass and kept; a database error is
logged and the next pass tries again (claims and leases make a lost pass harmless).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from . import sql

if TYPE_CHECKING:
    from .db import Database

log = logging.getLogger(__name__)


class DbLoop:
    """Calls `step(db)` every `interval_s` until `stop()`; subclasses define `step`."""

    def __init__(self, name: str, db_target: Path | str, interval_s: float) -> None:
        self.db_target = db_target
        self.interval_s = interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def step(self, db: Database) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        from .db import Database

        db: Database | None = None
        try:
            while not self._stopping.is_set():
                try:
                    if db is None:
                        db = Database.open(self.db_target)
                    self.step(db)
                except sql.ERRORS as exc:  # the next pass tries again
                    log.warning("%s: database error, retrying at the next pass: %s",
                                self._thread.name, exc)
                self._stopping.wait(self.interval_s)
        finally:
            if db is not None:
                db.close()
