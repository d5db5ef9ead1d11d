"""The fleet generator's simulated store: the agent's bundle, and its outbox under receipts."""

from __future__ import annotations

from devstack.fleet_run import percentile
from devstack.fleet_store import SimStore
from xiaodian.wire import compact
from xiaodian.wire.payloads import ReceiptEntry


def test_a_bundle_is_the_agents_compact_message_of_one_interval() -> None:
    store = SimStore("fs-00001")
    bundle = store.next_bundle(1_780_000_000.0)
    batches = compact.parse_bundle("xd/v1/fs-00001/bundle", bundle.payload)
    readings = [b for b in batches if b.kind == "readings"]
    events = [b for b in batches if b.kind == "events"]
    assert [b.device for b in readings] == ["fridge-1", "fridge-2", "fridge-3", "fridge-4"]
    assert all(len(b.records) == 24 for b in readings)  # 240 s at 10-s sampling
    assert [r.seq for r in readings[0].records] == list(range(1, 25))
    assert all(len(b.records) == 1 and b.records[0].type == "door" for b in events)
    assert bundle.readings == 96 and bundle.events == 4 and len(bundle.keys) == 100
    # The next interval continues each stream.
    nxt = compact.parse_bundle("xd/v1/fs-00001/bundle", store.next_bundle(1_780_000_240.0).payload)
    assert nxt[0].records[0].seq == 25


def test_records_leave_the_outbox_only_when_a_receipt_names_them() -> None:
    store = SimStore("fs-00001", confirm_timeout_s=30.0)
    bundle = store.next_bundle(100.0)
    part = [ReceiptEntry("readings", f"fridge-{n}", 1, ((1, 24),)) for n in range(1, 5)]
    assert store.confirm(part, 100.5) == []  # the door events are not confirmed yet
    assert store.pending_records == 4 and store.overdue(130.0) == [bundle]
    doors = [ReceiptEntry("events", f"fridge-{n}", 1, ((1, 1),)) for n in range(1, 5)]
    assert store.confirm(doors, 101.0) == [bundle]
    assert bundle.confirmed_at == 101.0 and not store.outbox
    store.confirm(doors, 102.0)  # a receipt for a republished copy
    assert store.duplicate_receipts == 4


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
