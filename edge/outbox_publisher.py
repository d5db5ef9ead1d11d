"""The exactly-once path from the SQLite outbox to the MQTT uplink (docs/store-and-forward.md).

Each pass sends what is due from every outbox stream, oldest first, alerts before everything
else, from a per-stream cursor (the last record handed to the uplink on this connection; a
new connection starts again from the oldest row). A reading is marked sent before any byte
of it leaves, and while the cloud confirms nothing only `unconfirmed_cap` readings per
stream go out (a sent reading can no longer be compacted under the disk budget). PUBACKs
mark rows published; only the cloud's receipts take them out of the outbox, and published
rows the cloud never confirmed go out again after a wait that doubles.

Owned by the agent's main thread like the store and the uplink it is handed; the decisions
(which streams, how many records a stream may give, the wait) are the pure functions below.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Protocol

from edge.config import EdgeSettings
from edge.store import EdgeStore, PendingBatch, RecordKey
from xiaodian.wire import compact, payloads
from xiaodian.wire.health import HEALTH_DEVICE
from xiaodian.wire.payloads import Kind

log = logging.getLogger(__name__)

BUNDLE_RECORDS = 2000  # records in one compact message, all streams together
# What one stored reading costs on disk (row, source index, outbox row; measured ~170 B),
# to keep the readings that cannot be compacted to a quarter of a small disk budget.
READING_BYTES = 200

Stream = tuple[Kind, str]


class Link(Protocol):
    """What the publisher needs of the uplink (edge/uplink.py, `Uplink`)."""

    @property
    def connected(self) -> bool: ...

    @property
    def generation(self) -> int: ...  # changes with every new connection

    def can_publish(self) -> bool: ...

    def publish(self, topic: str, payload: bytes, keys: list[RecordKey],
                content_type: str | None = None) -> bool: ...

    def take_acked(self) -> list[RecordKey]: ...

    def take_confirmed(self) -> list[payloads.ReceiptEntry]: ...


@dataclass
class Cursor:
    """Last (boot, seq) handed to the uplink for a stream in the current connection."""

    boot: int = 0
    seq: int = 0


# ------------------------------------------------------------ decisions


def unconfirmed_cap(readings_max: int, disk_budget_mb: float, fridges: int) -> int:
    """Readings a stream may have out unconfirmed: the configured maximum, fewer when they
    would take more than a quarter of the disk budget."""
    quarter = disk_budget_mb * 1_000_000 / 4
    return max(1, min(readings_max, int(quarter / READING_BYTES / max(1, fridges))))


def alerts_first(streams: Iterable[Stream]) -> list[Stream]:
    """After an outage alerts must not queue behind hours of door events."""
    return sorted(streams, key=lambda s: s[1] != payloads.ALERTS_DEVICE)


def routine(stream: Stream, fridge_ids: Collection[str]) -> bool:
    """Records that wait for the readings interval: readings, a fridge's own events
    (door, compressor, defrost: hundreds a day) and hourly vitals. Alerts, stock,
    orders and the rest go out within publish_interval_s."""
    kind, device = stream
    return kind == "readings" or device in fridge_ids or device == HEALTH_DEVICE


def take(limit: int, room: int | None) -> tuple[int, bool]:
    """How many records to ask a stream for, and whether only already-sent ones: `room`
    is what the unconfirmed cap still allows (None: no cap, not readings). At the cap,
    only readings sent before go out again (their copies may have been lost)."""
    sent_only = room is not None and room <= 0
    if room is not None and not sent_only:
        limit = min(limit, room)
    return limit, sent_only


def longer_wait(wait: float, most: float) -> float:
    """The next wait for receipts after a round that still found unconfirmed records."""
    return min(wait * 2, most)


# ------------------------------------------------------------ the publisher


class OutboxPublisher:
    """What the agent calls: `publish` (a pass over the outbox), `acknowledge` (PUBACKs and
    receipts), `republish_unconfirmed`, and `forget_cursors` when rows behind the cursors
    changed. The loop reads `window_full`, `readings_held`, `confirmed`, `confirm_wait`."""

    def __init__(self, store: EdgeStore, link: Link, edge: EdgeSettings,
                 fridge_ids: frozenset[str], monotonic: Callable[[], float]) -> None:
        self.store = store
        self.link = link
        self.edge = edge
        self.fridge_ids = fridge_ids
        self.monotonic = monotonic
        self.cursors: dict[Stream, Cursor] = {}
        self.cursor_generation = -1
        self.confirmed = 0  # records the cloud's receipts took out of the outbox
        self.republished = 0
        # The last pass stopped at a full in-flight window (while connected): it continues
        # as PUBACKs free it.
        self.window_full = False
        # Readings held back by the unconfirmed cap: they go out as the cloud's receipts
        # free room, not at the next readings interval (a backlog must not wait 60 s).
        self.readings_held = False
        self.confirm_wait = edge.confirm_min_s
        # Sent readings can no longer be compacted: with a small budget, fewer may be out.
        self.unconfirmed_cap = unconfirmed_cap(edge.unconfirmed_readings_max,
                                               edge.disk_budget_mb, len(fridge_ids))

    def forget_cursors(self) -> None:
        """Rows behind the cursors changed (compacted, dropped, due again): the next pass
        starts from the oldest row."""
        self.cursors.clear()

    def _room(self, stream: Stream) -> int | None:
        kind, device = stream
        if kind != "readings":
            return None
        return self.unconfirmed_cap - self.store.sent_unconfirmed(kind, device)

    def publish(self, readings: bool = True) -> int:
        """Publish outbox rows, oldest first, events before readings, while the window allows.
        `readings=False` sends only events (alerts, doors, commands): routine readings wait
        for their own, longer interval so that each message carries many of them.
        Returns how many messages went out."""
        if self.link.generation != self.cursor_generation:
            # New connection: whatever was in flight may be lost; start from the oldest row.
            self.cursors.clear()
            self.cursor_generation = self.link.generation
        self.window_full = False
        if readings:  # an events-only pass leaves held readings held
            self.readings_held = False
        streams = alerts_first(self.store.pending_streams())
        if self.edge.wire_format == "compact":
            return self._publish_bundles(streams, readings)
        return self._publish_batches(streams, readings)

    def _publish_batches(self, streams: list[Stream], readings: bool) -> int:
        """Version-1 JSON: one message per stream and batch, on the stream's own topic."""
        store_id = self.edge.store_id
        sent = 0
        for stream in streams:
            kind, device = stream
            if kind == "readings" and not readings:
                continue
            cursor = self.cursors.setdefault(stream, Cursor())
            # `room` counts down conservatively (a batch may resend some); the next pass
            # counts exactly again.
            room = self._room(stream)
            while True:
                if not self.link.can_publish():
                    self.window_full = self.link.connected
                    return sent
                limit, sent_only = take(self.edge.max_batch, room)
                batch = self.store.next_batch(
                    kind, device, (cursor.boot, cursor.seq), limit, sent_only=sent_only
                )
                if batch is None:
                    if sent_only:
                        self.readings_held = True
                    break
                if room is not None and not sent_only:
                    room -= len(batch.records)
                if kind == "readings":
                    self.store.mark_sent(batch.keys)  # durable before any byte leaves
                body = payloads.batch_payload(kind, store_id, device, batch.boot, batch.records)
                if not self.link.publish(
                    payloads.topic(store_id, payloads.leaf_for(kind, device)), body, batch.keys
                ):
                    return sent
                self._advance(stream, batch)
                sent += 1
        return sent

    def _publish_bundles(self, streams: list[Stream], readings: bool) -> int:
        """The compact format: what is due from every stream, one message per store (up to
        max_batch records a stream and BUNDLE_RECORDS in all), on topic `bundle`."""
        store_id = self.edge.store_id
        sent = 0
        due = [s for s in streams if readings or not routine(s, self.fridge_ids)]
        rooms = {s: self._room(s) for s in due}
        while due:
            if not self.link.can_publish():
                self.window_full = self.link.connected
                return sent
            parts: list[tuple[Kind, str, PendingBatch]] = []
            total = 0
            for stream in list(due):
                kind, device = stream
                cursor = self.cursors.setdefault(stream, Cursor())
                room = rooms[stream]
                limit, sent_only = take(min(self.edge.max_batch, BUNDLE_RECORDS - total), room)
                batch = self.store.next_batch(kind, device, (cursor.boot, cursor.seq), limit,
                                              sent_only=sent_only)
                if batch is None:
                    if sent_only:
                        self.readings_held = True
                    due.remove(stream)
                    continue
                if room is not None and not sent_only:
                    rooms[stream] = room - len(batch.records)
                parts.append((kind, device, batch))
                total += len(batch.records)
                if total >= BUNDLE_RECORDS or len(parts) >= compact.MAX_STREAMS:
                    break
            if not parts:
                break
            keys = [k for _, _, b in parts for k in b.keys]
            readings_keys = [k for k in keys if k[0] == "readings"]
            if readings_keys:
                self.store.mark_sent(readings_keys)  # durable before any byte leaves
            try:
                body = compact.bundle_payload(
                    store_id, [(k, d, b.boot, b.records) for k, d, b in parts])
                if len(body) > payloads.MAX_PAYLOAD_BYTES:
                    raise compact.CompactUnfit(f"{len(body)} bytes in one message")
            except compact.CompactUnfit as exc:
                log.warning("uplink: sending as JSON, the compact format cannot carry: %s", exc)
                for kind, device, batch in parts:
                    if not self.link.publish(
                            payloads.topic(store_id, payloads.leaf_for(kind, device)),
                            payloads.batch_payload(kind, store_id, device, batch.boot,
                                                   batch.records), batch.keys):
                        return sent
                    self._advance((kind, device), batch)
                    sent += 1
                continue
            if not self.link.publish(payloads.topic(store_id, compact.LEAF), body, keys,
                                     content_type=compact.CONTENT_TYPE):
                return sent
            for kind, device, batch in parts:
                self._advance((kind, device), batch)
            sent += 1
        return sent

    def _advance(self, stream: Stream, batch: PendingBatch) -> None:
        cursor = self.cursors.setdefault(stream, Cursor())
        cursor.boot, cursor.seq = batch.boot, batch.records[-1]["seq"]

    def acknowledge(self) -> int:
        """Note PUBACKs (the broker has them) and apply the cloud's receipts (it has
        committed them: the rows leave the outbox). Returns how many PUBACKed records."""
        keys = self.link.take_acked()
        if keys:
            self.store.mark_published(keys, self.monotonic())
        confirmed = self.link.take_confirmed()
        if confirmed:
            self.confirmed += self.store.confirm(confirmed)
            self.confirm_wait = self.edge.confirm_min_s  # the cloud is answering
        return len(keys)

    def republish_unconfirmed(self) -> int:
        """Records the broker took but the cloud never confirmed (a broker restarted without
        its database or its shared subscriptions, a dropped queue) go out again; the cloud
        keeps each once.

        The wait starts short (`confirm_min_s`): a healthy cloud confirms in milliseconds, so
        a record unconfirmed after a few seconds was most likely lost (seen after a broker
        restart: the store reconnected before the cloud worker had subscribed again). Each
        round that still finds records doubles the wait up to `confirm_timeout_s`, so a cloud
        that is down for hours gets one copy a while, not a flood; a receipt resets it.
        """
        n = self.store.republish_unconfirmed(self.monotonic() - self.confirm_wait)
        if n:
            log.warning("uplink: %d records not confirmed by the cloud in %.0f s; sending again",
                        n, self.confirm_wait)
            self.republished += n
            self.cursors.clear()  # they lie behind the cursors
            self.confirm_wait = longer_wait(self.confirm_wait, self.edge.confirm_timeout_s)
        return n
