"""The edge↔cloud message format: what the edge builds, the cloud parses; the rest is refused."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xiaodian.wire import payloads
from xiaodian.wire.payloads import PayloadError

TOPIC = "xd/v1/store-001/telemetry"


def _readings(**over: object) -> bytes:
    rec = payloads.reading_record(
        7, 65535, 120_000, 1.7e9, True, [(0, "ok", 3.0625), (1, "missing", None)]
    )
    body = json.loads(payloads.batch_payload("readings", "store-001", "fridge-1", 3, [rec]))
    body.update(over)
    return json.dumps(body).encode()


def test_round_trip_of_a_reading_batch() -> None:
    batch = payloads.parse(TOPIC, _readings())
    assert isinstance(batch, payloads.Batch)
    assert (batch.kind, batch.store, batch.device, batch.boot) == (
        "readings",
        "store-001",
        "fridge-1",
        3,
    )
    r = batch.records[0]
    assert isinstance(r, payloads.Reading)
    assert (r.seq, r.fseq, r.dev_ms, r.synced) == (7, 65535, 120_000, True)
    assert r.probes == (payloads.Probe(0, "ok", 3.0625), payloads.Probe(1, "missing", None))


def test_state_round_trip() -> None:
    raw = payloads.state_payload("store-001", False, 4, 1.7e9, "0.1.0", ["fridge-1"])
    state = payloads.parse("xd/v1/store-001/state", raw)
    assert state == payloads.State("store-001", False, 4, 1.7e9, "0.1.0", ("fridge-1",))


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (TOPIC, b"{not json", "not JSON"),
        (TOPIC, b"\xff\xfe", "not UTF-8"),
        (TOPIC, _readings(store="store-002"), "does not match topic store"),
        (TOPIC, _readings(kind="events"), "kind 'events' on topic 'telemetry'"),
        (TOPIC, _readings(v=2), "unsupported format version"),
        (TOPIC, _readings(records=[]), r"records: expected `array` of length >= 1"),
        (TOPIC, _readings(boot=-1), r"boot: expected `int` >= 0"),
        (TOPIC, _readings().replace(b"3.0625", b"NaN"), "NaN"),
        (TOPIC, _readings().replace(b"3.0625", b"1e400"), "out of range"),
        (TOPIC, _readings()[:-1] + b', "boot": 4}', "duplicate key 'boot'"),
        (TOPIC, _readings().replace(b'"seq": 7', b'"seq": 7, "seq_last": 9'), "come together"),
        ("xd/v1/store-001/other", _readings(), "no messages expected"),
        ("elsewhere/store-001/telemetry", _readings(), "unexpected topic"),
        (TOPIC, b" " * (payloads.MAX_PAYLOAD_BYTES + 1), "exceeds"),
    ],
)
def test_refusals_say_why(topic: str, payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        payloads.parse(topic, payload)


@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_escape_as_anything_but_payload_error(data: bytes) -> None:
    with contextlib.suppress(PayloadError):
        payloads.parse(TOPIC, data)


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=8),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
        max_leaves=30,
    )
)
def test_arbitrary_json_never_escapes_as_anything_but_payload_error(value: object) -> None:
    body = {
        "v": 1,
        "kind": "readings",
        "store": "store-001",
        "device": "fridge-1",
        "boot": 1,
        "records": [value],
    }
    with contextlib.suppress(PayloadError):
        payloads.parse(TOPIC, json.dumps(body).encode())


def _events(device: str, type_: str) -> bytes:
    rec = payloads.event_record(1, type_, None, None, 1.7e9, True, {"fridge": "fridge-1"})
    return payloads.batch_payload("events", "store-001", device, 3, [rec])


def test_duplicate_keys_are_refused_at_any_depth() -> None:
    body = _events("fridge-1", "door").replace(b'{"fridge":"fridge-1"}',
                                                b'{"fridge":"fridge-1","fridge":"fridge-2"}')
    with pytest.raises(PayloadError, match="duplicate key 'fridge'") as err:
        payloads.parse("xd/v1/store-001/events", body)
    assert err.value.reason == "duplicate_key"
    view = memoryview(_events("fridge-1", "door"))  # what some MQTT clients hand over
    assert isinstance(payloads.parse("xd/v1/store-001/events", view), payloads.Batch)  # type: ignore[arg-type]


def test_alerts_have_their_own_topic_and_it_carries_nothing_else() -> None:
    assert payloads.leaf_for("events", payloads.ALERTS_DEVICE) == "alerts"
    assert payloads.leaf_for("events", "fridge-1") == "events"
    assert payloads.leaf_for("readings", "fridge-1") == "telemetry"
    batch = payloads.parse("xd/v1/store-001/alerts", _events("alerts", "alert"))
    assert isinstance(batch, payloads.Batch) and batch.device == "alerts"
    for device, type_ in (("fridge-1", "alert"), ("alerts", "door")):
        with pytest.raises(PayloadError, match="only alert events"):
            payloads.parse("xd/v1/store-001/alerts", _events(device, type_))
    # An agent from before the alerts topic sent them with the fridge's events: still taken.
    assert isinstance(payloads.parse("xd/v1/store-001/events", _events("fridge-1", "alert")),
                      payloads.Batch)
