"""Signed commands from the cloud to a store: format, signing, verification, replay memory.

The cloud signs, the store verifies; the broker only carries bytes, so a compromised broker
can delay or drop a command but never forge, redirect or replay one. Pure apart from the
SQLite `ReplayStore` the verifier is given; the clock is a parameter.

Wire format (one MQTT payload, binary)::

    wire    = "XDC1" signature body          4 + 64 + len(body) bytes, at most MAX_WIRE_BYTES
    signature = Ed25519(private key, "xiaodian-command-v1" 0x00 body)
    body    = canonical JSON (below), ASCII

Canonical JSON: one object with exactly the keys `action exp iat id kid nonce params target v`,
members sorted by key (all keys are ASCII, so byte order = code point order = UTF-16 order),
no whitespace, strings of printable ASCII without `"` or `\\` (so no escapes exist), integers
in plain decimal (no leading zeros, no `+`, no exponent, |n| <= 2**53 - 1), `true`/`false`,
no floats and no null. `params` is a flat object of such scalars. With these limits the
encoding is one obvious byte string in any language, and the verifier refuses a body that
is not exactly the canonical encoding of what it parsed, so no two bodies mean the same
command. The signature covers the received bytes, not a re-encoding.

Typical use::

    signed = sign_command(key, kid, target="store-001", action="defrost",
                          params={"device": "fridge-1", "minutes": 20}, issued_at=now)
    publish = xiaodian.mqtt.command_publish(signed, now)  # topic, payload, MQTT 5 properties
    ...
    verifier = CommandVerifier({kid: public_key}, "store-001", time.time, replay_store)
    verdict = verifier.verify(payload)
    if verdict.ok:
        verifier.record_result(verdict.command.command_id, run(verdict.command))
    elif verdict.reason is Reason.REPLAYED: answer with verdict.earlier_result
    else: answer with refusal_payload(verdict)
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Protocol

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from msgspec import Meta, Struct

from . import ids, jsonio
from .errors import WireError

WIRE_MAGIC = b"XDC1"
SIGNATURE_LEN = 64
# Domain separation: a signature made for anything else with the same key never verifies here.
SIGNING_CONTEXT = b"xiaodian-command-v1\x00"
MAX_WIRE_BYTES = 4096
MAX_LIFETIME_S = 24 * 3600  # also bounds how long the replay store must remember an id
DEFAULT_LIFETIME_S = 300
DEFAULT_SKEW_S = 120
MAX_RESULT_BYTES = 16 * 1024
MAX_INT = 2**53 - 1  # exact in every JSON implementation (IEEE double)
FORMAT_VERSION = 1
AGENT = "agent"  # the device name that means the store terminal's agent itself
MAX_CAPTURE_S = 30

_NONCE_RE = re.compile(r"[0-9a-f]{32}")
_SAFE_STR_RE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{0,128}")  # printable, no " or \
MAX_PARAMS = 16
UPDATE_KINDS = frozenset({"firmware", "agent"})
# The device an `agent` update names: the terminal's own software, not a fridge.
AGENT_DEVICE = "agent"
MAX_ARTEFACT_BYTES = 64 * 1024 * 1024
_HTTPS_URL_RE = re.compile(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?/[A-Za-z0-9._~/-]{1,100}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_VERSION_RE = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")

Scalar = str | int | bool


class CommandError(WireError, ValueError):
    """A command the cloud must not send (bad action, parameters or times)."""


class ReplayStoreFull(WireError, RuntimeError):
    """More unexpired command ids than the store's bound: refuse rather than forget."""


class Reason(enum.StrEnum):
    """Why a command was refused; the code travels back to the cloud in the response."""

    OK = "ok"
    OVERSIZE = "oversize"
    MALFORMED = "malformed"
    NOT_CANONICAL = "not_canonical"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    WRONG_TARGET = "wrong_target"
    REPLAYED = "replayed"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    LIFETIME_TOO_LONG = "lifetime_too_long"
    BAD_ACTION = "bad_action"
    BAD_PARAMS = "bad_params"
    REPLAY_STORE_FULL = "replay_store_full"


@dataclass(frozen=True)
class _Param:
    kind: type
    required: bool = True
    lo: int = -MAX_INT
    hi: int = MAX_INT
    choices: frozenset[str] | None = None
    pattern: re.Pattern[str] | None = None


