"""Pickup codes: issue/verify round trip, every refusal, tamper resistance, one redemption."""

from __future__ import annotations

import base64
import contextlib
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.scan import (
    Ed25519PickupCodec,
    PickupCodec,
    PickupError,
    RedeemedCodes,
    ScanError,
    decode_pickup,
    parse_scan,
)
from xiaodian.wire.pickup import ED25519_CODE_LEN, HMAC_CODE_LEN, MAX_CODE_LEN, PREFIX

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
T0 = 1_750_000_000.0  # "now" in these tests
EXPIRES = T0 + 3 * 3600
codec = PickupCodec("store-001", KEY)
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def refused(c: PickupCodec | Ed25519PickupCodec, code: str, now: float = T0) -> str:
    with pytest.raises(PickupError) as exc:
        c.verify(code, now)
    return exc.value.reason


def test_round_trip_and_size() -> None:
    code = codec.issue(4711, EXPIRES, nonce=0xABCDEF)
    assert len(code) == HMAC_CODE_LEN == 52 and code.startswith("PK1:")
    assert set(code[4:]) <= set(ALPHABET)  # QR alphanumeric mode throughout
    ticket = codec.verify(code, T0)
    assert (ticket.store_id, ticket.order_id, ticket.nonce, ticket.key_id) == (
        "store-001",
        4711,
        0xABCDEF,
        0,
    )
    assert ticket.expires_at == int(EXPIRES // 60) * 60
    assert ticket.code == code


def test_byte_layout() -> None:
    code = codec.issue(1, 60 * 1000, nonce=5)
    raw = base64.b32decode(code[4:])
    assert raw[:8] == (1).to_bytes(8, "big")
    assert raw[12:16] == (1000).to_bytes(4, "big")
    assert raw[16] == 0 and raw[17:20] == b"\0\0\5"
    assert len(raw) == 30


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**63 - 1), st.integers(1, 2**32 - 2), st.none() | st.integers(0, 2**24 - 1))
def test_round_trip_any_fields(order_id: int, minutes: int, nonce: int | None) -> None:
    code = codec.issue(order_id, minutes * 60 + 59, nonce)
    ticket = codec.verify(code, minutes * 60 - 1)
    assert ticket.order_id == order_id and ticket.expires_at == minutes * 60
    if nonce is not None:
        assert ticket.nonce == nonce


def test_expiry_rounds_down_and_is_exclusive() -> None:
    code = codec.issue(1, 60 * 1000 + 59)
    codec.verify(code, 60 * 1000 - 0.001)
    assert refused(codec, code, now=60 * 1000) == "expired"


def test_refusals() -> None:
    code = codec.issue(7, EXPIRES)
    assert refused(PickupCodec("store-002", KEY), code) == "wrong_store"
    assert refused(PickupCodec("store-001", OTHER_KEY), code) == "bad_mac"
    assert refused(PickupCodec("store-001", KEY, key_id=1), code) == "unknown_key"
    assert refused(codec, code, now=EXPIRES + 60) == "expired"
    assert refused(codec, code[:-1]) == "malformed"
    assert refused(codec, code + "A") == "malformed"
    assert refused(codec, code.lower()) == "malformed"
    assert refused(codec, "PK2:" + code[4:]) == "malformed"
    assert refused(codec, code + "=" * 4) == "malformed"
    assert refused(codec, code + "A" * MAX_CODE_LEN) == "oversize"


def test_messages_are_for_the_clerk() -> None:
    code = codec.issue(7, 1_750_003_600)  # 2025-06-15 16:06:40 UTC, kept to the minute
    with pytest.raises(PickupError, match="for another store"):
        PickupCodec("store-002", KEY).verify(code, T0)
    with pytest.raises(PickupError, match="expired at 2025-06-15 16:06 UTC"):
        codec.verify(code, 1_750_010_000)


def test_forged_expiry_is_called_forged_not_expired() -> None:
    code = PickupCodec("store-001", OTHER_KEY).issue(7, T0 - 60)
    assert refused(codec, code) == "bad_mac"


def test_every_single_character_change_is_refused() -> None:
    code = codec.issue(123456789, EXPIRES, nonce=42)
    for i, ch in enumerate(code):
        for other in ALPHABET + ":1a=":
            if other != ch:
                changed = code[:i] + other + code[i + 1 :]
                with pytest.raises(PickupError):
                    codec.verify(changed, T0)


def test_key_rotation_accepts_the_previous_key() -> None:
    old = PickupCodec("store-001", KEY, key_id=3).issue(1, EXPIRES)
    rotated = PickupCodec("store-001", OTHER_KEY, key_id=4, keys={3: KEY})
    assert rotated.verify(old, T0).key_id == 3
    assert rotated.verify(rotated.issue(2, EXPIRES), T0).key_id == 4


