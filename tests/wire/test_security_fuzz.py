"""Hostile input: generated inputs for every parser that reads bytes from outside.

Each test states what may escape (nothing, or one documented error type). The example
count per test is XD_FUZZ_EXAMPLES (default 1000, about 10 s in all); docs/security.md
records a long run. Hypothesis's deadline (1 s per input) turns a hang into a failure.
"""

from __future__ import annotations

import json
import os
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from edge.interpret import MAX_SCAN_LINE, LineSplitter
from edge.replay_store import ReplayStore
from firmware_bridge import codec
from xiaodian.wire import payloads, retail
from xiaodian.wire.commands import (
    ACTIONS,
    SIGNING_CONTEXT,
    WIRE_MAGIC,
    CommandVerifier,
    Reason,
    Verdict,
    key_id_for,
    sign_command,
)

EXAMPLES = int(os.environ.get("XD_FUZZ_EXAMPLES", "1000"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=1000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,  # no example files left in the source tree
)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(32))
KID = key_id_for(KEY.public_key())
T0 = 1_750_000_000

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)


# --- cloud side: xiaodian.wire.payloads.parse ---------------------------------------------------

topics = st.sampled_from(
    [
        "xd/v1/store-001/telemetry",
        "xd/v1/store-001/events",
        "xd/v1/store-001/state",
        "xd/v1/store-001/cmd/res",
        "xd/v1//telemetry",
    ]
) | st.text(max_size=40)


def _payload_like() -> st.SearchStrategy[bytes]:
    record = st.fixed_dictionaries(
        {"seq": json_scalars, "fseq": json_scalars, "dev_ms": json_scalars},
        optional={"wall": json_scalars, "synced": json_scalars, "probes": json_values,
                  "type": st.sampled_from(sorted(payloads.EVENT_TYPES)), "data": json_values},
    )  # fmt: skip
    body = st.fixed_dictionaries(
        {
            "v": st.sampled_from([1, 1, 2, "1"]),
            "store": st.sampled_from(["store-001", "store-002"]),
            "kind": st.sampled_from(["readings", "events", "state", "x"]),
        },
        optional={"device": json_scalars, "boot": json_scalars,
                  "records": st.lists(record, max_size=4), "online": json_scalars},
    )  # fmt: skip
    return body.map(lambda b: json.dumps(b).encode())


@FUZZ
@given(topic=topics, payload=st.binary(max_size=2048) | _payload_like())
def test_payload_parse_raises_only_payload_error(topic: str, payload: bytes) -> None:
    try:
        result = payloads.parse(topic, payload)
    except payloads.PayloadError as exc:
        assert str(exc)  # a reason to store with the dead letter
    else:
        assert isinstance(result, payloads.Batch | payloads.State)


def test_payload_parse_size_limit_and_deep_nesting() -> None:
    topic = "xd/v1/store-001/telemetry"
    for payload in (b" " * (payloads.MAX_PAYLOAD_BYTES + 1), b"[" * 100_000):
        try:
            payloads.parse(topic, payload)
        except payloads.PayloadError:
            continue
        raise AssertionError("accepted")


# --- retail messages: xiaodian.wire.retail (both directions) -------------------------------------

retail_topics = st.sampled_from(["xd/v1/store-001/orders", "xd/v1/store-001/catalogue",
                                 "xd/v1/store-002/orders", "xd/v1/x/y"]) | st.text(max_size=30)


