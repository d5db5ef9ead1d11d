"""The compact format (version 2): golden bytes, round trips, and what it refuses."""

from __future__ import annotations

import math
import zlib
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xiaodian.wire import compact, payloads
from xiaodian.wire.payloads import PayloadError, ReceiptEntry

TOPIC = "xd/v1/store-001/bundle"


def _readings(n: int = 3) -> list[dict[str, Any]]:
    return [payloads.reading_record(s, 100 + s, 3_600_000 + 10_000 * s,
                                    1.76e9 + 10 * s + 0.004 * s, True,
                                    [(0, "ok", 3.0 + s / 16), (1, "ok", 3.5)])
            for s in range(1, n + 1)]


DOOR = payloads.event_record(7, "door", 9, 3_650_000, 1.76e9 + 50.25, True, {"open": True})

# Golden vectors: the bytes the format is, so an accidental change of layout fails here.
# Plain (no deflate): the exact encoding of three readings of fridge-1, boot 2.
GOLDEN_PLAIN = bytes.fromhex(
    "2093a973746f72652d3030319199a86672696467652d3102930101019365010193ce00371590cd2710"
    "cd271093cf00000199c82ce7140404909293009093310101930190933800009090")
# Deflated, the same readings plus a door event (decoded, never re-encoded: another zlib
# may pick other, equally valid, bytes).
GOLDEN_DEFLATE = bytes.fromhex(
    "219bbcb2b824bf2855d7c0c070e2cc1569459929e9a9ba864c9319191927a702f1390673d10967d50580"
    "68f2790606c69927749e8bb0b04c98349961c26443a002c609932d181826206b9ec83e71494a7e7ed144"
    "ce8940ed1b2f4c8468d46df19a30f1086fb5527e416a9e92554951696a2d00")
GOLDEN_RECEIPT = bytes.fromhex(
    "2092a973746f72652d3030319194a872656164696e6773a86672696467652d3102920103")


def test_golden_plain_bytes_are_the_format() -> None:
    assert compact.bundle_payload("store-001", [("readings", "fridge-1", 2, _readings())],
                                  compress=False) == GOLDEN_PLAIN


def test_golden_deflated_bundle_decodes_to_the_records() -> None:
    readings, events = compact.parse_bundle(TOPIC, GOLDEN_DEFLATE)
    assert (readings.kind, readings.device, readings.boot) == ("readings", "fridge-1", 2)
    assert [r.seq for r in readings.records] == [1, 2, 3]
    assert [r.fseq for r in readings.records] == [101, 102, 103]
    assert [r.wall for r in readings.records] == [1.76e9 + 10.004, 1.76e9 + 20.008,
                                                  1.76e9 + 30.012]
    assert [r.probes[0].celsius for r in readings.records] == [3.0625, 3.125, 3.1875]
    assert events.records == (payloads.Event(7, "door", 1.76e9 + 50.25, True, {"open": True},
                                             9, 3_650_000),)


def test_golden_receipt() -> None:
    entry = ReceiptEntry("readings", "fridge-1", 2, ((1, 3),))
    assert compact.receipts_payload("store-001", [entry]) == GOLDEN_RECEIPT
    assert compact.parse_receipts("xd/v1/store-001/receipts", GOLDEN_RECEIPT) == (entry,)


def test_same_records_as_json() -> None:
    """Version 2 carries what version 1 does (terminal time to the millisecond)."""
    recs = _readings(6)
    v1 = payloads.parse("xd/v1/store-001/telemetry",
                        payloads.batch_payload("readings", "store-001", "fridge-1", 2, recs))
    (v2,) = compact.parse_bundle(TOPIC, compact.bundle_payload(
        "store-001", [("readings", "fridge-1", 2, recs)]))
    assert isinstance(v1, payloads.Batch)
    assert [msgspec.structs.replace(r, wall=round(r.wall, 3)) for r in v1.records] == list(
        v2.records)


def test_a_minute_of_four_fridges_is_far_smaller_than_json() -> None:
    streams = [("readings", f"fridge-{f}", 1, _readings(24)) for f in range(1, 5)]
    json_bytes = sum(len(payloads.batch_payload("readings", "store-001", d, b, r))
                     for _, d, b, r in streams)
    packed = compact.bundle_payload("store-001", streams)  # type: ignore[arg-type]
    assert len(packed) * 10 < json_bytes


# ---------------------------------------------------------------- round trip

probes_st = st.lists(
    st.tuples(st.sampled_from(payloads.PROBE_STATUS),
              st.one_of(st.none(), st.integers(-40 * 16, 120 * 16).map(lambda t: t / 16),
                        st.floats(-50, 150, allow_nan=False))),
    min_size=0, max_size=3)


@st.composite
def reading_streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 12))
    seq = draw(st.integers(1, 2**40))
    dev = draw(st.integers(0, 2**40))
    wall_ms = draw(st.integers(0, 2**41))
    out = []
    for _ in range(n):
        probes = draw(probes_st)
        out.append(payloads.reading_record(seq, draw(st.integers(0, 0xFFFF)), dev,
                                           wall_ms / 1000,
                                           draw(st.booleans()),
                                           [(i, s, c) for i, (s, c) in enumerate(probes)]))
        seq += draw(st.integers(1, 3))
        dev += draw(st.integers(-5, 20_000))
        dev = max(dev, 0)
        wall_ms += draw(st.integers(-2000, 20_000))
    return out


