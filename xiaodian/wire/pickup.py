"""Pickup codes: issued by the cloud, shown as a QR code, verified offline at the terminal.

    code = "PK1:" + base32(body + tag), upper case, no padding

    body (20 bytes, big-endian)
      0  u64  order id (< 2**63: it is an SQLite INTEGER on both sides)
      8  4 B  store tag = SHA-256("xiaodian-store\\0" + store id)[:4]
     12  u32  expiry, unix minutes
     16  u8   key id (which per-store key made the tag: lets keys rotate)
     17  3 B  nonce (tells apart codes reissued for the same order)
    tag
     20  10 B HMAC-SHA256(per-store key, "PK1:" + body), truncated      -> 48 characters
     20  64 B Ed25519 signature over "PK1:" + body (public-key variant) -> 135 characters

Why 80 bits of MAC: the key is 256 bits, so a truncated tag does not help anyone recover it;
the only attack is presenting guesses at a terminal, each with a 2**-80 chance. Even a bot
scanning 1000 forgeries a second for ten years gets under 2**-41. 30 bytes encode to exactly
48 base32 characters (no padding bits) and "PK1:" + base32 uses only QR alphanumeric
characters, so the whole code fits a version 3-M QR symbol (29x29 modules, up to 61
characters), easy to scan from a phone in a bright shop. The Ed25519 variant needs a version 6-M
symbol (41x41) but a terminal then holds only public keys, so a stolen terminal cannot mint
codes; HMAC is the default because a per-store key already confines a stolen key to one store.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from xiaodian.wire import ids
from xiaodian.wire.errors import CodeError

PickupReason = Literal[
    "malformed",  # not a well-formed PK1 code (prefix, alphabet, length, padding bits)
    "oversize",  # longer than any code we issue: refused before decoding
    "wrong_store",  # issued for another store
    "unknown_key",  # signed with a key id this terminal does not hold
    "bad_mac",  # MAC or signature does not match: forged or altered
    "expired",  # past its expiry
    "already_redeemed",  # this order was already handed over
]


class PickupError(CodeError):
    """A pickup code that is refused; `redeemed_at` is set for `already_redeemed`."""

    def __init__(
        self, reason: PickupReason, message: str, redeemed_at: float | None = None
    ) -> None:
        super().__init__(reason, message)
        self.redeemed_at = redeemed_at


PREFIX = "PK1:"
_BODY = struct.Struct(">Q4sIB3s")
BODY_LEN = _BODY.size  # 20
MAC_LEN = 10
SIG_LEN = 64
HMAC_CODE_LEN = len(PREFIX) + 48
ED25519_CODE_LEN = len(PREFIX) + 135
# Anything longer is not ours; refuse before decoding so a pasted blob costs nothing.
MAX_CODE_LEN = 160
MIN_KEY_LEN = 16
_BASE32 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
_MAX_ORDER = 2**63 - 1
_MAX_MINUTES = 2**32 - 1

Scheme = Literal["hmac", "ed25519"]


def _check_store(store_id: str) -> str:
    if not ids.is_store_id(store_id):
        raise ValueError(f"store_id: {store_id!r} is not a store id")
    return store_id


def store_tag(store_id: str) -> bytes:
    return hashlib.sha256(b"xiaodian-store\0" + store_id.encode("utf-8")).digest()[:4]


@dataclass(frozen=True)
class PickupBody:
    """The fields of a well-formed code. NOT verified: only `verify` makes a PickupTicket."""

    order_id: int
    store_tag: bytes
    expires_at: int  # unix seconds, a whole minute
    key_id: int
    nonce: int
    scheme: Scheme
    signed: bytes  # what the tag covers: PREFIX + body
    tag: bytes


@dataclass(frozen=True)
class PickupTicket:
    """A code this terminal verified: right store, genuine, not expired (redemption is separate)."""

    store_id: str
    order_id: int
    expires_at: int
    nonce: int
    key_id: int
    code: str


def decode_pickup(code: str) -> PickupBody:
    """Structure of a `PK1:` code; raises PickupError (malformed, oversize) and nothing else."""
    if len(code) > MAX_CODE_LEN:
        raise PickupError("oversize", f"pickup code too long ({len(code)} characters)")
    if not code.startswith(PREFIX):
        raise PickupError("malformed", "not a pickup code (no PK1: prefix)")
    text = code[len(PREFIX) :]
    if len(code) not in (HMAC_CODE_LEN, ED25519_CODE_LEN) or not _BASE32.issuperset(text):
        raise PickupError("malformed", "damaged pickup code (wrong length or characters)")
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except binascii.Error:
        raise PickupError("malformed", "damaged pickup code (not base32)") from None
    # b32decode ignores unused low bits of the last character: insist on the one encoding.
    if base64.b32encode(raw).decode("ascii").rstrip("=") != text:
        raise PickupError("malformed", "damaged pickup code (non-canonical base32)")
    order_id, tag4, minutes, key_id, nonce = _BODY.unpack_from(raw)
    if order_id > _MAX_ORDER:
        raise PickupError("malformed", "damaged pickup code (order id out of range)")
    scheme: Scheme = "hmac" if len(raw) == BODY_LEN + MAC_LEN else "ed25519"
    return PickupBody(
        order_id=order_id,
        store_tag=tag4,
        expires_at=minutes * 60,
        key_id=key_id,
        nonce=int.from_bytes(nonce, "big"),
        scheme=scheme,
        signed=PREFIX.encode("ascii") + raw[:BODY_LEN],
        tag=raw[BODY_LEN:],
    )


def _body(store_id: str, order_id: int, expires_at: float, key_id: int, nonce: int | None) -> bytes:
    if not 0 <= order_id <= _MAX_ORDER:
        raise ValueError(f"order_id: {order_id} out of range 0..2**63-1")
    # Round the expiry down: a code never lives longer than the cloud asked.
    minutes = int(expires_at // 60)
    if not 0 <= minutes <= _MAX_MINUTES:
        raise ValueError(f"expires_at: {expires_at} out of range")
    if not 0 <= key_id <= 255:
        raise ValueError(f"key_id: {key_id} out of range 0..255")
    n = secrets.randbits(24) if nonce is None else nonce
    if not 0 <= n < 2**24:
        raise ValueError(f"nonce: {n} out of range 0..2**24-1")
    return _BODY.pack(order_id, store_tag(store_id), minutes, key_id, n.to_bytes(3, "big"))


def _encode(body: bytes, tag: bytes) -> str:
    return PREFIX + base64.b32encode(body + tag).decode("ascii").rstrip("=")


def format_time(ts: float) -> str:
    """A code's time as people read it in messages (UTC until the store's zone is known)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


