"""The edge agent's SQLite file: readings, events and the outbox that feeds the uplink.

A record is written here, with its outbox row, in one transaction before anything else
happens to it. The outbox row is deleted only when the cloud confirms it has committed the
record (its receipt); a broker's PUBACK only marks the row as published, and a row
published but not confirmed in time goes out again. So a crash or an outage at any moment
loses nothing: pending rows are simply published again, and the cloud drops duplicates by
id. See docs/store-and-forward.md.

The schema and file checks live in `edge.store_schema`, the record types in
`edge.store_records` and the compaction steps in `edge.store_budget`; every name callers
used is still importable from here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from edge.store_budget import compact_oldest, drop_confirmed_history
from edge.store_records import (
    KIND_ORDER,
    Added,
    NewEvent,
    NewReading,
    PendingBatch,
    RecordKey,
)
from edge.store_schema import SCHEMA, SCHEMA_VERSION, stamp_version
from edge.store_schema import Transaction as _Transaction
from edge.store_schema import check_integrity as _check_integrity
from edge.store_schema import migrate as _migrate
from edge.store_schema import move_aside as _move_aside
from edge.store_schema import write_durably as _write_durably
from xiaodian.private_files import prepare_private_sqlite
from xiaodian.wire.payloads import Kind, ReceiptEntry

# Re-exported: callers import these from edge.store.
__all__ = [
    "KIND_ORDER", "SCHEMA", "Added", "EdgeStore", "NewEvent", "NewReading", "PendingBatch",
    "RecordKey",
]

log = logging.getLogger(__name__)

class EdgeStore:
    """The agent's handle (one per process); `open_readonly` for tools that only look."""

    def __init__(self, path: Path, *, now: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Set when the file was unusable at start-up and moved aside: (problem, where to).
        self.recovered: tuple[str, Path] | None = None
        problem = _check_integrity(path)
        if problem is not None:
            aside = _move_aside(path, now())
            log.error(
                "edge database %s is damaged (%s); kept as %s, starting a new one",
                path,
                problem,
                aside,
            )
            self.recovered = (problem, aside)
        prepare_private_sqlite(path)  # customer data: 0600, its WAL and -shm too
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so one batch of frames is
        # exactly one transaction.
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # Pages freed by compaction go back to the file system (`incremental_vacuum` in
        # enforce_budget), so the budget bounds the file, not just the pages in use. Takes
        # effect only on a new database (before its first table).
        self.db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self.db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit survives a power cut of the terminal, not just a crash of the agent.
        # In WAL mode that is one fsync per commit, and we commit once per batch of frames.
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(SCHEMA)
        _migrate(self.db)
        found = stamp_version(self.db)
        if found > SCHEMA_VERSION:
            # A later release wrote it and was rolled back: its migrations only added, and
            # this one names every column it reads or writes, so it runs on it.
            log.warning("edge database %s has schema %d, newer than this agent's %d (a "
                        "release rolled back?); running on it", path, found, SCHEMA_VERSION)
        # A new process has nothing in flight: every unconfirmed row goes out again.
        self.db.execute("UPDATE outbox SET published_at=NULL WHERE published_at IS NOT NULL")
        self.boot = self._next_boot()
        self._next_seq: dict[tuple[Kind, str], int] = {}

    @classmethod
    def open_readonly(cls, path: Path) -> EdgeStore:
        if not path.exists():
            raise FileNotFoundError(f"no edge database at {path}")
        store = cls.__new__(cls)
        store.path = path
        store.db = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        store.db.execute("PRAGMA busy_timeout=5000")
        store.boot = 0
        store._next_seq = {}
        return store

    def close(self) -> None:
        self.db.close()

    @property
    def boot_file(self) -> Path:
        return self.path.with_name(self.path.name + ".boot")

    def _next_boot(self) -> int:
        """Every start of the agent is a new boot, so (device, boot, seq) never repeats.

        The counter lives in the database and in a small file beside it: if the database is
        lost or moved aside, the new one carries on counting instead of reusing boot 1,
        which the cloud would take for records it already has.
        """
        try:
            from_file = int(self.boot_file.read_text(encoding="ascii").strip() or 0)
        except (FileNotFoundError, ValueError):
            from_file = 0
        with self._tx():
            row = self.db.execute("SELECT value FROM meta WHERE key='boot'").fetchone()
            boot = max(int(row[0]) if row else 0, from_file) + 1
            self.db.execute(
                "INSERT INTO meta(key, value) VALUES('boot', ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (str(boot),),
            )
            _write_durably(self.boot_file, f"{boot}\n")
        return boot

    def _tx(self) -> _Transaction:
        return _Transaction(self.db)

    # ------------------------------------------------------------ writing

    def add(
        self,
        items: Iterable[NewReading | NewEvent],
        extra: Callable[[sqlite3.Connection], None] | None = None,
    ) -> Added:
        """Store records and their outbox rows in one transaction.

        A device record already stored (same device boot, frame seq and device time) is not
        stored again and takes no sequence number, so the uplink streams stay contiguous.
        `extra(db)` runs inside the same transaction (the stock ledger's own rows): if it
        raises, nothing of this call is stored.
        """
        result = Added()
        # Sequence numbers advance only if the transaction commits: no holes after a rollback.
        next_seq = dict(self._next_seq)
        with self._tx():
            if extra is not None:
                extra(self.db)
            for item in items:
                if isinstance(item, NewReading):
                    kind: Kind = "readings"
                    seq = next_seq.get((kind, item.device), 1)
                    cur = self.db.execute(
                        "INSERT INTO readings (device, boot, seq, fseq, dev_ms, wall, synced,"
                        " probes, dev_boot) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                        (
                            item.device,
                            self.boot,
                            seq,
                            item.fseq,
                            item.dev_ms,
                            item.wall,
                            int(item.synced),
                            json.dumps(item.probes),
                            item.dev_boot,
                        ),
                    )
                else:
                    kind = "events"
                    seq = next_seq.get((kind, item.device), 1)
                    cur = self.db.execute(
                        "INSERT INTO events (device, boot, seq, type, fseq, dev_ms, wall,"
                        " synced, data, dev_boot) VALUES (?,?,?,?,?,?,?,?,?,?)"
                        " ON CONFLICT DO NOTHING",
                        (
                            item.device,
                            self.boot,
                            seq,
                            item.type,
                            item.fseq,
                            item.dev_ms,
                            item.wall,
                            int(item.synced),
                            json.dumps(item.data, sort_keys=True),
                            item.dev_boot,
                        ),
                    )
                if cur.rowcount:
                    next_seq[(kind, item.device)] = seq + 1
                    self.db.execute(
                        "INSERT INTO outbox (kind, device, boot, seq, published_at, sent)"
                        " VALUES (?,?,?,?,NULL,0)",
                        (kind, item.device, self.boot, seq),
                    )
                    result.stored += 1
                    result.fresh.append(item)
                else:
                    result.duplicates += 1
                # HELLO is stored for its identity but the device keeps no log entry for it.
                logged = isinstance(item, NewReading) or item.type != "hello"
                if logged and item.fseq is not None and item.dev_boot is not None:
                    result.durable.setdefault(item.device, []).append((item.dev_boot, item.fseq))
        self._next_seq = next_seq
        return result

    def mark_sent(self, keys: Iterable[RecordKey]) -> None:
        """Called before a batch is handed to the network: from then on the cloud may hold
        these records raw (a PUBACK can be lost after the broker took the message), so they
        must never end up inside an aggregate."""
        with self._tx():
            self.db.executemany(
                "UPDATE outbox SET sent=1 WHERE kind=? AND device=? AND boot=? AND seq=? "
                "AND sent=0",
                keys,
            )

    def sent_unconfirmed(self, kind: Kind, device: str) -> int:
        """Records of a stream handed to the network that the cloud has not confirmed."""
        row = self.db.execute(
            "SELECT count(*) FROM outbox WHERE kind=? AND device=? AND sent=1", (kind, device)
        ).fetchone()
        return int(row[0])

    def mark_published(self, keys: Iterable[RecordKey], at: float) -> None:
        """The broker has them (PUBACK): do not publish again unless the cloud stays quiet."""
        with self._tx():
            self.db.executemany(
                "UPDATE outbox SET published_at=? WHERE kind=? AND device=? AND boot=? AND seq=?",
                ((at, *k) for k in keys),
            )

    def republish_unconfirmed(self, published_before: float | None = None) -> int:
        """Put PUBACKed rows the cloud has not confirmed back in line (all, or those
        published before the given time); returns how many."""
        with self._tx():
            if published_before is None:
                cur = self.db.execute(
                    "UPDATE outbox SET published_at=NULL WHERE published_at IS NOT NULL"
                )
            else:
                cur = self.db.execute(
                    "UPDATE outbox SET published_at=NULL WHERE published_at < ?",
                    (published_before,),
                )
        return cur.rowcount

    def confirm(self, entries: Iterable[ReceiptEntry]) -> int:
        """The cloud has committed these records: they leave the outbox (history stays)."""
        removed = 0
        with self._tx():
            for e in entries:
                for first, last in e.ranges:
                    # An aggregate leaves only when the receipt covers its whole range: a
                    # receipt for raw readings that were in flight when it was made does not.
                    cur = self.db.execute(
                        "DELETE FROM outbox WHERE kind=? AND device=? AND boot=? "
                        "AND seq BETWEEN ? AND ? AND NOT EXISTS (SELECT 1 FROM readings r "
                        "WHERE outbox.kind='readings' AND r.device=outbox.device AND "
                        "r.boot=outbox.boot AND r.seq=outbox.seq AND r.seq_last > ?)",
                        (e.kind, e.device, e.boot, first, last, last),
                    )
                    removed += cur.rowcount
        return removed

    def acknowledge(self, keys: Iterable[RecordKey]) -> int:
        """Drop these records from the outbox (the history stays)."""
        with self._tx():
            cur = self.db.executemany(
                "DELETE FROM outbox WHERE kind=? AND device=? AND boot=? AND seq=?", keys
            )
        return cur.rowcount

    def set_device_status(self, device: str, wall: float, status: dict[str, Any]) -> None:
        with self._tx():
            self.db.execute(
                "INSERT INTO device_status (device, updated_wall, status) VALUES (?,?,?) "
                "ON CONFLICT(device) DO UPDATE "
                "SET updated_wall=excluded.updated_wall, status=excluded.status",
                (device, wall, json.dumps(status, sort_keys=True)),
            )

    # ------------------------------------------------------------ disk budget

    def used_bytes(self) -> int:
        """Bytes the database takes on disk: its pages in use (free pages are reused first,
        and `checkpoint` gives them back to the file system) plus the WAL and shared-memory
        files beside it, which grow with every write until a checkpoint truncates them."""
        page_size = self.db.execute("PRAGMA page_size").fetchone()[0]
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * page_size) + self._side_files_bytes()

    def _side_files_bytes(self) -> int:
        total = 0
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                total += self.path.with_name(self.path.name + suffix).stat().st_size
        return total

    def checkpoint(self) -> None:
        """Give free pages back to the file system, copy the WAL into the database and
        truncate it to zero bytes. A reader holding an old snapshot makes it partial (SQLite
        then keeps the file); the next call retries."""
        # executescript steps the pragma to the end; execute() would free a single page.
        self.db.executescript("PRAGMA incremental_vacuum;")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

    def enforce_budget(self, budget_bytes: int, bucket_s: float = 600.0) -> dict[str, int]:
        """Keep the database (with its WAL) within `budget_bytes`, in this order:

        1. checkpoint and truncate the WAL;
        2. drop history the cloud already confirmed, oldest first;
        3. compact the oldest routine readings never handed to the network into
           per-interval aggregates (min/mean/max/count per probe), marked as such;
        Events (door, power, alerts, stock, orders) are never compacted or dropped: if they
        alone exceed the budget the database grows and the agent says so. Called once per
        check interval, it brings the database back to 80 % of the budget whenever there is
        something to drop or compact, so it overshoots by at most one interval's writes.
        """
        done = {"history_dropped": 0, "readings_compacted": 0, "aggregates": 0}
        low_water = int(budget_bytes * 0.8)
        # The WAL holds every write since the last checkpoint. SQLite's own checkpoint runs
        # at 1000 pages (4 MB) and leaves the file at its largest, which a small budget
        # cannot afford: checkpoint at a sixteenth of the budget, and shrink the file back
        # to that after each checkpoint. Between two checks it then stays near that size.
        page_size = self.db.execute("PRAGMA page_size").fetchone()[0]
        wal_pages = max(16, min(1000, budget_bytes // 16 // page_size))
        self.db.execute(f"PRAGMA wal_autocheckpoint={int(wal_pages)}")
        self.db.execute(f"PRAGMA journal_size_limit={int(wal_pages * page_size)}")
        if self._side_files_bytes() > budget_bytes // 16:
            self.checkpoint()
        if self.used_bytes() <= budget_bytes:
            return done
        while self.used_bytes() > low_water:
            n = self._drop_confirmed_history(2000)
            self.checkpoint()  # the deletes themselves went to the WAL
            if not n:
                break
            done["history_dropped"] += n
        while self.used_bytes() > low_water:
            compacted, made = self._compact_oldest(bucket_s)
            if not made:
                break
            done["readings_compacted"] += compacted
            done["aggregates"] += made
            if self._side_files_bytes() > budget_bytes // 16:
                self.checkpoint()
        self.checkpoint()
        if self.used_bytes() > budget_bytes:
            log.error("edge database uses %d bytes over its budget of %d even after "
                      "compaction: only records that are never dropped remain",
                      self.used_bytes(), budget_bytes)
        return done

    def _drop_confirmed_history(self, limit: int) -> int:
        return drop_confirmed_history(self.db, limit)

    def _compact_oldest(self, bucket_s: float) -> tuple[int, int]:
        return compact_oldest(self.db, bucket_s)


    def prune(self, older_than_wall: float) -> int:
        """Drop acknowledged history older than the retention window."""
        removed = 0
        with self._tx():
            for table, kind in (("readings", "readings"), ("events", "events")):
                cur = self.db.execute(
                    f"DELETE FROM {table} WHERE wall < ? AND NOT EXISTS ("
                    "SELECT 1 FROM outbox o WHERE o.kind=? AND o.device="
                    f"{table}.device AND o.boot={table}.boot AND o.seq={table}.seq)",
                    (older_than_wall, kind),
                )
                removed += cur.rowcount
        return removed

    # ------------------------------------------------------------ reading

    def pending_streams(self) -> list[tuple[Kind, str]]:
        rows = self.db.execute(
            "SELECT DISTINCT kind, device FROM outbox WHERE published_at IS NULL"
        ).fetchall()
        order = {k: i for i, k in enumerate(KIND_ORDER)}
        return sorted(((r[0], r[1]) for r in rows), key=lambda s: (order[s[0]], s[1]))

    def next_batch(
        self, kind: Kind, device: str, after: tuple[int, int], limit: int,
        *, sent_only: bool = False,
    ) -> PendingBatch | None:
        """The oldest pending records of one stream after `after` = (boot, seq), one boot only;
        `sent_only`: only those already handed to the network once."""
        only = " AND o.sent=1" if sent_only else ""
        if kind == "readings":
            sql = (
                "SELECT r.boot, r.seq, r.fseq, r.dev_ms, r.wall, r.synced, r.probes, "
                "r.seq_last, r.agg "
                "FROM outbox o JOIN readings r ON r.device=o.device AND r.boot=o.boot "
                "AND r.seq=o.seq WHERE o.kind='readings' AND o.device=? AND o.published_at IS NULL "
                f"AND (o.boot, o.seq) > (?, ?){only} "
                "ORDER BY o.boot, o.seq LIMIT ?"
            )
        else:
            sql = (
                "SELECT e.boot, e.seq, e.type, e.fseq, e.dev_ms, e.wall, e.synced, e.data "
                "FROM outbox o JOIN events e ON e.device=o.device AND e.boot=o.boot "
                "AND e.seq=o.seq WHERE o.kind='events' AND o.device=? AND o.published_at IS NULL "
                f"AND (o.boot, o.seq) > (?, ?){only} "
                "ORDER BY o.boot, o.seq LIMIT ?"
            )
        rows = self.db.execute(sql, (device, after[0], after[1], limit)).fetchall()
        if not rows:
            return None
        boot = rows[0][0]
        records: list[dict[str, Any]] = []
        for row in rows:
            if row[0] != boot:
                break
            if kind == "readings":
                record = {
                    "seq": row[1],
                    "fseq": row[2],
                    "dev_ms": row[3],
                    "wall": row[4],
                    "synced": bool(row[5]),
                    "probes": json.loads(row[6]),
                }
                if row[7] is not None:
                    record["seq_last"] = row[7]
                    record["agg"] = json.loads(row[8])
                records.append(record)
            else:
                records.append(
                    {
                        "seq": row[1],
                        "type": row[2],
                        "fseq": row[3],
                        "dev_ms": row[4],
                        "wall": row[5],
                        "synced": bool(row[6]),
                        "data": json.loads(row[7]),
                    }
                )
        return PendingBatch(kind, device, boot, records)

    def outbox_empty(self) -> bool:
        return self.db.execute("SELECT 1 FROM outbox LIMIT 1").fetchone() is None

    def counts(self) -> dict[str, dict[str, int]]:
        """Per device: records stored and still pending in the outbox, by kind."""
        out: dict[str, dict[str, int]] = {}
        for table in ("readings", "events"):
            for device, n in self.db.execute(
                f"SELECT device, count(*) FROM {table} GROUP BY device"
            ):
                out.setdefault(device, {})[f"{table}_stored"] = n
        for kind, device, n in self.db.execute(
            "SELECT kind, device, count(*) FROM outbox GROUP BY kind, device"
        ):
            out.setdefault(device, {})[f"{kind}_pending"] = n
        return out

    def latest(self, device: str) -> dict[str, Any]:
        """What the kiosk and the demo show for one fridge."""
        result: dict[str, Any] = {}
        row = self.db.execute(
            "SELECT dev_ms, wall, probes FROM readings WHERE device=? "
            "ORDER BY boot DESC, seq DESC LIMIT 1",
            (device,),
        ).fetchone()
        if row:
            result["reading"] = {"dev_ms": row[0], "wall": row[1], "probes": json.loads(row[2])}
        for type_ in ("door", "compressor", "defrost", "power", "link"):
            ev = self.db.execute(
                "SELECT data, dev_ms, wall FROM events WHERE device=? AND type=? "
                "ORDER BY boot DESC, seq DESC LIMIT 1",
                (device, type_),
            ).fetchone()
            if ev:
                result[type_] = json.loads(ev[0])
        st = self.db.execute(
            "SELECT status FROM device_status WHERE device=?", (device,)
        ).fetchone()
        if st:
            result["link"] = {**result.get("link", {}), **json.loads(st[0])}
        return result