@st.composite
def event_streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 10))
    seq = draw(st.integers(1, 2**40))
    out = []
    json_value = st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1),
                  st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8)),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5),
                                                                   inner, max_size=3),
        max_leaves=8)
    for _ in range(n):
        out.append(payloads.event_record(
            seq, draw(st.sampled_from(["door", "compressor", "scan", "stock"])),
            draw(st.one_of(st.none(), st.integers(0, 0xFFFF))),
            draw(st.one_of(st.none(), st.integers(0, 2**50))),
            draw(st.integers(0, 2**41)) / 1000, draw(st.booleans()),
            draw(st.dictionaries(st.text(max_size=6), json_value, max_size=4))))
        seq += draw(st.integers(1, 4))
    return out


@settings(max_examples=60, deadline=None)
@given(reading_streams(), event_streams(), st.booleans())
def test_round_trip(readings: list[dict[str, Any]], events: list[dict[str, Any]],
                    deflate: bool) -> None:
    """Whatever version 1 can say, version 2 says the same (times to the millisecond):
    values off the 1/16 °C grid and odd probe sets go in the `extra` part, exactly."""
    packed = compact.bundle_payload(
        "store-001", [("readings", "fridge-1", 3, readings), ("events", "scanner-1", 3, events)],
        compress=deflate)
    got_r, got_e = compact.parse_bundle(TOPIC, packed)
    want_r = payloads.convert(readings, tuple[payloads.Reading, ...])
    want_e = payloads.convert(events, tuple[payloads.Event, ...])
    assert sorted(got_r.records, key=lambda r: r.seq) == list(want_r)
    assert list(got_e.records) == list(want_e)


def test_aggregates_travel_in_extra() -> None:
    agg = {"seq": 10, "fseq": 5, "dev_ms": 1000, "wall": 1.7e9, "synced": True,
           "probes": [[0, "ok", 3.1]], "seq_last": 12,
           "agg": {"count": 3, "dev_ms_last": 21000, "wall_last": 1.7e9 + 20,
                   "fseq_last": 7, "probes": [[0, 3.0, 3.1, 3.2, 3, 3]]}}
    (batch,) = compact.parse_bundle(TOPIC, compact.bundle_payload(
        "store-001", [("readings", "fridge-1", 1, [*_readings(2), agg])]))
    assert [r.seq for r in batch.records] == [1, 2, 10]
    assert batch.records[-1].agg is not None and batch.records[-1].seq_last == 12


def test_unfit_values_are_refused_at_the_edge() -> None:
    bad = payloads.event_record(1, "door", None, None, math.inf, True, {})
    with pytest.raises(compact.CompactUnfit):
        compact.bundle_payload("store-001", [("events", "fridge-1", 1, [bad])])
    with pytest.raises(compact.CompactUnfit):
        compact.bundle_payload("store-001", [])


# ---------------------------------------------------------------- strictness


def _plain(body: list[Any]) -> bytes:
    return bytes([0x20]) + msgspec.msgpack.encode(body)


def _stream(**over: Any) -> list[Any]:
    cols = {"device": "fridge-1", "boot": 1, "seq": [1, 1], "fseq": [1, 1],
            "dev_ms": [0, 10_000], "wall_ms": [1_700_000_000_000, 0], "synced": [],
            "probes": [[0, [], [48, 1]]], "extra": []}
    cols.update(over)
    return list(cols.values())


@pytest.mark.parametrize(("payload", "reason"), [
    (b"", "empty"),
    (bytes([0x30]) + b"x", "version 3 is not 2"),
    (bytes([0x27]) + b"x", "unknown compression 7"),
    (bytes([0x21]) + b"not deflate", "not deflate data"),
    (bytes([0x21]) + zlib.compress(b"x" * 10)[2:-4][:-2], "truncated"),
    (bytes([0x20]) + b"\xc1", "not MessagePack"),
    (_plain(["store-002", [_stream()], []]), "does not match topic store"),
    (_plain(["store-001", [], []]), "without streams"),
    (_plain(["store-001", [_stream(fseq=[1])], []]), "fseq: 1 values for 2 records"),
    (_plain(["store-001", [_stream(device="bad id!")], []]), "is not a device id"),
    (_plain(["store-001", [_stream(seq=[-1, 1])], []]), "seq"),
    (_plain(["store-001", [_stream(synced=[5])], []]), "flip positions"),
    (_plain(["store-001", [_stream(probes=[[0, [9, 0], [48, 1]]])], []]), "unknown code"),
    (_plain(["store-001", [_stream(), "extra"], []]), "payload"),
    (_plain(["store-001", [], [["alerts", 1, [1], ["door"], [None], [None], [0], [],
                               [b"{}"]]]]), "carries only alert events"),
    (_plain(["store-001", [], [["fridge-1", 1, [1], ["door"], [None], [None], [0], [],
                               [b'{"a":1,"a":2}']]]]), "duplicate key"),
    (_plain(["store-001", [], [["fridge-1", 1, [1], ["nonsense"], [None], [None], [0], [],
                               [b"{}"]]]]), "type"),
])
def test_bad_input_is_refused_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        compact.parse_bundle(TOPIC, payload)


def test_a_zip_bomb_is_refused() -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = bytes([0x21]) + packer.compress(b"\0" * (compact.MAX_INFLATED + 1)) + packer.flush()
    assert len(bomb) < payloads.MAX_PAYLOAD_BYTES
    with pytest.raises(PayloadError, match="inflates to more than"):
        compact.parse_bundle(TOPIC, bomb)


def test_only_the_bundle_topic_carries_it() -> None:
    good = compact.bundle_payload("store-001", [("readings", "fridge-1", 1, _readings())])
    with pytest.raises(PayloadError, match="travel on topic 'bundle'"):
        compact.parse_bundle("xd/v1/store-001/telemetry", good)
    with pytest.raises(PayloadError):
        compact.parse_receipts("xd/v1/store-002/receipts", GOLDEN_RECEIPT)
