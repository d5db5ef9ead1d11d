"""Reads for the API and the exports: stores, fridges, readings, gaps, clocks, dead letters.

Plain SELECTs outside any explicit transaction, so they work on a database opened
read-only (`Database.open_readonly`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .. import sql
from .. import sql as sql_layer  # `sql` is also the name of many a local query
from .connection import Connected
from .schema import TABLES

# Fields of a reading row in API responses and exports, in CSV column order.
READING_FIELDS = (
    "store", "device", "boot", "seq", "fseq", "dev_ms", "wall", "synced", "air_c", "product_c",
    "wall_corrected", "time_method",
)
GAP_FIELDS = (
    "id", "store", "kind", "device", "boot", "first_missing_seq", "last_missing_seq",
    "detected_at", "detected_by", "filled_at", "filled_by", "parent_id",
)


@dataclass(frozen=True)
class DeadLetter:
    id: int
    topic: str
    payload: bytes
    reason: str
    worker: str
    received_at: float


class ApiReads(Connected):
    """What the API, the exports and the CLI read."""

    def ping(self) -> bool:
        return self.conn.execute("SELECT 1").fetchone() is not None

    def stores(self) -> list[dict[str, Any]]:
        """Every store we know of, from its state message or from its data."""
        names = [r[0] for r in self.conn.execute(
            "SELECT store FROM store_state UNION SELECT store FROM readings"
            " UNION SELECT store FROM events ORDER BY store"
        )]
        out = []
        for name in names:
            st = self.conn.execute(
                "SELECT online, boot, wall, agent_version, devices, updated_at, config_hash"
                " FROM store_state WHERE store = ?", (name,)
            ).fetchone()
            last = self.conn.execute(
                "SELECT MAX(t) FROM (SELECT MAX(received_at) AS t FROM readings WHERE store = ?"
                " UNION ALL SELECT MAX(received_at) FROM events WHERE store = ?) AS m",
                (name, name),
            ).fetchone()[0]
            open_gaps, open_missing = self.open_gap_totals(name)
            out.append({
                "store": name,
                "online": bool(st["online"]) if st else None,
                "boot": st["boot"] if st else None,
                "agent_version": st["agent_version"] if st else None,
                "config_hash": st["config_hash"] if st else None,
                "devices": json.loads(st["devices"]) if st else [],
                "state_wall": st["wall"] if st else None,
                "updated_at": st["updated_at"] if st else None,
                "last_received_at": last,
                "clock": self.clock(name),
                "open_gaps": open_gaps,
                "missing_records": open_missing,
            })
        return out

    def has_store(self, store: str) -> bool:
        """Whether `store` has ever sent us anything (a state message or data)."""
        row = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM store_state WHERE store = ?)"
            " OR EXISTS (SELECT 1 FROM streams WHERE store = ?)", (store, store)).fetchone()
        return bool(row[0])

    def open_gap_totals(self, store: str) -> tuple[int, int]:
        """(open gaps, records missing in them) of a store."""
        n, missing = self.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(last_missing_seq - first_missing_seq + 1), 0)"
            " FROM data_gaps WHERE store = ? AND filled_at IS NULL", (store,)).fetchone()
        return int(n), int(missing)

    def clock(self, store: str) -> dict[str, Any] | None:
        """The newest boot's clock estimate: offset (cloud minus terminal), synced, method."""
        row = self.conn.execute(
            "SELECT boot, offset_s, synced, method, updated_at FROM clock_estimates"
            " WHERE store = ? ORDER BY boot DESC LIMIT 1", (store,)).fetchone()
        if row is None:
            return None
        return {"boot": row["boot"], "offset_s": row["offset_s"],
                "synced": None if row["synced"] is None else bool(row["synced"]),
                "method": row["method"], "updated_at": row["updated_at"]}

    def clock_history(self, store: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """How the estimate of a store's terminal clock moved, newest first."""
        sql = ("SELECT boot, at, offset_s, synced, method, source FROM clock_history"
               " WHERE store = ? ORDER BY id DESC")
        params: list[Any] = [store]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [{"boot": r["boot"], "at": r["at"], "offset_s": r["offset_s"],
                 "synced": None if r["synced"] is None else bool(r["synced"]),
                 "method": r["method"], "source": r["source"]}
                for r in self.conn.execute(sql, params)]

    def gaps(self, store: str | None = None, *, state: str = "all",
             limit: int | None = None) -> list[dict[str, Any]]:
        """Data gaps ("open", "filled" or "all"), by store, device, kind, boot and seq."""
        if state not in ("open", "filled", "all"):
            raise ValueError(f"unknown gap state {state!r}")
        where: list[str] = []
        params: list[Any] = []
        if store is not None:
            where.append("store = ?")
            params.append(store)
        if state == "open":
            where.append("filled_at IS NULL")
        elif state == "filled":
            where.append("filled_at IS NOT NULL")
        sql = f"SELECT {', '.join(GAP_FIELDS)} FROM data_gaps"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY store, device, kind, boot, first_missing_seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        out = []
        for r in self.conn.execute(sql, params):
            d = {k: r[k] for k in GAP_FIELDS}
            d["missing"] = r["last_missing_seq"] - r["first_missing_seq"] + 1
            d["state"] = "open" if r["filled_at"] is None else "filled"
            out.append(d)
        return out

    def streams(self, store: str) -> list[dict[str, Any]]:
        return [dict(r) | {"missing": r["max_seq"] - r["records"]} for r in self.conn.execute(
            "SELECT kind, device, boot, max_seq, records, first_received_at, last_received_at"
            " FROM streams WHERE store = ? ORDER BY device, kind, boot", (store,))]

    def fridges(self, store: str) -> list[dict[str, Any]]:
        """Each fridge of `store` (a device with readings or door/compressor events)."""
        devices = [r[0] for r in self.conn.execute(
            "SELECT device FROM readings WHERE store = ?"
            " UNION SELECT device FROM events WHERE store = ? AND type IN ('door', 'compressor')"
            " ORDER BY device",
            (store, store),
        )]
        out = []
        for device in devices:
            count = self.conn.execute(
                "SELECT COUNT(*) FROM readings WHERE store = ? AND device = ?", (store, device)
            ).fetchone()[0]
            latest = self.conn.execute(
                "SELECT * FROM readings WHERE store = ? AND device = ?"
                " ORDER BY boot DESC, seq DESC LIMIT 1", (store, device)
            ).fetchone()
            out.append({
                "device": device,
                "readings": count,
                "latest": _reading_dict(latest) if latest else None,
                "door": self._last_event(store, device, "door"),
                "compressor": self._last_event(store, device, "compressor"),
            })
        return out

    def _last_event(self, store: str, device: str, type_: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT boot, seq, dev_ms, wall, synced, data, received_at, wall_corrected,"
            " time_method FROM events"
            " WHERE store = ? AND device = ? AND type = ? ORDER BY boot DESC, seq DESC LIMIT 1",
            (store, device, type_),
        ).fetchone()
        if row is None:
            return None
        return {"boot": row["boot"], "seq": row["seq"], "dev_ms": row["dev_ms"],
                "wall": row["wall"], "synced": bool(row["synced"]),
                "data": json.loads(row["data"]), "received_at": row["received_at"],
                "wall_corrected": row["wall_corrected"], "time_method": row["time_method"]}

    def readings(self, store: str, device: str, *, after: tuple[int, int] | None = None,
                 limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Readings of one fridge in (boot, seq) order, after the cursor (boot, seq) if given.

        A generator over the cursor, so an export of millions of rows streams.
        """
        sql = "SELECT * FROM readings WHERE store = ? AND device = ?"
        params: list[Any] = [store, device]
        if after is not None:
            sql += " AND (boot > ? OR (boot = ? AND seq > ?))"
            params += [after[0], after[0], after[1]]
        sql += " ORDER BY boot, seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        if isinstance(self.conn, sql_layer.PgConnection) and limit is None:
            rows: Iterable[Any] = self.conn.stream(sql, params)  # an unbounded export
        else:
            rows = self.conn.execute(sql, params)
        for row in rows:
            yield _reading_dict(row)

    def dead_letters(self, *, limit: int | None = None) -> list[DeadLetter]:
        """Parked messages, newest first."""
        sql = ("SELECT id, topic, payload, reason, worker, received_at FROM dead_letters"
               " ORDER BY id DESC")
        params: list[Any] = []
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [DeadLetter(r["id"], r["topic"], bytes(r["payload"]), r["reason"], r["worker"],
                           r["received_at"]) for r in self.conn.execute(sql, params)]

    def count(self, table: str) -> int:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}")
        return int(self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _reading_dict(row: sql.Row) -> dict[str, Any]:
    d = {k: row[k] for k in READING_FIELDS}
    d["synced"] = bool(d["synced"])
    d["probes"] = json.loads(row["probes"])
    d["received_at"] = row["received_at"]
    return d