def test_issue_refuses_out_of_range_fields() -> None:
    with pytest.raises(ValueError, match="order_id"):
        codec.issue(2**63, EXPIRES)
    with pytest.raises(ValueError, match="nonce"):
        codec.issue(1, EXPIRES, nonce=2**24)
    with pytest.raises(ValueError, match="expires_at"):
        codec.issue(1, -60)
    with pytest.raises(ValueError, match="key 0"):
        PickupCodec("s", b"short")


def test_scan_parse_sees_the_structure_only() -> None:
    code = codec.issue(99, EXPIRES, nonce=1)
    scan = parse_scan("]Q1" + code + "\r\n")
    assert scan.kind == "pickup" and scan.symbology == "Q1"
    assert scan.pickup is not None and scan.pickup.order_id == 99
    assert scan.to_dict()["pickup"]["verified"] is False
    with pytest.raises(ScanError) as exc:
        parse_scan("]Q1PK1:NOTACODE")
    assert exc.value.reason == "malformed"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200) | st.text(alphabet=ALPHABET + "=", max_size=140).map(PREFIX.__add__))
def test_verify_never_raises_anything_but_pickup_error(text: str) -> None:
    with contextlib.suppress(PickupError):
        codec.verify(text, T0)


# Ed25519: the cloud signs, the terminal holds only the public key.
PRIVATE = Ed25519PrivateKey.from_private_bytes(bytes(32))
SIGNER = Ed25519PickupCodec("store-001", {0: PRIVATE.public_key()}, private_key=PRIVATE)
TERMINAL = Ed25519PickupCodec("store-001", {0: PRIVATE.public_key()})


def test_ed25519_round_trip_and_refusals() -> None:
    code = SIGNER.issue(4711, EXPIRES, nonce=9)
    assert len(code) == ED25519_CODE_LEN == 139
    assert TERMINAL.verify(code, T0).order_id == 4711
    with pytest.raises(ValueError, match="private key"):
        TERMINAL.issue(1, EXPIRES)
    other = Ed25519PrivateKey.from_private_bytes(bytes([1] * 32))
    forged = Ed25519PickupCodec("store-001", {0: other.public_key()}, private_key=other)
    assert refused(TERMINAL, forged.issue(4711, EXPIRES)) == "bad_mac"
    assert refused(TERMINAL, codec.issue(1, EXPIRES)) == "malformed"  # HMAC code here
    assert refused(codec, code) == "malformed"
    assert refused(TERMINAL, code, now=EXPIRES + 60) == "expired"


def test_ed25519_single_character_changes_including_padding_bits() -> None:
    code = SIGNER.issue(5, EXPIRES)
    # 84 bytes leave 3 unused bits in the last character: its other encodings are refused.
    for i in (4, 20, 40, len(code) - 1):
        for other in ALPHABET:
            if other != code[i]:
                with pytest.raises(PickupError):
                    TERMINAL.verify(code[:i] + other + code[i + 1 :], T0)


def test_decode_is_unverified_structure() -> None:
    body = decode_pickup(codec.issue(8, EXPIRES, nonce=3))
    assert (body.order_id, body.nonce, body.scheme, len(body.tag)) == (8, 3, "hmac", 10)


def test_redeemed_twice_is_refused_with_the_time(tmp_path: Path) -> None:
    db = tmp_path / "edge.db"
    conn = sqlite3.connect(db)
    redeemed = RedeemedCodes(conn)
    ticket = codec.verify(codec.issue(10, EXPIRES, nonce=1), T0)
    redeemed.redeem(ticket, now=T0)
    with pytest.raises(PickupError) as exc:
        redeemed.redeem(ticket, now=T0 + 5)
    assert exc.value.reason == "already_redeemed" and exc.value.redeemed_at == T0
    assert "already picked up at" in exc.value.message
    # A code reissued for the same order (new nonce) cannot take the goods a second time.
    again = codec.verify(codec.issue(10, EXPIRES, nonce=2), T0)
    with pytest.raises(PickupError):
        redeemed.redeem(again, now=T0 + 6)
    redeemed.redeem(codec.verify(codec.issue(11, EXPIRES), T0), now=T0 + 7)
    conn.close()
    # Remembered across a restart of the terminal.
    reopened = RedeemedCodes(sqlite3.connect(db))
    assert reopened.redeemed_at("store-001", 10) == T0
    assert reopened.redeemed_at("store-001", 12) is None