class _Verifier:
    store_id: str
    scheme: Scheme

    def _genuine(self, body: PickupBody) -> bool:
        raise NotImplementedError

    def _has_key(self, key_id: int) -> bool:
        raise NotImplementedError

    def verify(self, code: str, now: float) -> PickupTicket:
        """A ticket for a genuine code of this store that has not expired, else PickupError.

        Checks run cheapest and most telling first; expiry comes after authenticity so a
        forged code is called forged, not expired.
        """
        body = decode_pickup(code)
        if body.scheme != self.scheme:
            raise PickupError("malformed", "a kind of pickup code this terminal does not accept")
        if not hmac.compare_digest(body.store_tag, store_tag(self.store_id)):
            raise PickupError("wrong_store", "this pickup code is for another store")
        if not self._has_key(body.key_id):
            raise PickupError("unknown_key", f"pickup code signed with unknown key {body.key_id}")
        if not self._genuine(body):
            raise PickupError("bad_mac", "pickup code not genuine (forged or altered)")
        if now >= body.expires_at:
            raise PickupError("expired", f"pickup code expired at {format_time(body.expires_at)}")
        return PickupTicket(
            self.store_id, body.order_id, body.expires_at, body.nonce, body.key_id, code
        )


class PickupCodec(_Verifier):
    """HMAC-SHA256 codes under a per-store key; `keys` may add older keys still accepted."""

    scheme: Scheme = "hmac"

    def __init__(
        self,
        store_id: str,
        key: bytes,
        *,
        key_id: int = 0,
        keys: Mapping[int, bytes] | None = None,
    ) -> None:
        self.store_id = _check_store(store_id)
        self.key_id = key_id
        self._keys = {**(keys or {}), key_id: key}
        for kid, k in self._keys.items():
            if len(k) < MIN_KEY_LEN:
                raise ValueError(f"key {kid}: at least {MIN_KEY_LEN} bytes")

    def _mac(self, key: bytes, signed: bytes) -> bytes:
        return hmac.new(key, signed, hashlib.sha256).digest()[:MAC_LEN]

    def issue(self, order_id: int, expires_at: float, nonce: int | None = None) -> str:
        body = _body(self.store_id, order_id, expires_at, self.key_id, nonce)
        return _encode(body, self._mac(self._keys[self.key_id], PREFIX.encode("ascii") + body))

    def _has_key(self, key_id: int) -> bool:
        return key_id in self._keys

    def _genuine(self, body: PickupBody) -> bool:
        return hmac.compare_digest(self._mac(self._keys[body.key_id], body.signed), body.tag)


class Ed25519PickupCodec(_Verifier):
    """Signed codes: the cloud holds the private key, terminals only `public_keys`."""

    scheme: Scheme = "ed25519"

    def __init__(
        self,
        store_id: str,
        public_keys: Mapping[int, Ed25519PublicKey],
        *,
        private_key: Ed25519PrivateKey | None = None,
        key_id: int = 0,
    ) -> None:
        self.store_id = _check_store(store_id)
        self.key_id = key_id
        self._public = dict(public_keys)
        self._private = private_key

    def issue(self, order_id: int, expires_at: float, nonce: int | None = None) -> str:
        if self._private is None:
            raise ValueError("issuing needs the private key")
        body = _body(self.store_id, order_id, expires_at, self.key_id, nonce)
        return _encode(body, self._private.sign(PREFIX.encode("ascii") + body))

    def _has_key(self, key_id: int) -> bool:
        return key_id in self._public

    def _genuine(self, body: PickupBody) -> bool:
        try:
            self._public[body.key_id].verify(body.tag, body.signed)
        except InvalidSignature:
            return False
        return True
