"""The edge outbox: records and outbox rows written together, deleted only on acknowledgement."""

from __future__ import annotations

from pathlib import Path

from edge.store import EdgeStore, NewEvent, NewReading


def _reading(device: str, dev_ms: int) -> NewReading:
    return NewReading(
        device,
        fseq=dev_ms // 1000,
        dev_ms=dev_ms,
        wall=1.7e9 + dev_ms / 1000,
        synced=True,
        probes=[(0, "ok", 3.0625), (1, "ok", 3.5)],
        dev_boot=1,
    )


def test_boot_number_increases_with_every_open(tmp_path: Path) -> None:
    db = tmp_path / "edge.sqlite3"
    boots = []
    for _ in range(3):
        store = EdgeStore(db)
        boots.append(store.boot)
        store.close()
    assert boots == [1, 2, 3]


def test_batches_follow_sequence_and_stay_until_acknowledged(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "edge.sqlite3")
    store.add(_reading("fridge-1", ms) for ms in range(0, 50_000, 10_000))
    first = store.next_batch("readings", "fridge-1", (0, 0), limit=3)
    assert first is not None
    assert [r["seq"] for r in first.records] == [1, 2, 3]
    assert first.records[0]["probes"] == [[0, "ok", 3.0625], [1, "ok", 3.5]]
    # Nothing acknowledged yet: the same rows are offered again from the start.
    again = store.next_batch("readings", "fridge-1", (0, 0), limit=3)
    assert again == first
    rest = store.next_batch("readings", "fridge-1", (first.boot, 3), limit=10)
    assert rest is not None and [r["seq"] for r in rest.records] == [4, 5]
    assert store.acknowledge(first.keys) == 3
    after = store.next_batch("readings", "fridge-1", (0, 0), limit=10)
    assert after is not None and [r["seq"] for r in after.records] == [4, 5]
    assert store.counts()["fridge-1"] == {"readings_stored": 5, "readings_pending": 2}


def test_pending_rows_survive_a_restart_and_batches_never_mix_boots(tmp_path: Path) -> None:
    db = tmp_path / "edge.sqlite3"
    store = EdgeStore(db)
    store.add([_reading("fridge-1", 0), _reading("fridge-1", 10_000)])
    store.close()
    store = EdgeStore(db)  # boot 2
    store.add([_reading("fridge-1", 20_000)])
    batch = store.next_batch("readings", "fridge-1", (0, 0), limit=10)
    assert batch is not None and batch.boot == 1 and len(batch.records) == 2
    nxt = store.next_batch("readings", "fridge-1", (1, 2), limit=10)
    assert nxt is not None and nxt.boot == 2 and [r["seq"] for r in nxt.records] == [1]


def test_events_are_offered_before_readings(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "edge.sqlite3")
    store.add(
        [
            _reading("fridge-1", 0),
            NewEvent("fridge-1", "door", 7, 5_000, 1.7e9, False, {"open": True}),
        ]
    )
    assert store.pending_streams() == [("events", "fridge-1"), ("readings", "fridge-1")]
    ev = store.next_batch("events", "fridge-1", (0, 0), limit=10)
    assert ev is not None
    assert ev.records == [
        {
            "seq": 1,
            "type": "door",
            "fseq": 7,
            "dev_ms": 5_000,
            "wall": 1.7e9,
            "synced": False,
            "data": {"open": True},
        }
    ]


def test_prune_keeps_unacknowledged_history(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "edge.sqlite3")
    store.add([_reading("fridge-1", 0), _reading("fridge-1", 10_000)])
    batch = store.next_batch("readings", "fridge-1", (0, 0), limit=1)
    assert batch is not None
    store.acknowledge(batch.keys)
    assert store.prune(older_than_wall=2e9) == 1  # only the acknowledged one goes
    assert store.counts()["fridge-1"] == {"readings_stored": 1, "readings_pending": 1}


def test_a_record_the_device_sends_again_is_stored_once_and_receipted_again(
    tmp_path: Path,
) -> None:
    store = EdgeStore(tmp_path / "edge.sqlite3")
    first = store.add([_reading("fridge-1", 10_000), _reading("fridge-1", 20_000)])
    assert (first.stored, first.duplicates) == (2, 0)
    assert first.durable == {"fridge-1": [(1, 10), (1, 20)]}
    # The receipt was lost: the device resends the second one, then a new one follows.
    again = store.add([_reading("fridge-1", 20_000), _reading("fridge-1", 30_000)])
    assert (again.stored, again.duplicates) == (1, 1)
    assert again.durable == {"fridge-1": [(1, 20), (1, 30)]}  # both may leave the device
    batch = store.next_batch("readings", "fridge-1", (0, 0), limit=10)
    assert batch is not None
    # No hole in the uplink stream where the duplicate was refused.
    assert [r["seq"] for r in batch.records] == [1, 2, 3]
    # After a device reboot the same frame number and time are a different record.
    rebooted = NewReading("fridge-1", 20, 20_000, 1.7e9, True, [(0, "ok", 3.0)], dev_boot=2)
    assert store.add([rebooted]).stored == 1


