"""Cloud database, the ingest core and exports, on real SQLite files (no broker)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_gateway.config import CloudConfig, CloudSettings
from cloud_gateway.db import Database
from cloud_gateway.export import write_dead_letters, write_readings
from cloud_gateway.ingest import ingest
from xiaodian.config import ConfigError, build, load_config
from xiaodian.wire.payloads import (
    Batch,
    batch_payload,
    event_record,
    parse,
    reading_record,
    state_payload,
)

TELEMETRY = "xd/v1/store-001/telemetry"
EVENTS = "xd/v1/store-001/events"
STATE = "xd/v1/store-001/state"


def readings_payload(seqs: range | list[int], *, store: str = "store-001",
                     device: str = "fridge-1", boot: int = 1) -> bytes:
    records = [
        reading_record(s, s % 65536, 1000 * s, 1_700_000_000.0 + s, True,
                       [(0, "ok", 3.0 + s / 16), (1, "ok", 4.0), (2, "missing", None)])
        for s in seqs
    ]
    return batch_payload("readings", store, device, boot, records)


@pytest.fixture
def db(db_target: Path | str) -> Iterator[Database]:
    """Each test runs on SQLite and on PostgreSQL (conftest.db_target)."""
    with Database.open(db_target) as d:
        yield d


def batch(payload: bytes) -> Batch:
    parsed = parse(TELEMETRY, payload)
    assert isinstance(parsed, Batch)
    return parsed


def test_same_batch_twice_is_stored_once(db: Database) -> None:
    first = batch(readings_payload(range(1, 6)))
    assert db.store_batch(first, 10.0) == (5, 0)
    assert db.store_batch(first, 11.0) == (0, 5)
    # An overlapping batch inserts only the new records.
    assert db.store_batch(batch(readings_payload(range(4, 9))), 12.0) == (3, 2)
    rows = list(db.readings("store-001", "fridge-1"))
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert rows[0]["received_at"] == 10.0  # the first copy is kept, never rewritten


def test_reading_columns_follow_the_contract(db: Database) -> None:
    payload = batch_payload("readings", "store-001", "fridge-1", 3, [
        reading_record(7, 99, 5000, 1_700_000_123.5, False,
                       [(0, "ok", 2.5), (1, "suspect", 85.0)]),
    ])
    assert ingest(db, TELEMETRY, payload, "w1", 42.0).inserted == 1
    (row,) = db.readings("store-001", "fridge-1")
    assert row == {
        "store": "store-001", "device": "fridge-1", "boot": 3, "seq": 7, "fseq": 99,
        "dev_ms": 5000, "wall": 1_700_000_123.5, "synced": False,
        "air_c": 2.5, "product_c": None,  # probe 1 is not "ok": no product value
        "probes": [[0, "ok", 2.5], [1, "suspect", 85.0]], "received_at": 42.0,
        # Unsynchronised: shifted by the clock estimate from this very batch (42 - wall).
        "wall_corrected": 42.0, "time_method": "offset",
    }


def test_events_are_idempotent_and_latest_door_is_reported(db: Database) -> None:
    def door(seq: int, is_open: bool) -> dict[str, object]:
        return event_record(seq, "door", seq, 100 * seq, 1_700_000_000.0 + seq, True,
                            {"open": is_open, "duration_ms": 10})

    payload = batch_payload("events", "store-001", "fridge-1", 1,
                            [door(1, True), door(2, False), door(3, True)])
    assert ingest(db, EVENTS, payload, "w1", 1.0).inserted == 3
    again = ingest(db, EVENTS, payload, "w1", 2.0)
    assert (again.inserted, again.duplicates) == (0, 3)
    (fridge,) = db.fridges("store-001")
    assert fridge["device"] == "fridge-1"
    assert fridge["readings"] == 0 and fridge["latest"] is None
    assert fridge["door"]["seq"] == 3 and fridge["door"]["data"]["open"] is True
    assert fridge["compressor"] is None


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (TELEMETRY, b'{"v":1,"kind":"readings",', "payload is not JSON"),
        (TELEMETRY, readings_payload([1], store="store-002"),
         "payload store 'store-002' does not match topic store 'store-001'"),
        (EVENTS, batch_payload("events", "store-001", "fridge-1", 1, [
            event_record(1, "teleport", None, None, 1.0, True, {})]),
         "records[0].type: invalid enum value 'teleport'"),
        (TELEMETRY, json.dumps({"v": 1, "kind": "gossip", "store": "store-001"}).encode(),
         "kind 'gossip' on topic 'telemetry'"),
        (TELEMETRY, b"\xff\xfe", "payload is not UTF-8"),
    ],
    ids=["malformed-json", "wrong-store", "unknown-event-type", "unknown-kind", "not-utf8"],
)
def test_bad_messages_are_parked_with_their_reason(
    db: Database, topic: str, payload: bytes, reason: str
) -> None:
    outcome = ingest(db, topic, payload, "worker-7", 99.0)
    assert outcome.action == "parked"
    assert reason in outcome.reason
    (letter,) = db.dead_letters()
    assert (letter.topic, letter.payload, letter.worker, letter.received_at) == (
        topic, payload, "worker-7", 99.0)
    assert reason in letter.reason
    assert db.count("readings") == 0 and db.count("events") == 0


def test_state_upsert_never_goes_back_to_an_older_boot(db: Database) -> None:
    def state(online: bool, boot: int) -> bytes:
        return state_payload("store-001", online, boot, 1000.0 + boot, "0.1.0", ["fridge-1"])

    assert ingest(db, STATE, state(True, 2), "w", 1.0).action == "state"
    ingest(db, STATE, state(False, 2), "w", 2.0)  # death of the same boot applies
    (s,) = db.stores()
    assert (s["online"], s["boot"], s["updated_at"]) == (False, 2, 2.0)
    ingest(db, STATE, state(True, 1), "w", 3.0)  # a late copy from an earlier boot does not
    (s,) = db.stores()
    assert (s["online"], s["boot"], s["devices"]) == (False, 2, ["fridge-1"])


def test_readings_cursor_pages_across_boots(db: Database) -> None:
    for boot in (1, 2):
        ingest(db, TELEMETRY, readings_payload(range(1, 4), boot=boot), "w", 1.0)
    order = [(r["boot"], r["seq"]) for r in db.readings("store-001", "fridge-1")]
    assert order == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    page = [(r["boot"], r["seq"]) for r in db.readings("store-001", "fridge-1",
                                                       after=(1, 2), limit=3)]
    assert page == [(1, 3), (2, 1), (2, 2)]


def test_csv_export_has_the_header_and_rows_in_order(db: Database) -> None:
    # Received half a second after the newest record was stamped: a clock to believe.
    ingest(db, TELEMETRY, readings_payload([2, 1], boot=2), "w", 1_700_000_002.5)
    ingest(db, TELEMETRY, readings_payload([5], boot=1), "w", 1_700_000_005.5)
    out = io.StringIO()
    assert write_readings(db.readings("store-001", "fridge-1"), out, "csv") == 3
    lines = out.getvalue().splitlines()
    assert lines[0] == ("store,device,boot,seq,fseq,dev_ms,wall,synced,air_c,product_c,"
                        "wall_corrected,time_method")
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(r["boot"], r["seq"]) for r in rows] == [("1", "5"), ("2", "1"), ("2", "2")]
    assert rows[1] == {"store": "store-001", "device": "fridge-1", "boot": "2", "seq": "1",
                       "fseq": "1", "dev_ms": "1000", "wall": "1700000001.0",
                       "synced": "true", "air_c": "3.0625", "product_c": "4.0",
                       "wall_corrected": "1700000001.0", "time_method": "terminal"}


def test_jsonl_export_keeps_types_and_probes(db: Database) -> None:
    ingest(db, TELEMETRY, readings_payload([1, 2]), "w", 1.0)
    out = io.StringIO()
    write_readings(db.readings("store-001", "fridge-1"), out, "jsonl")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["seq"] == 1 and second["seq"] == 2
    assert first["synced"] is True and first["air_c"] == 3.0625
    assert first["probes"] == [[0, "ok", 3.0625], [1, "ok", 4.0], [2, "missing", None]]


def test_dead_letter_listing_text_and_jsonl(db: Database) -> None:
    ingest(db, TELEMETRY, b"not json\n", "w1", 5.0)
    ingest(db, TELEMETRY, b"\xff", "w1", 6.0)
    text = io.StringIO()
    assert write_dead_letters(db.dead_letters(), text, "text") == 2
    newest, oldest = text.getvalue().splitlines()
    assert newest.startswith("2\t6.000\tw1\txd/v1/store-001/telemetry\tpayload is not UTF-8")
    assert oldest.endswith("\tnot json\\n")
    js = io.StringIO()
    write_dead_letters(db.dead_letters(), js, "jsonl")
    a, b = (json.loads(line) for line in js.getvalue().splitlines())
    assert a["payload_base64"] == "/w==" and b["payload"] == "not json\n"


def test_config_builds_and_names_bad_keys(tmp_path: Path) -> None:
    raw = {
        "cloud": {"db": "cloud.sqlite", "worker_id": "w-1"},
        "mqtt": {"host": "localhost", "port": 8883,
                 "tls": {"ca": "ca.pem", "cert": "c.pem", "key": "c.key"}},
    }
    cfg = build(raw, CloudConfig, tmp_path / "cloud.toml")
    assert cfg.cloud == CloudSettings(db=tmp_path / "cloud.sqlite", worker_id="w-1")
    assert (cfg.cloud.http_host, cfg.cloud.http_port, cfg.cloud.shared_group) == (
        "127.0.0.1", 0, "ingest")
    bad = tmp_path / "bad.toml"
    bad.write_text('[cloud]\ndb = "x.sqlite"\nworker_id = "w"\nshared_group = "a/b"\n'
                   '[mqtt]\nhost = "h"\nport = 1\n[mqtt.tls]\nca = "a"\ncert = "b"\nkey = "c"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(bad, CloudConfig)
    assert exc.value.key == "cloud.shared_group"
    assert str(bad) in str(exc.value)


def test_the_db_package_keeps_the_old_module_names() -> None:
    """cloud_gateway/db.py became a package: its names are still importable from it."""
    import cloud_gateway.db as package
    from cloud_gateway.db import reads, schema, writes

    assert package.DeadLetter is reads.DeadLetter
    assert (package.READING_FIELDS, package.GAP_FIELDS) == (reads.READING_FIELDS,
                                                           reads.GAP_FIELDS)
    assert (package.SCHEMA, package.SCHEMA_VERSION, package.TABLES, package.PG_EXTRA_DDL) == (
        schema.SCHEMA, schema.SCHEMA_VERSION, schema.TABLES, schema.PG_EXTRA_DDL)
    assert package.DEFAULT_POLICY is writes.DEFAULT_POLICY
    assert (package.INSERT_SQL, package.INSERT_AGGREGATE_SQL, package.MAX_PARKED_BYTES) == (
        writes.INSERT_SQL, writes.INSERT_AGGREGATE_SQL, writes.MAX_PARKED_BYTES)
    assert (package.AIR_PROBE, package.PRODUCT_PROBE) == (0, 1)
    assert issubclass(package.Database, writes.IngestWrites)
    assert issubclass(package.Database, reads.ApiReads)
