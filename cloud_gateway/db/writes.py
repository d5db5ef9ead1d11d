"""Ingest writes: records, store state messages and dead letters, each in one transaction.

A batch's records, its stream's gaps and the terminal's clock estimate change together, so a
crash leaves neither half and concurrent workers never act on a view another is changing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec

from xiaodian.wire.payloads import Batch, Event, Reading, State

from .. import gaps, health, maintenance_alerts, sql, update_events
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
                # No conflict target: PostgreSQL's readings key also holds wall_corrected
                # (the partition key, migrations.py).
                " ON CONFLICT DO NOTHING",
    "events": "INSERT INTO events (store, device, boot, seq, type, fseq, dev_ms, wall, synced,"
              " data, received_at, wall_corrected, time_method)"
              " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
              " ON CONFLICT (store, device, boot, seq) DO NOTHING",
}
INSERT_COLUMNS = {
    "readings": ("store", "device", "boot", "seq", "fseq", "dev_ms", "wall", "synced", "air_c",
                 "product_c", "probes", "received_at", "wall_corrected", "time_method"),
    "events": ("store", "device", "boot", "seq", "type", "fseq", "dev_ms", "wall", "synced",
               "data", "received_at", "wall_corrected", "time_method"),
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
        with self.transaction(exclusive=False) as conn:
            (counts,) = self.store_batches(conn, [(batch, received_at)], worker=worker,
                                           policy=policy)
        return counts

    def store_batches(self, conn: sql.Connection, items: Sequence[tuple[Batch, float]], *,
                      worker: str = "", policy: ClockPolicy = DEFAULT_POLICY
                      ) -> list[tuple[int, int]]:
        """`store_batch` for many batches (several messages) inside the caller's transaction:
        (inserted, duplicates) per item.

        Set-based, so a group costs a fixed number of round trips however many streams it
        touches: batches of one stream are merged; every stream row is locked by one
        statement, every terminal clock read by one and written by one, the stored seqs of
        every stream read by one, the new rows sent by one COPY (PostgreSQL) or executemany
        (SQLite). Only what is rare stays per stream: filling gaps, aggregates, and the
        retail and vitals meaning of new events.

        Locks are taken in one global order (streams sorted, then the terminals' clocks
        sorted, then the write lock if there are events), the order a single batch takes
        them in: two workers committing groups that share streams wait, never deadlock.
        """
        by_stream: dict[tuple[str, str, str, int], list[int]] = {}
        for i, (batch, _) in enumerate(items):
            by_stream.setdefault((batch.store, batch.kind, batch.device, batch.boot),
                                 []).append(i)
        keys = sorted(by_stream)
        at = max(received for _, received in items)
        max_seqs = self._lock_streams(conn, keys, at)
        samples: dict[tuple[str, int], list[tuple[float, float, bool | None]]] = {}
        sources: dict[tuple[str, int], str] = {}
        for key in keys:
            for i in by_stream[key]:
                batch, received = items[i]
                records: Sequence[Reading | Event] = batch.records
                newest = max(records, key=lambda r: r.seq)
                samples.setdefault((key[0], key[3]), []).append(
                    (received, newest.wall, newest.synced))
                sources[(key[0], key[3])] = f"{key[1]}/{key[2]}"
        for clock_samples in samples.values():
            clock_samples.sort(key=lambda t: t[0])
        offsets = self._clock_many(conn, samples, policy, sources)
        if any(k[1] == "events" for k in keys):
            sql.lock(conn, sql.WRITE_LOCK)
        ranges = {}
        for key in keys:
            records = [r for i in by_stream[key] for r in items[i][0].records]
            ranges[key] = (min(r.seq for r in records),
                           max(getattr(r, "seq_last", None) or r.seq for r in records))
        # Nothing above a stream's max_seq (read under its lock, raised in the transaction
        # of every insert) can be stored: only the part of a range at or below it is
        # looked up, and in-order data, the usual case, is not looked up at all. That
        # lookup cannot be narrowed by time (a copy's corrected time may differ), so on
        # PostgreSQL it probes every month's partition.
        existing = self._stored_seqs(conn, {
            k: (lo, min(hi, max_seqs[k])) for k, (lo, hi) in ranges.items()
            if lo <= max_seqs[k]})
        spans = self._aggregate_spans(conn, {k: v for k, v in ranges.items()
                                             if k[1] == "readings"})
        counts = [(0, 0)] * len(items)
        rows: dict[str, list[tuple[Any, ...]]] = {"readings": [], "events": []}
        new_events: list[tuple[tuple[str, str, str, int], list[Event]]] = []
        stream_updates: list[tuple[Any, ...]] = []
        for key in keys:
            members = by_stream[key]
            fresh_from, covered, events = self._stream_rows(
                conn, key, [items[i] for i in members], existing.get(key, set()),
                spans.get(key, []), offsets[(key[0], key[3])], policy, rows)
            for j, i in enumerate(members):
                counts[i] = (fresh_from[j], len(items[i][0].records) - fresh_from[j])
            stream_updates.append(self._update_gaps(conn, key, max_seqs[key], covered, at,
                                                    worker))
            if events is not None:
                new_events.append((key, events))
        # No conflict is possible: every seq in `rows` was looked up above under its
        # stream's lock, which every writer of that stream holds to its commit.
        for table, table_rows in rows.items():
            sql.insert_rows(conn, table, INSERT_COLUMNS[table], table_rows)
        conn.executemany(
            "UPDATE streams SET max_seq = ?, records = records + ?, last_received_at = ?"
            " WHERE store = ? AND kind = ? AND device = ? AND boot = ?", stream_updates)
        for (store, _, device, boot), events in new_events:
            # Stock movements and order progress, only for events new here: a
            # redelivered copy is not fresh, so it moves nothing twice. They read and
            # change orders like the API's writers: under the write lock (taken above).
            retail_store.apply_events(conn, store, device, boot, events, at, worker)
            # Updates' reason codes: a bad shape is parked, the event kept.
            update_events.check_events(conn, store, device, boot, events, at, worker)
            # A fridge's hourly vitals, likewise only for copies new here.
            if health.apply_vitals(conn, store, device, boot, events, at):
                # New hours: the technicians' maintenance rules judge the fridge again.
                maintenance_alerts.on_vitals(conn, store, device, events, at)
        return counts

    def _stream_rows(self, conn: sql.Connection, key: tuple[str, str, str, int],
                     items: Sequence[tuple[Batch, float]], existing: set[int],
                     spans: list[tuple[int, int]], offset: float, policy: ClockPolicy,
                     rows: dict[str, list[tuple[Any, ...]]]
                     ) -> tuple[list[int], list[int], list[Event] | None]:
        """One stream's new rows (appended to `rows`): how many records of each message
        were new, the seqs now covered, and the new events (None for readings)."""
        kind = key[1]
        batch = items[0][0]
        records: list[Reading | Event] = []
        origin: list[int] = []  # which message each record came from
        for m, (b, _) in enumerate(items):
            records += b.records
            origin += [m] * len(b.records)
        aggregates = {first for first, _ in spans}
        in_aggregates = {s for first, last in spans for s in range(first, last + 1)}
        fresh: dict[int, int] = {}  # seq -> index in records
        for i, r in enumerate(records):  # the first copy of a seq wins, as ON CONFLICT would
            # An aggregate may start at a seq the cloud has raw (an edge of an earlier
            # version compacted readings it had sent): it is a duplicate only of an
            # aggregate. A raw reading inside an aggregate's range is already counted
            # there: storing it too would count it twice.
            is_agg = isinstance(r, Reading) and r.seq_last is not None
            seen = (r.seq in aggregates if is_agg
                    else r.seq in existing or r.seq in in_aggregates)
            if not seen and r.seq not in fresh:
                fresh[r.seq] = i
                if isinstance(r, Reading) and r.seq_last is not None:
                    in_aggregates.update(range(r.seq, r.seq_last + 1))
        covered: list[int] = []
        events: list[Event] = []
        for i in fresh.values():
            r, received = records[i], items[origin[i]][1]
            corrected, method = correct(r.wall, r.synced, offset, policy)
            if isinstance(r, Reading) and r.seq_last is not None and r.agg is not None:
                conn.execute(INSERT_AGGREGATE_SQL, _aggregate_row(batch, r, received))
                # Seqs of the range the cloud already has raw (sent before the outage,
                # their receipt lost) are not counted twice.
                covered += [s for s in range(r.seq, r.seq_last + 1) if s not in existing]
            elif isinstance(r, Reading):
                rows["readings"].append(_reading_row(batch, r, received, corrected, method))
                covered.append(r.seq)
            else:
                rows["events"].append(_event_row(batch, r, received, corrected, method))
                covered.append(r.seq)
                events.append(r)
        per_message = [0] * len(items)
        for i in fresh.values():
            per_message[origin[i]] += 1
        return per_message, covered, (events if kind == "events" else None)

    def _lock_streams(self, conn: sql.Connection, keys: list[tuple[str, str, str, int]],
                      at: float) -> dict[tuple[str, str, str, int], int]:
        """Create the streams' rows if new and lock them (PostgreSQL: FOR UPDATE, in key
        order; SQLite holds its one write lock already): max_seq of each."""
        conn.executemany(
            "INSERT INTO streams (store, kind, device, boot, max_seq, records,"
            " first_received_at, last_received_at) VALUES (?, ?, ?, ?, 0, 0, ?, ?)"
            " ON CONFLICT DO NOTHING", [(*k, at, at) for k in keys])
        out: dict[tuple[str, str, str, int], int] = {}
        for chunk in _chunks(keys):
            rows, params = sql.values(conn, STREAM_TYPES, chunk)
            order = (" ORDER BY s.store, s.kind, s.device, s.boot FOR UPDATE OF s"
                     if sql.is_postgres(conn) else "")
            for row in conn.execute(
                    f"WITH v(store, kind, device, boot) AS ({rows})"
                    " SELECT s.store, s.kind, s.device, s.boot, s.max_seq FROM streams s"
                    " JOIN v ON s.store = v.store AND s.kind = v.kind AND s.device = v.device"
                    f" AND s.boot = v.boot{order}", params):
                out[(row[0], row[1], row[2], int(row[3]))] = int(row[4])
        return out

    def _clock_many(self, conn: sql.Connection,
                    samples: dict[tuple[str, int], list[tuple[float, float, bool | None]]],
                    policy: ClockPolicy, sources: dict[tuple[str, int], str]
                    ) -> dict[tuple[str, int], float]:
        """`_clock_samples` for many terminals at once: the offset estimate of each."""
        clocks = sorted(samples)
        # PostgreSQL: one advisory lock per terminal, in order (taken after the streams').
        sql.lock_many(conn, [f"clock:{store}/{boot}" for store, boot in clocks])
        current: dict[tuple[str, int], tuple[Any, str]] = {}
        last: dict[tuple[str, int], tuple[float, bool | None]] = {}
        for chunk in _chunks(clocks):
            rows, params = sql.values(conn, CLOCK_TYPES, chunk)
            for row in conn.execute(
                    f"WITH v(store, boot) AS ({rows}) SELECT c.store, c.boot,"
                    " c.synced, c.samples FROM clock_estimates c"
                    " JOIN v ON c.store = v.store AND c.boot = v.boot", params):
                current[(row[0], int(row[1]))] = (row[2], row[3])
            for row in conn.execute(
                    f"WITH v(store, boot) AS ({rows}) SELECT h.store, h.boot,"
                    " h.offset_s, h.synced FROM clock_history h WHERE h.id IN"
                    " (SELECT max(c.id) FROM clock_history c JOIN v ON c.store = v.store"
                    " AND c.boot = v.boot GROUP BY c.store, c.boot)", params):
                last[(row[0], int(row[1]))] = (
                    float(row[2]), None if row[3] is None else bool(row[3]))
        offsets: dict[tuple[str, int], float] = {}
        upserts, history = [], []
        for store, boot in clocks:
            row = current.get((store, boot))
            window = ClockWindow.loads(row[1]) if row else ClockWindow()
            for received, wall, _ in samples[(store, boot)]:
                window = window.add(received, wall, policy)
            received_at, synced = samples[(store, boot)][-1][0], samples[(store, boot)][-1][2]
            offset = window.offset
            assert offset is not None  # a window with a sample just added is never empty
            if synced is None and row is not None and row[0] is not None:
                synced = bool(row[0])
            method = correct(0.0, bool(synced), offset, policy)[1]
            upserts.append((store, boot, offset, synced, method, window.dumps(), received_at))
            prev = last.get((store, boot))
            if newsworthy(None if prev is None else prev[0], None if prev is None else prev[1],
                          offset, synced, policy):
                history.append((store, boot, received_at, offset, synced, method,
                                sources[(store, boot)]))
            offsets[(store, boot)] = offset
        conn.executemany(
            "INSERT INTO clock_estimates (store, boot, offset_s, synced, method, samples,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (store, boot) DO UPDATE SET offset_s = excluded.offset_s,"
            " synced = excluded.synced, method = excluded.method, samples = excluded.samples,"
            " updated_at = excluded.updated_at", upserts)
        if history:
            conn.executemany(
                "INSERT INTO clock_history (store, boot, at, offset_s, synced, method, source)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)", history)
        return offsets

    def _stored_seqs(self, conn: sql.Connection,
                     ranges: dict[tuple[str, str, str, int], tuple[int, int]]
                     ) -> dict[tuple[str, str, str, int], set[int]]:
        """Per stream, the seqs already stored within its (first, last) range."""
        out: dict[tuple[str, str, str, int], set[int]] = {}
        for kind in ("readings", "events"):
            mine = sorted(k for k in ranges if k[1] == kind)
            for chunk in _chunks(mine):
                rows, params = sql.values(conn, RANGE_TYPES, [
                    (k[0], k[2], k[3], *ranges[k]) for k in chunk])
                for row in conn.execute(
                        f"WITH v(store, device, boot, lo, hi) AS ({rows})"
                        f" SELECT t.store, t.device, t.boot, t.seq FROM {kind} t JOIN v"
                        " ON t.store = v.store AND t.device = v.device AND t.boot = v.boot"
                        " AND t.seq BETWEEN v.lo AND v.hi", params):
                    out.setdefault((row[0], kind, row[1], int(row[2])), set()).add(
                        int(row[3]))
        return out

    def _aggregate_spans(self, conn: sql.Connection,
                         ranges: dict[tuple[str, str, str, int], tuple[int, int]]
                         ) -> dict[tuple[str, str, str, int], list[tuple[int, int]]]:
        """Per readings stream, the stored aggregates overlapping its range."""
        out: dict[tuple[str, str, str, int], list[tuple[int, int]]] = {}
        for chunk in _chunks(sorted(ranges)):
            rows, params = sql.values(conn, RANGE_TYPES, [
                (k[0], k[2], k[3], *ranges[k]) for k in chunk])
            for row in conn.execute(
                    f"WITH v(store, device, boot, lo, hi) AS ({rows})"
                    " SELECT a.store, a.device, a.boot, a.seq_first, a.seq_last"
                    " FROM reading_aggregates a JOIN v ON a.store = v.store"
                    " AND a.device = v.device AND a.boot = v.boot"
                    " AND a.seq_first <= v.hi AND a.seq_last >= v.lo", params):
                out.setdefault((row[0], "readings", row[1], int(row[2])), []).append(
                    (int(row[3]), int(row[4])))
        return out

    def _update_gaps(self, conn: sql.Connection, key: tuple[str, str, str, int],
                     max_seq: int, inserted: list[int], at: float, worker: str
                     ) -> tuple[Any, ...]:
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
        # The stream row's new values, written for every stream of the group at once.
        return (plan.max_seq, counted, at, *key)

    def _clock_sample(self, conn: sql.Connection, store: str, boot: int,
                      received_at: float, wall: float, synced: bool | None,
                      policy: ClockPolicy, source: str) -> float:
        """Add one observation of a terminal's clock; returns the offset estimate after it."""
        return self._clock_samples(conn, store, boot, [(received_at, wall, synced)], policy,
                                   source)

    def _clock_samples(self, conn: sql.Connection, store: str, boot: int,
                       samples: Sequence[tuple[float, float, bool | None]],
                       policy: ClockPolicy, source: str) -> float:
        """Add observations (received_at, wall, synced) of a terminal's clock, oldest
        first; returns the offset estimate after them."""
        # PostgreSQL: batches of a store's streams and its state messages commit in
        # parallel; the terminal's window is read, changed and written by one at a time (an
        # advisory lock, since the row may not exist yet). Taken after the stream's row lock.
        sql.lock(conn, f"clock:{store}/{boot}")
        row = conn.execute(
            "SELECT synced, samples FROM clock_estimates WHERE store = ? AND boot = ?",
            (store, boot)).fetchone()
        window = ClockWindow.loads(row["samples"]) if row else ClockWindow()
        for received, wall, _ in samples:
            window = window.add(received, wall, policy)
        received_at, synced = samples[-1][0], samples[-1][2]
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
                " updated_at, config_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (store) DO UPDATE SET online = excluded.online,"
                " boot = excluded.boot, wall = excluded.wall,"
                " agent_version = excluded.agent_version, devices = excluded.devices,"
                " updated_at = excluded.updated_at, config_hash = excluded.config_hash"
                " WHERE excluded.boot >= store_state.boot",
                (state.store, state.online, state.boot, state.wall, state.agent_version,
                 json.dumps(list(state.devices)), received_at, state.config_hash),
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
        with self.transaction(exclusive=False) as conn:
            return self.park_in(conn, topic, payload, reason, worker, received_at)

    def park_in(self, conn: sql.Connection, topic: str, payload: bytes, reason: str,
                worker: str, received_at: float) -> int:
        """`park` inside the caller's transaction."""
        if len(payload) > MAX_PARKED_BYTES:
            reason = f"{reason} (payload truncated from {len(payload)} bytes)"
            payload = payload[:MAX_PARKED_BYTES]
        row = conn.execute(
            "INSERT INTO dead_letters (topic, payload, reason, worker, received_at)"
            " VALUES (?, ?, ?, ?, ?) RETURNING id",
            (topic, payload, reason, worker, received_at),
        ).fetchone()
        return int(row[0])


_json = msgspec.json.Encoder().encode


def _probe_value(reading: Reading, index: int) -> float | None:
    for p in reading.probes:
        if p.index == index and p.status == "ok":
            return p.celsius
    return None


def _reading_row(batch: Batch, r: Reading, received_at: float, wall_corrected: float,
                 method: str) -> tuple[Any, ...]:
    probes = _json(r.probes).decode()  # array_like Probes: [[index, status, celsius], ...]
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


# Column types of the lists `sql.values` sends (PostgreSQL needs them for its arrays).
STREAM_TYPES = ("text", "text", "text", "bigint")  # store, kind, device, boot
CLOCK_TYPES = ("text", "bigint")  # store, boot
RANGE_TYPES = ("text", "text", "bigint", "bigint", "bigint")  # store, device, boot, lo, hi
_CHUNK = 500  # rows of one VALUES list (SQLite allows 32,766 parameters per statement)


def _chunks(keys: Sequence[Any]) -> list[Sequence[Any]]:
    return [keys[i:i + _CHUNK] for i in range(0, len(keys), _CHUNK)]