_DEVICE = _Param(str, pattern=ids.DEVICE_ID)
# Ranges are what a chilled/frozen cabinet and its controller can sensibly do.
ACTIONS: Mapping[str, Mapping[str, _Param]] = {
    "unlock": {"device": _DEVICE, "seconds": _Param(int, lo=1, hi=60)},
    # Tenths of a degree: an integer keeps the canonical form float-free.
    "set_point": {"device": _DEVICE, "tenths_c": _Param(int, lo=-300, hi=150)},
    "defrost": {"device": _DEVICE, "minutes": _Param(int, lo=1, hi=45)},
    "reboot": {"device": _DEVICE},  # AGENT reboots the terminal's agent
    "diagnostics": {
        "scope": _Param(str, choices=frozenset({"summary", "full"})),
        "device": _Param(str, required=False, pattern=ids.DEVICE_ID),
    },
    # A pcapng of the serial frames, through the agent (never the port); no device: all.
    # Short, because the answer waits for it and carries it (docs/protocol.md §9).
    "capture": {
        "seconds": _Param(int, lo=1, hi=MAX_CAPTURE_S),
        "device": _Param(str, required=False, pattern=ids.DEVICE_ID),
    },
    # An artefact from the cloud (docs/firmware_update.md, "From the cloud"): the command is
    # at most 4 KiB, so it names the bytes (HTTPS URL, size, SHA-256) and the store fetches
    # them; the artefact's own signature is judged as for any image. `kind` says what it is
    # and so what installs it ("firmware": a fridge's controller; "agent": the terminal's own
    # software, device AGENT_DEVICE, a release file of xiaodian/agent_release.py).
    "update": {
        "device": _DEVICE,
        "kind": _Param(str, choices=UPDATE_KINDS),
        "url": _Param(str, pattern=_HTTPS_URL_RE),
        "sha256": _Param(str, pattern=_SHA256_RE),
        "size": _Param(int, lo=1, hi=MAX_ARTEFACT_BYTES),
        "version": _Param(str, pattern=_VERSION_RE),
    },
}


class Command(Struct, frozen=True, forbid_unknown_fields=True):
    """A command; as a Struct it is also the shape of the signed body (the wire's names).

    Only types are declared: values (ids, times, parameters) are checked by
    `_check_command` once the signature has verified, so a forged body learns nothing.
    """

    key_id: str = msgspec.field(name="kid")
    command_id: str = msgspec.field(name="id")
    target: str
    issued_at: int = msgspec.field(name="iat")  # unix seconds
    expires_at: int = msgspec.field(name="exp")
    nonce: str  # 32 lower-case hex digits
    action: str
    # bool before int: in a union msgspec takes JSON true/false as bool either way.
    params: Annotated[dict[str, str | bool | int], Meta(max_length=MAX_PARAMS)] = \
        msgspec.field(default_factory=dict)
    v: int = FORMAT_VERSION

    def body(self) -> bytes:
        """The canonical bytes that are signed (see the module docstring)."""
        return canonical_body(self)


@dataclass(frozen=True)
class SignedCommand:
    command: Command
    wire: bytes  # the MQTT payload


@dataclass(frozen=True)
class Verdict:
    reason: Reason
    detail: str = ""
    command: Command | None = None  # set once the signature has verified
    earlier_result: bytes | None = None  # REPLAYED: the first run's result (None: unknown)

    @property
    def ok(self) -> bool:
        return self.reason is Reason.OK


