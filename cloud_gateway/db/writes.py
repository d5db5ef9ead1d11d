"""Ingest writes: records, store state messages and dead letters, each in one transaction.

A batch's records, its stream's gaps and the terminal's clock estimate change together, so a
crash leaves neither half and concurrent workers never act on a view another is changing.
"""

from __future__ import annotations

import json
from typing import Any

from xiaodian.wire.payloads import Batch, Event, Reading, State

from .. import gaps, health, maintenance_alerts, sql
from .. import retail as retail_store
from ..clock import ClockPolicy, ClockWindow, correct, newsworthy
from ..supply import transit
from .connection import Connected

# A parked payload larger than this is truncated (the broker caps packets anyway; this only
# bounds what one hostile message can cost us).
MAX_PARKED_BYTES = 1024 * 1024
DEFAULT_POLICY = ClockPolicy()
INSERT_SQL = {
    "readings": "INSERT INTO readings (store, device, boot, seq, fseq, dev_ms, wall, synced,"
                " air_c, product_c, probes, received_at, wall_corrected, time_method)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (store, device, boot, seq) DO NOTHING",
    "events": "INSERT INTO events (store, device, boot, seq, type, fseq, dev_ms, wall, synced,"
              " data, received_at, wall_corrected, time_method)"
              " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
              " ON CONFLICT (store, device, boot, seq) DO NOTHING",
}
INSERT_AGGREGATE_SQL = (
    "INSERT INTO reading_aggregates (store, device, boot, seq_first, seq_last, count,"
    " dev_ms_first, dev_ms_last, wall_first, wall_last, synced, probes, received_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
# Probe 0 is the air probe and probe 1 the product-simulating one (contracts.md).
AIR_PROBE, PRODUCT_PROBE = 0, 1


class IngestWrites(Connected):
    """What the ingest workers write."""

    def store_batch(self, batch: Batch, received_at: float, *, worker: str = "",
                    policy: ClockPolicy = DEFAULT_POLICY) -> tuple[int, int]:
        """Insert every new record of `batch`, update its stream's gaps and the terminal's
        clock estimate, all in one transaction: (inserted, duplicates).

        One transaction is what makes the gaps right with several workers: the stream's
        gaps change exactly when its records do, under the stream's lock, so no worker acts
        on a view another is about to change, and a crash leaves neither half. With SQLite
        the lock is the database write lock (BEGIN IMMEDIATE); with PostgreSQL it is the
        stream row (`SELECT ... FOR UPDATE` below), READ COMMITTED then shows each worker
        what the one before it committed. Work is proportional to the batch and the gaps it
        touches, not to the stream's length (recomputing from all stored seqs would be).
        """
        records: list[Reading | Event] = list(batch.records)
        seqs = [r.seq for r in records]
        table = "readings" if batch.kind == "readings" else "events"
        key = (batch.store, batch.kind, batch.device, batch.boot)
        with self.transaction(exclusive=False) as conn:
            max_seq = self._lock_stream(conn, key, received_at)
            wall, synced = max(((r.seq, r.wall, r.synced) for r in records),
                               key=lambda t: t[0])[1:]
            offset = self._clock_sample(conn, batch.store, batch.boot, received_at, wall,
                                        synced, policy, f"{batch.kind}/{batch.device}")
            top = max(getattr(r, "seq_last", None) or r.seq for r in records)
            existing = {row[0] for row in conn.execute(
                f"SELECT seq FROM {table} WHERE store = ? AND device = ? AND boot = ?"
                " AND seq BETWEEN ? AND ?",
                (batch.store, batch.device, batch.boot, min(seqs), top))}
            aggregates: set[int] = set()
            in_aggregates: set[int] = set()
            if table == "readings":
                spans = conn.execute(
                    "SELECT seq_first, seq_last FROM reading_aggregates WHERE store = ?"
                    " AND device = ? AND boot = ? AND seq_first <= ? AND seq_last >= ?",
                    (batch.store, batch.device, batch.boot, top, min(seqs))).fetchall()
                aggregates = {row[0] for row in spans}
                in_aggregates = {s for row in spans for s in range(row[0], row[1] + 1)}
            fresh: dict[int, Reading | Event] = {}
            for r in records:  # the first copy of a seq wins, as ON CONFLICT DO NOTHING would
                # An aggregate may start at a seq the cloud has raw (an edge of an earlier
                # version compacted readings it had sent): it is a duplicate only of an
                # aggregate. A raw reading inside an aggregate's range is already counted
                # there: storing it too would count it twice.
                is_agg = isinstance(r, Reading) and r.seq_last is not None
                seen = aggregates if is_agg else existing | in_aggregates
                if r.seq not in seen and r.seq not in fresh:
                    fresh[r.seq] = r
                    if isinstance(r, Reading) and r.seq_last is not None:
                        in_aggregates.update(range(r.seq, r.seq_last + 1))
            rows = []
            covered: list[int] = []
            for r in fresh.values():
                corrected, method = correct(r.wall, r.synced, offset, policy)
                if isinstance(r, Reading) and r.seq_last is not None and r.agg is not None:
                    conn.execute(INSERT_AGGREGATE_SQL, _aggregate_row(batch, r, received_at))
                    # Seqs of the range the cloud already has raw (sent before the outage,
                    # their receipt lost) are not counted twice.
                    covered += [s for s in range(r.seq, r.seq_last + 1) if s not in existing]
                elif isinstance(r, Reading):
                    rows.append(_reading_row(batch, r, received_at, corrected, method))
                    covered.append(r.seq)
                else:
                    rows.append(_event_row(batch, r, received_at, corrected, method))
                    covered.append(r.seq)
            conn.executemany(INSERT_SQL[table], rows)
            self._update_gaps(conn, key, max_seq, covered, received_at, worker)
            if table == "events":
                # Stock movements and order progress, only for events new here: a
                # redelivered copy is not in `fresh`, so it moves nothing twice. They read
                # and change orders like the API's writers: under the same write lock.
                sql.lock(conn, sql.WRITE_LOCK)
                retail_store.apply_events(
                    conn, batch.store, batch.device, batch.boot,
                    [r for r in fresh.values() if isinstance(r, Event)], received_at, worker)
                # A fridge's hourly vitals, likewise only for copies new here.
                new_events = [r for r in fresh.values() if isinstance(r, Event)]
                if health.apply_vitals(conn, batch.store, batch.device, batch.boot,
                                       new_events, received_at):
                    # New hours: the technicians' maintenance rules judge the fridge again.
                    maintenance_alerts.on_vitals(conn, batch.store, batch.device, new_events,
                                                 received_at)
        return len(fresh), len(records) - len(fresh)

    def _lock_stream(self, conn: sql.Connection, key: tuple[str, str, str, int],
                     received_at: float) -> int:
        conn.execute(
            "INSERT INTO streams (store, kind, device, boot, max_seq, records,"
            " first_received_at, last_received_at) VALUES (?, ?, ?, ?, 0, 0, ?, ?)"
            " ON CONFLICT DO NOTHING", (*key, received_at, received_at))
        # PostgreSQL: FOR UPDATE, the row lock that serialises the batches of one stream.
        # SQLite has one writer at a time already and no FOR UPDATE.
        row = conn.execute(
            "SELECT max_seq FROM streams WHERE store = ? AND kind = ? AND device = ?"
            " AND boot = ?" + (" FOR UPDATE" if sql.is_postgres(conn) else ""), key).fetchone()
        return int(row[0])

    def _update_gaps(self, conn: sql.Connection, key: tuple[str, str, str, int],
                     max_seq: int, inserted: list[int], at: float, worker: str) -> None:
        below = [s for s in inserted if gaps.FIRST_SEQ <= s <= max_seq]
        open_gaps: list[gaps.OpenGap] = []
        if below:
            open_gaps = [gaps.OpenGap(r[0], r[1], r[2]) for r in conn.execute(
                "SELECT id, first_missing_seq, last_missing_seq FROM data_gaps"
                " WHERE store = ? AND kind = ? AND device = ? AND boot = ?"
                " AND filled_at IS NULL AND last_missing_seq >= ? AND first_missing_seq <= ?",
                (*key, min(below), max(below)))]
        plan = gaps.plan(max_seq, open_gaps, inserted)
        insert = ("INSERT INTO data_gaps (store, kind, device, boot, first_missing_seq,"
                  " last_missing_seq, detected_at, detected_by, filled_at, filled_by,"
                  " parent_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        for first, last in plan.opened:
            conn.execute(insert, (*key, first, last, at, worker, None, None, None))
        for fill in plan.fills:
            detected_at, detected_by = conn.execute(
                "SELECT detected_at, detected_by FROM data_gaps WHERE id = ?", (fill.gap_id,)
            ).fetchone()
            if not fill.remaining:
                conn.execute("UPDATE data_gaps SET filled_at = ?, filled_by = ? WHERE id = ?",
                             (at, worker, fill.gap_id))
                continue
            (first, last), *others = fill.remaining
            conn.execute("UPDATE data_gaps SET first_missing_seq = ?, last_missing_seq = ?"
                         " WHERE id = ?", (first, last, fill.gap_id))
            for first, last in others:
                conn.execute(insert, (*key, first, last, detected_at, detected_by, None, None,
                                      fill.gap_id))
            for first, last in fill.filled:
                conn.execute(insert, (*key, first, last, detected_at, detected_by, at, worker,
                                      fill.gap_id))
        for first, last in plan.untracked:
            conn.execute(insert, (*key, first, last, at, worker, at, worker, None))
        counted = sum(1 for s in inserted if s >= gaps.FIRST_SEQ)
        conn.execute(
            "UPDATE streams SET max_seq = ?, records = records + ?, last_received_at = ?"
            " WHERE store = ? AND kind = ? AND device = ? AND boot = ?",
            (plan.max_seq, counted, at, *key))

    def _clock_sample(self, conn: sql.Connection, store: str, boot: int,
                      received_at: float, wall: float, synced: bool | None,
                      policy: ClockPolicy, source: str) -> float:
        """Add one observation of a terminal's clock; returns the offset estimate after it."""
        # PostgreSQL: batches of a store's streams and its state messages commit in
        # parallel; the terminal's window is read, changed and written by one at a time (an
        # advisory lock, since the row may not exist yet). Taken after the stream's row lock.
        sql.lock(conn, f"clock:{store}/{boot}")
        row = conn.execute(
            "SELECT synced, samples FROM clock_estimates WHERE store = ? AND boot = ?",
            (store, boot)).fetchone()
        window = ClockWindow.loads(row["samples"]) if row else ClockWindow()
        window = window.add(received_at, wall, policy)
        offset = window.offset
        assert offset is not None  # a window with a sample just added is never empty
        if synced is None and row is not None and row["synced"] is not None:
            synced = bool(row["synced"])  # a state message says nothing about sync
        method = correct(0.0, bool(synced), offset, policy)[1]
        conn.execute(
            "INSERT INTO clock_estimates (store, boot, offset_s, synced, method, samples,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (store, boot) DO UPDATE SET offset_s = excluded.offset_s,"
            " synced = excluded.synced, method = excluded.method, samples = excluded.samples,"
            " updated_at = excluded.updated_at",
            (store, boot, offset, synced, method, window.dumps(), received_at))
        last = conn.execute(
            "SELECT offset_s, synced FROM clock_history WHERE store = ? AND boot = ?"
            " ORDER BY id DESC LIMIT 1", (store, boot)).fetchone()
        last_synced = None if last is None or last[1] is None else bool(last[1])
        if newsworthy(None if last is None else float(last[0]), last_synced, offset, synced,
                      policy):
            conn.execute(
                "INSERT INTO clock_history (store, boot, at, offset_s, synced, method, source)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (store, boot, received_at, offset, synced, method, source))
        return offset

    def store_state(self, state: State, received_at: float, *, retained: bool = False,
                    policy: ClockPolicy = DEFAULT_POLICY) -> bool:
        """Upsert a store's birth/death message; False if it was older than what we have.

        Every worker sees every state message (it is not a shared subscription), so a slow
        worker may apply an old one late: a message from an earlier agent boot never
        overwrites a later boot's state.

        A live birth message is a clock sample (the agent stamps it as it connects). A death
        message is not: it is the Will, stamped at connect time and sent by the broker when
        the link dies; nor is a retained copy, which may be days old.
        """
        with self.transaction(exclusive=False) as conn:
            cur = conn.execute(
                "INSERT INTO store_state (store, online, boot, wall, agent_version, devices,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (store) DO UPDATE SET online = excluded.online,"
                " boot = excluded.boot, wall = excluded.wall,"
                " agent_version = excluded.agent_version, devices = excluded.devices,"
                " updated_at = excluded.updated_at"
                " WHERE excluded.boot >= store_state.boot",
                (state.store, state.online, state.boot, state.wall, state.agent_version,
                 json.dumps(list(state.devices)), received_at),
            )
            if state.online and not retained:
                self._clock_sample(conn, state.store, state.boot, received_at, state.wall,
                                   None, policy, "state")
                if cur.rowcount == 1:
                    # The terminal just connected: if the broker lost its session (a crash
                    # between two saves), orders sent while it was away are gone with it.
                    # The downlink sender publishes them again on its next pass.
                    sql.lock(conn, sql.WRITE_LOCK)  # orders change under it (store_batch)
                    retail_store.requeue_unconfirmed(conn, received_at, state.store)
                    transit.requeue_in_transit(conn, state.store)  # manifests on their way
            return cur.rowcount == 1

    def park(self, topic: str, payload: bytes, reason: str, worker: str,
             received_at: float) -> int:
        """Keep a message we will not ingest, with why; returns its dead-letter id."""
        if len(payload) > MAX_PARKED_BYTES:
            reason = f"{reason} (payload truncated from {len(payload)} bytes)"
            payload = payload[:MAX_PARKED_BYTES]
        with self.transaction(exclusive=False) as conn:
            row = conn.execute(
                "INSERT INTO dead_letters (topic, payload, reason, worker, received_at)"
                " VALUES (?, ?, ?, ?, ?) RETURNING id",
                (topic, payload, reason, worker, received_at),
            ).fetchone()
            return int(row[0])


def _probe_value(reading: Reading, index: int) -> float | None:
    for p in reading.probes:
        if p.index == index and p.status == "ok":
            return p.celsius
    return None


def _reading_row(batch: Batch, r: Reading, received_at: float, wall_corrected: float,
                 method: str) -> tuple[Any, ...]:
    probes = json.dumps([[p.index, p.status, p.celsius] for p in r.probes])
    return (batch.store, batch.device, batch.boot, r.seq, r.fseq, r.dev_ms, r.wall, r.synced,
            _probe_value(r, AIR_PROBE), _probe_value(r, PRODUCT_PROBE), probes, received_at,
            wall_corrected, method)


def _aggregate_row(batch: Batch, r: Reading, received_at: float) -> tuple[Any, ...]:
    assert r.agg is not None and r.seq_last is not None
    a = r.agg
    probes = json.dumps([[p.index, p.minimum, p.mean, p.maximum, p.n_ok, p.n] for p in a.probes])
    return (batch.store, batch.device, batch.boot, r.seq, r.seq_last, a.count, r.dev_ms,
            a.dev_ms_last, r.wall, a.wall_last, r.synced, probes, received_at)


def _event_row(batch: Batch, e: Event, received_at: float, wall_corrected: float,
               method: str) -> tuple[Any, ...]:
    return (batch.store, batch.device, batch.boot, e.seq, e.type, e.fseq, e.dev_ms, e.wall,
            e.synced, json.dumps(e.data, separators=(",", ":")), received_at, wall_corrected,
            method)
