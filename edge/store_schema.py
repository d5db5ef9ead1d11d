"""The edge database's schema, its migrations and the file-level care around it.

Split out of `edge.store`: the tables, bringing an older file up to date, checking a file
at start-up and moving a damaged one aside, the boot counter's durable write, and the
explicit transaction every writer uses.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

# The schema's version, named in each signed release's manifest (xiaodian/agent_release.py)
# so the terminal knows what a release will write before it runs it. Raised by each
# migration; a migration only adds (tables, nullable or defaulted columns) so the release
# before it still reads the file after a rollback (docs/deploy.md).
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS readings (
    device TEXT NOT NULL, boot INTEGER NOT NULL, seq INTEGER NOT NULL,
    fseq INTEGER NOT NULL, dev_ms INTEGER NOT NULL, wall REAL NOT NULL,
    synced INTEGER NOT NULL, probes TEXT NOT NULL, dev_boot INTEGER NOT NULL,
    -- Set on an aggregate made under disk pressure: it replaces readings seq..seq_last.
    seq_last INTEGER, agg TEXT,
    PRIMARY KEY (device, boot, seq)
) WITHOUT ROWID;
-- A device record resent (its RECEIPT was lost, or we crashed before sending it) is
-- recognised by its identity at the source and stored once.
CREATE UNIQUE INDEX IF NOT EXISTS readings_source
    ON readings (device, dev_boot, fseq, dev_ms);
CREATE TABLE IF NOT EXISTS events (
    device TEXT NOT NULL, boot INTEGER NOT NULL, seq INTEGER NOT NULL,
    type TEXT NOT NULL, fseq INTEGER, dev_ms INTEGER, wall REAL NOT NULL,
    synced INTEGER NOT NULL, data TEXT NOT NULL, dev_boot INTEGER,
    PRIMARY KEY (device, boot, seq)
) WITHOUT ROWID;
-- Agent-made events (link, scan) have no source identity: NULLs never collide.
CREATE UNIQUE INDEX IF NOT EXISTS events_source
    ON events (device, dev_boot, fseq, dev_ms);
-- A row leaves the outbox when the cloud confirms it has committed the record (receipts
-- topic), not on the broker's PUBACK: a broker can still lose what it acknowledged.
-- published_at: agent-monotonic time of the PUBACK in this run, NULL = to be published.
-- sent: 1 once the record was handed to the network (kept across runs): the cloud may hold
-- it raw, so it is never compacted into an aggregate (that would count it twice).
CREATE TABLE IF NOT EXISTS outbox (
    kind TEXT NOT NULL, device TEXT NOT NULL, boot INTEGER NOT NULL, seq INTEGER NOT NULL,
    published_at REAL, sent INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, device, boot, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS device_status (
    device TEXT PRIMARY KEY, updated_wall REAL NOT NULL, status TEXT NOT NULL
);
-- A cloud-started update in progress (edge/update_jobs.py): taken up again after a
-- restart; state/percent are the last ones reported, written with that report's event.
CREATE TABLE IF NOT EXISTS update_jobs (
    device TEXT PRIMARY KEY, request TEXT NOT NULL,
    state TEXT NOT NULL, percent INTEGER NOT NULL
);
"""


class Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")


def migrate(db: sqlite3.Connection) -> None:
    """Bring a database made by an earlier version up to SCHEMA."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
    if "sent" not in columns:
        # Pending rows of an earlier version may have been sent already: never compact them.
        db.execute("ALTER TABLE outbox ADD COLUMN sent INTEGER NOT NULL DEFAULT 1")


def stamp_version(db: sqlite3.Connection) -> int:
    """Mark the file with SCHEMA_VERSION (PRAGMA user_version) and return what it said
    before. Never lowered: after a rollback the release before runs on a file a later one
    wrote (its migrations only added), and the file must still say it holds that later
    schema when the later release runs again."""
    found = int(db.execute("PRAGMA user_version").fetchone()[0])
    if found < SCHEMA_VERSION:
        db.execute(f"PRAGMA user_version = {int(SCHEMA_VERSION)}")
    return found


def check_integrity(path: Path) -> str | None:
    """None if the database file is usable (or absent), else what is wrong with it."""
    if not path.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = con.execute("PRAGMA integrity_check").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        return f"not readable: {exc}"
    if rows != [("ok",)]:
        return "integrity check failed: " + "; ".join(str(r[0]) for r in rows[:5])
    return None


def move_aside(path: Path, now: float) -> Path:
    """Keep a damaged database (and its WAL) for diagnosis; never delete it."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in ("", "-wal", "-shm"):
        src = path.with_name(path.name + suffix)
        if src.exists():
            os.replace(src, aside.with_name(aside.name + suffix))
    return aside


def write_durably(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