def key_id_for(public_key: Ed25519PublicKey) -> str:
    """A short, stable name for a public key: the first 8 bytes of SHA-256 of its raw form."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


# ------------------------------------------------------------------------------ encoding


def canonical_body(command: Command) -> bytes:
    obj = {
        "action": command.action,
        "exp": command.expires_at,
        "iat": command.issued_at,
        "id": command.command_id,
        "kid": command.key_id,
        "nonce": command.nonce,
        "params": dict(command.params),
        "target": command.target,
        "v": FORMAT_VERSION,
    }
    # With the value limits checked in _check_command, this equals the documented form.
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign_command(
    private_key: Ed25519PrivateKey,
    key_id: str,
    *,
    target: str,
    action: str,
    params: Mapping[str, Scalar],
    issued_at: int,
    lifetime_s: int = DEFAULT_LIFETIME_S,
    command_id: str | None = None,
    nonce: str | None = None,
) -> SignedCommand:
    """Build, check and sign a command; CommandError if the store would refuse it."""
    command = Command(
        key_id=key_id,
        command_id=command_id or uuid.uuid4().hex,
        target=target,
        issued_at=int(issued_at),
        expires_at=int(issued_at) + lifetime_s,
        nonce=nonce or secrets.token_hex(16),
        action=action,
        params=dict(params),
    )
    problem = _check_command(command)
    if problem is not None:
        raise CommandError(f"{problem[0]}: {problem[1]}")
    body = canonical_body(command)
    signature = private_key.sign(SIGNING_CONTEXT + body)
    wire = WIRE_MAGIC + signature + body
    if len(wire) > MAX_WIRE_BYTES:
        raise CommandError(f"command of {len(wire)} bytes exceeds {MAX_WIRE_BYTES}")
    return SignedCommand(command, wire)


# ------------------------------------------------------------------------------ verifying


class CommandVerifier:
    """The store's gate: a command runs only if `verify` says OK, and then only once."""

    def __init__(
        self,
        public_keys: Mapping[str, Ed25519PublicKey],
        store_id: str,
        now: Callable[[], float],
        replay_store: ReplayLedger,
        *,
        skew_s: int = DEFAULT_SKEW_S,
    ) -> None:
        if not ids.is_store_id(store_id):
            raise ValueError(f"store_id: {store_id!r} is not a store id")
        self._keys = dict(public_keys)
        self.store_id = store_id
        self._now = now
        self._replays = replay_store
        self.skew_s = skew_s

    def verify(self, wire: bytes) -> Verdict:
        """Check a received payload; never raises on any input. On OK the id is claimed."""
        if len(wire) > MAX_WIRE_BYTES:
            return Verdict(Reason.OVERSIZE, f"{len(wire)} bytes exceeds {MAX_WIRE_BYTES}")
        if len(wire) < len(WIRE_MAGIC) + SIGNATURE_LEN or not wire.startswith(WIRE_MAGIC):
            return Verdict(Reason.MALFORMED, "not an XDC1 command")
        signature = wire[len(WIRE_MAGIC) : len(WIRE_MAGIC) + SIGNATURE_LEN]
        body = bytes(wire[len(WIRE_MAGIC) + SIGNATURE_LEN :])
        try:
            command = _parse_body(body)
        except _Malformed as exc:
            return Verdict(Reason.MALFORMED, str(exc))
        key = self._keys.get(command.key_id)
        if key is None:
            return Verdict(Reason.UNKNOWN_KEY, f"key id {command.key_id!r} is not pinned here")
        try:
            key.verify(signature, SIGNING_CONTEXT + body)
        except InvalidSignature:
            return Verdict(Reason.BAD_SIGNATURE, "signature does not verify")
        # Authentic from here on: the details can be trusted and reported back.
        problem = _check_command(command)
        if problem is not None:
            return Verdict(problem[0], problem[1], command)
        if canonical_body(command) != body:
            return Verdict(Reason.NOT_CANONICAL, "body is not in canonical form", command)
        if command.target != self.store_id:
            return Verdict(
                Reason.WRONG_TARGET, f"for {command.target}, not {self.store_id}", command
            )
        found, earlier = self._replays.lookup(command.command_id)
        if found:
            return Verdict(Reason.REPLAYED, "command id already executed", command, earlier)
        now = self._now()
        if command.issued_at > now + self.skew_s:
            return Verdict(Reason.NOT_YET_VALID, "issued in the future (check the clocks)", command)
        if now > command.expires_at + self.skew_s:
            return Verdict(Reason.EXPIRED, f"expired at {command.expires_at}", command)
        try:
            # Kept until it could no longer pass the expiry check above.
            claimed, earlier = self._replays.claim(
                command.command_id, command.expires_at + self.skew_s, now
            )
        except ReplayStoreFull as exc:
            return Verdict(Reason.REPLAY_STORE_FULL, str(exc), command)
        if not claimed:  # another delivery claimed it between lookup and claim
            return Verdict(Reason.REPLAYED, "command id already executed", command, earlier)
        return Verdict(Reason.OK, "", command)

    def record_result(self, command_id: str, result: bytes) -> None:
        """Remember what the command did, to answer a replay with it."""
        self._replays.record_result(command_id, result)