def _downlink_like() -> st.SearchStrategy[bytes]:
    line = st.fixed_dictionaries({}, optional={"item": json_scalars | st.just("06901234567892"),
                                               "qty": json_scalars})
    location = st.fixed_dictionaries({}, optional={"fridge": json_scalars,
                                                   "lane": json_scalars,
                                                   "unit_grams": json_scalars})
    item = st.fixed_dictionaries(
        {}, optional={"item": json_scalars | st.sampled_from(["06901234567892", "in:1"]),
                      "name": json_scalars, "unit": st.sampled_from(["piece", "weight", 1]),
                      "shelf_life_days": json_scalars, "storage": json_scalars,
                      "location": st.none() | location | json_scalars})
    body = st.fixed_dictionaries(
        {"v": st.sampled_from([1, 1, 2, "1"]), "store": st.sampled_from(["store-001", "s"]),
         "type": st.sampled_from(["order", "cancel", "catalogue", "x"])},
        optional={"id": json_scalars, "order": json_scalars, "mode": json_scalars,
                  "customer": json_scalars, "created": json_scalars, "expires": json_scalars,
                  "lines": st.lists(line, max_size=4) | json_scalars, "reason": json_scalars,
                  "version": json_scalars, "items": st.lists(item, max_size=4) | json_scalars},
    )  # fmt: skip
    return body.map(lambda b: json.dumps(b).encode())


@FUZZ
@given(topic=retail_topics, payload=st.binary(max_size=1024) | _downlink_like())
def test_retail_downlink_parse_raises_only_payload_error(topic: str, payload: bytes) -> None:
    try:
        result = retail.parse_downlink(topic, payload)
    except payloads.PayloadError as exc:
        assert str(exc)  # parked at the store with this reason
    else:
        assert isinstance(result, retail.Catalogue | retail.Order | retail.Cancel)


@FUZZ
@given(data=st.dictionaries(st.sampled_from(
    ["id", "kind", "item", "qty", "grams", "batch", "expiry", "order", "note", "state",
     "differences", "lane", "verdict", "expected_grams", "measured_grams", "window_days",
     "items", "result", "reason"]), json_values, max_size=10))
def test_retail_event_parsers_raise_only_payload_error(data: dict[str, Any]) -> None:
    for parse in (retail.parse_movement, retail.parse_progress, retail.parse_lane_check,
                  retail.parse_expiry, retail.parse_pickup_refusal):
        try:
            parse(data)
        except payloads.PayloadError as exc:
            assert str(exc)  # parked in the cloud with this reason


# --- the wire: firmware_bridge.codec -------------------------------------------------------


def _valid_frames() -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda t, seq, p: codec.encode_frame(t, seq, p),
        st.integers(0, 255),
        st.integers(0, 0xFFFF),
        st.binary(max_size=codec.MAX_PAYLOAD),
    )


@FUZZ
@given(chunks=st.lists(st.binary(max_size=600) | _valid_frames(), max_size=8))
def test_frame_decoder_never_raises_and_stays_bounded(chunks: list[bytes]) -> None:
    decoder = codec.FrameDecoder()
    for chunk in chunks:
        for frame in decoder.feed(chunk):
            assert len(frame.payload) <= codec.MAX_PAYLOAD
        assert len(decoder._buf) <= codec.MAX_ENCODED
    assert all(v >= 0 for v in decoder.stats().values())


@FUZZ
@given(frames=st.lists(_valid_frames(), min_size=1, max_size=4), junk=st.binary(max_size=300))
def test_frame_decoder_recovers_after_garbage(frames: list[bytes], junk: bytes) -> None:
    decoder = codec.FrameDecoder()
    decoder.feed(junk + b"\x00")  # resynchronise at the next delimiter
    got = decoder.feed(b"".join(frames))
    assert len(got) == len(frames)


@FUZZ
@given(msg_type=st.integers(0, 255), payload=st.binary(max_size=300))
def test_decode_message_returns_dict_or_none(msg_type: int, payload: bytes) -> None:
    result = codec.decode_message(msg_type, payload)
    assert result is None or (isinstance(result, dict) and "type" in result)


# --- the scanner: edge.interpret.LineSplitter ----------------------------------------------


@FUZZ
@given(chunks=st.lists(st.binary(max_size=1200), max_size=6))
def test_scan_lines_are_bounded(chunks: list[bytes]) -> None:
    splitter = LineSplitter()
    for chunk in chunks:
        for line in splitter.feed(chunk):
            assert 0 < len(line) <= MAX_SCAN_LINE
            assert b"\r" not in line and b"\n" not in line