def test_a_damaged_database_is_kept_aside_and_boots_keep_counting(tmp_path: Path) -> None:
    db = tmp_path / "edge.sqlite3"
    store = EdgeStore(db)
    store.add([_reading("fridge-1", 10_000)])
    store.close()
    store = EdgeStore(db)  # boot 2
    store.close()
    # A power cut at the wrong moment, a failing SD card: the file is garbage now.
    raw = bytearray(db.read_bytes())
    raw[100:4096] = b"\xde\xad" * ((4096 - 100) // 2)
    db.write_bytes(bytes(raw))
    store = EdgeStore(db, now=lambda: 1_790_000_000.0)
    assert store.recovered is not None
    _problem, aside = store.recovered
    assert aside.name == "edge.sqlite3.corrupt-20260921T141320Z"
    assert aside.read_bytes() == bytes(raw)  # kept as it was, for diagnosis
    # A fresh database, but boot 3: boot 1 again would collide with ids the cloud holds.
    assert store.boot == 3
    assert store.counts() == {}
    store.close()


def test_an_unreadable_file_is_moved_aside_too(tmp_path: Path) -> None:
    db = tmp_path / "edge.sqlite3"
    db.write_bytes(b"this is not a database" * 100)
    store = EdgeStore(db)
    assert store.recovered is not None and "not readable" in store.recovered[0]
    assert store.boot == 1


def test_over_budget_confirmed_history_goes_first_then_readings_are_compacted(
    tmp_path: Path,
) -> None:
    store = EdgeStore(tmp_path / "edge.sqlite3")
    # A long outage: a day of 10-s readings waiting for the cloud, plus a door event.
    store.add(_reading("fridge-1", ms) for ms in range(10_000, 86_400_001, 10_000))
    store.add([NewEvent("fridge-1", "door", 7, 5_000, 1.7e9, False, {"open": True}, 1)])
    before = store.used_bytes()
    done = store.enforce_budget(before // 4, bucket_s=600)
    assert store.used_bytes() <= before // 4
    assert done["history_dropped"] == 0  # nothing was confirmed, so nothing could go
    assert done["readings_compacted"] > 0 and done["aggregates"] > 0
    # The event survived untouched.
    ev = store.next_batch("events", "fridge-1", (0, 0), limit=10)
    assert ev is not None and ev.records[0]["data"] == {"open": True}
    # Every reading seq is still accounted for, raw or inside an aggregate, in order.
    covered: list[int] = []
    after = (0, 0)
    while (batch := store.next_batch("readings", "fridge-1", after, limit=500)) is not None:
        for r in batch.records:
            last = r.get("seq_last", r["seq"])
            covered += range(r["seq"], last + 1)
            if "agg" in r:
                agg = r["agg"]
                assert agg["count"] == last - r["seq"] + 1
                (i0, lo, mean, hi, n_ok, n), _ = agg["probes"]
                assert (i0, lo, mean, hi, n_ok, n) == (0, 3.0625, 3.0625, 3.0625, n, n)
        after = (batch.boot, batch.records[-1]["seq"])
    assert covered == list(range(1, 8641))


def test_compacted_batches_parse_in_the_cloud(tmp_path: Path) -> None:
    from xiaodian.wire import payloads

    store = EdgeStore(tmp_path / "edge.sqlite3")
    store.add(_reading("fridge-1", ms) for ms in range(10_000, 7_200_001, 10_000))
    store.enforce_budget(store.used_bytes() // 3, bucket_s=600)
    batch = store.next_batch("readings", "fridge-1", (0, 0), limit=500)
    assert batch is not None
    body = payloads.batch_payload("readings", "store-001", "fridge-1", batch.boot, batch.records)
    parsed = payloads.parse("xd/v1/store-001/telemetry", body)
    assert isinstance(parsed, payloads.Batch)
    aggs = [r for r in parsed.records if isinstance(r, payloads.Reading) and r.agg]
    assert aggs and all(r.seq_last is not None for r in aggs)


def test_an_aggregate_leaves_the_outbox_only_when_its_whole_range_is_confirmed(
    tmp_path: Path,
) -> None:
    from xiaodian.wire.payloads import ReceiptEntry

    store = EdgeStore(tmp_path / "edge.sqlite3")
    store.add(_reading("fridge-1", ms) for ms in range(10_000, 3_600_001, 10_000))
    store.enforce_budget(store.used_bytes() // 3, bucket_s=600)
    batch = store.next_batch("readings", "fridge-1", (0, 0), limit=1)
    assert batch is not None and "seq_last" in batch.records[0]
    first, last = batch.records[0]["seq"], batch.records[0]["seq_last"]
    # Raw readings first..first+4 were in flight when the aggregate was made; their receipt
    # must not take the aggregate (and the readings only it still carries) with it.
    store.confirm([ReceiptEntry("readings", "fridge-1", 1, ((first, first + 4),))])
    again = store.next_batch("readings", "fridge-1", (0, 0), limit=1)
    assert again is not None and again.records[0]["seq"] == first
    store.confirm([ReceiptEntry("readings", "fridge-1", 1, ((first, last),))])
    after = store.next_batch("readings", "fridge-1", (0, 0), limit=1)
    assert after is None or after.records[0]["seq"] > last