class ReplayLedger(Protocol):
    """Where a verifier remembers the command ids it accepted (the edge keeps them in SQLite:
    `edge.replay_store.ReplayStore`). `claim` raises ReplayStoreFull rather than forget."""

    def lookup(self, command_id: str) -> tuple[bool, bytes | None]: ...

    def claim(self, command_id: str, keep_until: int, now: float) -> tuple[bool, bytes | None]:
        ...

    def record_result(self, command_id: str, result: bytes) -> None: ...


# ------------------------------------------------------------------------------ MQTT 5


def request_topic(store: str) -> str:
    return f"xd/v1/{store}/cmd/req"


def response_topic(store: str) -> str:
    return f"xd/v1/{store}/cmd/res"


def refusal_payload(verdict: Verdict) -> bytes:
    """The store's answer to a refused command: id (when known), reason code, detail."""
    return json.dumps(
        {
            "id": verdict.command.command_id if verdict.command else None,
            "status": "refused",
            "reason": verdict.reason.value,
            "detail": verdict.detail,
        },
        separators=(",", ":"),
    ).encode()


# ------------------------------------------------------------------------------ internals


class _Malformed(Exception):
    pass


def _parse_body(body: bytes) -> Command:
    """Parse enough to find the key: shape and types, not values (checked once authentic)."""
    if not body.isascii():
        raise _Malformed("body is not ASCII")
    try:
        command = jsonio.decode(body, Command, root="body")
    except jsonio.JsonError as exc:
        raise _Malformed(exc.message) from None
    if command.v != FORMAT_VERSION:
        raise _Malformed(f"unsupported format version {command.v!r}")
    return command


def _check_command(c: Command) -> tuple[Reason, str] | None:
    """Every rule on values; None if the command is well-formed."""
    for name, value, pattern in (
        ("kid", c.key_id, ids.KEY_ID),
        ("id", c.command_id, ids.COMMAND_ID),
        ("target", c.target, ids.STORE_ID),
        ("nonce", c.nonce, _NONCE_RE),
    ):
        if not isinstance(value, str) or not pattern.fullmatch(value):
            return Reason.MALFORMED, f"{name}: {value!r} does not match {pattern.pattern}"
    for name, t in (("iat", c.issued_at), ("exp", c.expires_at)):
        if type(t) is not int or not 0 <= t <= MAX_INT:
            return Reason.MALFORMED, f"{name}: must be an integer unix time"
    if c.expires_at <= c.issued_at:
        return Reason.MALFORMED, "exp: must be after iat"
    if c.expires_at - c.issued_at > MAX_LIFETIME_S:
        return Reason.LIFETIME_TOO_LONG, f"lifetime over {MAX_LIFETIME_S} s"
    spec = ACTIONS.get(c.action)
    if spec is None:
        return Reason.BAD_ACTION, f"unknown action {c.action!r} (known: {', '.join(ACTIONS)})"
    problem = _check_params(spec, c.params)
    return None if problem is None else (Reason.BAD_PARAMS, problem)


def _check_params(spec: Mapping[str, _Param], params: Mapping[str, object]) -> str | None:
    extra = sorted(repr(k) for k in set(params) - set(spec))
    if extra:
        return f"unexpected parameter(s) {', '.join(extra)}"
    for name, p in spec.items():
        if name not in params:
            if p.required:
                return f"{name}: missing"
            continue
        value = params[name]
        if type(value) is not p.kind:  # exact: a bool is not an int here
            return f"{name}: expected {p.kind.__name__}"
        if isinstance(value, int) and not isinstance(value, bool) and not p.lo <= value <= p.hi:
            return f"{name}: {value} outside {p.lo}..{p.hi}"
        if isinstance(value, str):
            if not _SAFE_STR_RE.fullmatch(value):
                return f"{name}: printable ASCII without quote or backslash, at most 128"
            if p.choices is not None and value not in p.choices:
                return f"{name}: one of {', '.join(sorted(p.choices))}"
            if p.pattern is not None and not p.pattern.fullmatch(value):
                return f"{name}: {value!r} is not a device id"
    return None