# --- the store: xiaodian.wire.commands.CommandVerifier ------------------------------------------


def _verifier() -> CommandVerifier:
    return CommandVerifier(
        {KID: KEY.public_key()}, "store-001", lambda: T0, ReplayStore(":memory:")
    )


def _check(verdict: Verdict) -> None:
    event(verdict.reason.value)  # the reason mix shows in --hypothesis-show-statistics
    assert isinstance(verdict, Verdict) and isinstance(verdict.reason, Reason)
    assert verdict.ok or verdict.detail


GOOD = sign_command(
    KEY, KID, target="store-001", action="set_point",
    params={"device": "fridge-1", "tenths_c": 30}, issued_at=T0, command_id="fixed",
).wire  # fmt: skip


@FUZZ
@given(wire=st.binary(max_size=5000) | st.binary().map(lambda b: WIRE_MAGIC + b))
def test_verifier_refuses_random_bytes(wire: bytes) -> None:
    verdict = _verifier().verify(wire)
    _check(verdict)
    assert not verdict.ok


@FUZZ
@given(
    data=st.data(),
    op=st.sampled_from(["flip", "truncate", "insert", "delete"]),
)
def test_verifier_refuses_every_mutation(data: st.DataObject, op: str) -> None:
    wire = bytearray(GOOD)
    i = data.draw(st.integers(0, len(wire) - 1))
    if op == "flip":
        wire[i] ^= data.draw(st.integers(1, 255))
    elif op == "truncate":
        del wire[i:]
    elif op == "insert":
        wire[i:i] = data.draw(st.binary(min_size=1, max_size=8))
    else:
        del wire[i : i + data.draw(st.integers(1, 8))]
    verdict = _verifier().verify(bytes(wire))
    _check(verdict)
    assert not verdict.ok


def mostly(valid: object, bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`valid` three times in four, so inputs get past the first check and reach the rest."""
    return st.one_of(st.just(valid), st.just(valid), st.just(valid), bad)


param_dicts = st.dictionaries(
    st.sampled_from(["device", "seconds", "tenths_c", "minutes", "scope", "x"]),
    st.one_of(
        st.integers(-400, 200),
        st.sampled_from(["fridge-1", "summary", "full", "agent"]),
        json_scalars,
    ),
    max_size=3,
)
body_dicts = st.fixed_dictionaries(
    {
        "action": st.sampled_from([*ACTIONS, "x"]),
        "exp": mostly(T0 + 300, st.integers(T0 - 1000, T0 + 100_000) | json_scalars),
        "iat": mostly(T0, st.integers(T0 - 1000, T0 + 1000) | json_scalars),
        "id": mostly("cmd-1", st.text(max_size=70)),
        "kid": st.just(KID),
        "nonce": mostly("0" * 32, st.text(max_size=40)),
        "params": st.one_of(*[param_dicts] * 3, json_values),
        "target": mostly("store-001", st.sampled_from(["store-002"]) | st.text(max_size=10)),
        "v": mostly(1, st.sampled_from([0, True, 1.0])),
    }
)


@FUZZ
@given(body=body_dicts, compact=st.booleans(), ascii_only=st.booleans())
def test_verifier_on_authentic_but_arbitrary_bodies(
    body: dict[str, Any], compact: bool, ascii_only: bool
) -> None:
    """Signed with the real key: every value rule, not the signature, has to hold the line."""
    text = json.dumps(
        body, sort_keys=True, ensure_ascii=ascii_only,
        separators=(",", ":") if compact else None,
    )  # fmt: skip
    raw = text.encode("utf-8", "surrogatepass")
    wire = WIRE_MAGIC + KEY.sign(SIGNING_CONTEXT + raw) + raw
    verdict = _verifier().verify(wire)
    _check(verdict)
    if verdict.ok:
        assert verdict.command is not None
        assert verdict.command.body() == raw  # accepted only in canonical form
        assert verdict.command.target == "store-001"
