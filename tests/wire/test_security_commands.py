"""Signed commands: the byte format, every refusal, replay memory, the MQTT 5 envelope."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.replay_store import ReplayStore
from xiaodian.mqtt import command_publish, response_properties
from xiaodian.wire.commands import (
    MAX_WIRE_BYTES,
    SIGNING_CONTEXT,
    WIRE_MAGIC,
    Command,
    CommandError,
    CommandVerifier,
    Reason,
    key_id_for,
    refusal_payload,
    sign_command,
)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KID = key_id_for(KEY.public_key())
T0 = 1_750_000_000


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_verifier(
    clock: Clock | None = None, store: ReplayStore | None = None, target: str = "store-001"
) -> CommandVerifier:
    return CommandVerifier(
        {KID: KEY.public_key()}, target, clock or Clock(), store or ReplayStore(":memory:")
    )


def defrost(**kw: object) -> bytes:
    args: dict[str, object] = {
        "target": "store-001",
        "action": "defrost",
        "params": {"device": "fridge-1", "minutes": 20},
        "issued_at": T0,
    }
    args.update(kw)
    return sign_command(KEY, KID, **args).wire  # type: ignore[arg-type]


def signed_raw(body: bytes, key: Ed25519PrivateKey = KEY) -> bytes:
    """Sign any body, as a holder of the real key could (to test checks after the signature)."""
    return WIRE_MAGIC + key.sign(SIGNING_CONTEXT + body) + body


def body_of(wire: bytes) -> dict[str, object]:
    obj: dict[str, object] = json.loads(wire[68:])
    return obj


def test_golden_vector() -> None:
    """The byte format in docs/security.md, pinned: a change here breaks every store."""
    signed = sign_command(
        KEY, KID, target="store-001", action="set_point",
        params={"device": "fridge-1", "tenths_c": -5}, issued_at=T0, lifetime_s=300,
        command_id="c-0001", nonce="00112233445566778899aabbccddeeff",
    )  # fmt: skip
    body = (
        b'{"action":"set_point","exp":1750000300,"iat":1750000000,"id":"c-0001",'
        b'"kid":"' + KID.encode() + b'","nonce":"00112233445566778899aabbccddeeff",'
        b'"params":{"device":"fridge-1","tenths_c":-5},"target":"store-001","v":1}'
    )
    assert KID == "56475aa75463474c"
    assert signed.wire == WIRE_MAGIC + KEY.sign(SIGNING_CONTEXT + body) + body
    assert signed.wire[4:68].hex() == (
        "570999f65e690e7d4dd3ce67d2f338f2d2ada19bb869083e5d68f741a4b1f33a"
        "1e10cc42203d43ae5b74817644c151643315db36153e0bf8f654796afa852c00"
    )


def test_a_good_command_runs_once_and_a_replay_gets_the_first_result(tmp_path: Path) -> None:
    db = tmp_path / "replay.sqlite"
    wire = defrost()
    verifier = make_verifier(store=ReplayStore(db))
    verdict = verifier.verify(wire)
    assert verdict.ok and verdict.command is not None
    assert verdict.command.params == {"device": "fridge-1", "minutes": 20}  # exact round trip
    verifier.record_result(verdict.command.command_id, b'{"status":"done"}')
    again = verifier.verify(wire)
    assert (again.reason, again.earlier_result) == (Reason.REPLAYED, b'{"status":"done"}')
    # The memory survives a restart of the agent.
    reopened = make_verifier(store=ReplayStore(db))
    assert reopened.verify(wire).reason is Reason.REPLAYED


def test_a_replay_while_the_first_run_is_unfinished_is_not_run() -> None:
    verifier = make_verifier()
    wire = defrost()
    assert verifier.verify(wire).ok
    replay = verifier.verify(wire)  # e.g. redelivered after a crash mid-command
    assert (replay.reason, replay.earlier_result) == (Reason.REPLAYED, None)


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (defrost(target="store-002"), Reason.WRONG_TARGET),
        (defrost(issued_at=T0 - 421), Reason.EXPIRED),  # expired at T0-121, skew 120 s
        (defrost(issued_at=T0 + 121), Reason.NOT_YET_VALID),
        (b"XDC2" + defrost()[4:], Reason.MALFORMED),
        (defrost()[:67], Reason.MALFORMED),
        (b"", Reason.MALFORMED),
        (b"XDC1" + b"\x00" * 64 + b"\xff{}", Reason.MALFORMED),
        (b"XDC1" + b"\x00" * 64 + b"[" * 3000, Reason.MALFORMED),
        (b"x" * (MAX_WIRE_BYTES + 1), Reason.OVERSIZE),
    ],
)
def test_refusals_before_anything_runs(wire: bytes, reason: Reason) -> None:
    verifier = make_verifier()
    verdict = verifier.verify(wire)
    assert verdict.reason is reason, verdict
    assert verdict.detail
    assert verifier._replays.count() == 0


def test_within_the_skew_allowance_is_accepted() -> None:
    assert make_verifier().verify(defrost(issued_at=T0 + 119)).ok
    assert make_verifier().verify(defrost(issued_at=T0 - 300 - 119)).ok


def test_bad_signature_unknown_key_and_foreign_key() -> None:
    wire = bytearray(defrost())
    wire[10] ^= 1  # in the signature
    assert make_verifier().verify(bytes(wire)).reason is Reason.BAD_SIGNATURE
    tampered = defrost().replace(b'"minutes":20', b'"minutes":45')
    assert make_verifier().verify(tampered).reason is Reason.BAD_SIGNATURE
    other = Ed25519PrivateKey.generate()
    forged = sign_command(
        other, KID, target="store-001", action="unlock",
        params={"device": "fridge-1", "seconds": 5}, issued_at=T0,
    )  # fmt: skip
    assert make_verifier().verify(forged.wire).reason is Reason.BAD_SIGNATURE
    unknown = sign_command(
        other, key_id_for(other.public_key()), target="store-001", action="reboot",
        params={"device": "agent"}, issued_at=T0,
    )  # fmt: skip
    assert make_verifier().verify(unknown.wire).reason is Reason.UNKNOWN_KEY


def _body(**changes: object) -> bytes:
    obj = body_of(defrost())
    obj.update(changes)
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (_body().replace(b",", b", "), Reason.NOT_CANONICAL),
        (_body().replace(b'"fridge-1"', b'"fridge\\u002d1"'), Reason.NOT_CANONICAL),
        (_body()[:-1] + b',"v":1}', Reason.MALFORMED),  # duplicate key
        (_body(exp=T0 + 24 * 3600 + 1), Reason.LIFETIME_TOO_LONG),
        (_body(exp=T0), Reason.MALFORMED),
        (_body(nonce="short"), Reason.MALFORMED),
        (_body(v=2), Reason.MALFORMED),
        (_body(target="store/+"), Reason.MALFORMED),
        (_body(action="self_destruct"), Reason.BAD_ACTION),
        (_body(params={"device": "fridge-1", "minutes": 46}), Reason.BAD_PARAMS),
        (_body(params={"device": "fridge-1", "minutes": True}), Reason.BAD_PARAMS),
        (_body(params={"device": "fridge-1"}), Reason.BAD_PARAMS),
        (_body(params={"device": "fridge-1", "minutes": 5, "x": 1}), Reason.BAD_PARAMS),
        (_body(params={"device": "fridge 1", "minutes": 5}), Reason.BAD_PARAMS),
        (_body(params={"device": "fridge-1", "minutes": [5]}), Reason.MALFORMED),
        (_body().replace(b'"minutes":20', b'"minutes":20.0'), Reason.MALFORMED),
        (_body(iat="now"), Reason.MALFORMED),
    ],
)
def test_refusals_of_authentic_but_bad_bodies(body: bytes, reason: Reason) -> None:
    verdict = make_verifier().verify(signed_raw(body))
    assert verdict.reason is reason, verdict


@pytest.mark.parametrize(
    ("action", "params"),
    [
        ("unlock", {"device": "fridge-1", "seconds": 61}),
        ("set_point", {"device": "fridge-1", "tenths_c": 151}),
        ("set_point", {"device": "fridge-1", "tenths_c": 3.5}),
        ("defrost", {"device": "fridge-1", "minutes": 0}),
        ("reboot", {}),
        ("diagnostics", {"scope": "everything"}),
        ("diagnostics", {"scope": "full", "device": "a/b"}),
        ("diagnostics", {"scope": "full", "device": 'x"y'}),
        ("format_disk", {}),
    ],
)
def test_the_cloud_cannot_sign_what_a_store_refuses(action: str, params: dict[str, object]) -> None:
    with pytest.raises(CommandError):
        sign_command(KEY, KID, target="store-001", action=action, params=params, issued_at=T0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("action", "params"),
    [
        ("unlock", {"device": "fridge-1", "seconds": 10}),
        ("set_point", {"device": "fridge-1", "tenths_c": -300}),
        ("defrost", {"device": "fridge-2", "minutes": 45}),
        ("reboot", {"device": "agent"}),
        ("diagnostics", {"scope": "summary"}),
        ("diagnostics", {"scope": "full", "device": "scanner-1"}),
    ],
)
def test_every_action_verifies(action: str, params: dict[str, object]) -> None:
    signed = sign_command(KEY, KID, target="store-001", action=action, params=params, issued_at=T0)  # type: ignore[arg-type]
    verdict = make_verifier().verify(signed.wire)
    assert verdict.ok and verdict.command == signed.command
    assert signed.command.body() == signed.wire[68:]


def test_replay_memory_is_bounded_and_pruned_after_expiry() -> None:
    clock = Clock()
    verifier = make_verifier(clock, ReplayStore(":memory:", max_entries=2))
    assert verifier.verify(defrost()).ok
    assert verifier.verify(defrost()).ok
    full = verifier.verify(defrost())
    assert full.reason is Reason.REPLAY_STORE_FULL  # refuses rather than forgets
    clock.t = T0 + 300 + 121  # both remembered commands can no longer pass the expiry check
    assert verifier.verify(defrost(issued_at=T0 + 400)).ok
    assert verifier._replays.count() == 1


def test_mqtt5_envelope() -> None:
    signed = sign_command(
        KEY, KID, target="store-001", action="diagnostics", params={"scope": "summary"},
        issued_at=T0, lifetime_s=90,
    )  # fmt: skip
    pub = command_publish(signed, T0 + 0.5)
    assert (pub.topic, pub.payload, pub.qos) == ("xd/v1/store-001/cmd/req", signed.wire, 1)
    assert pub.properties.ResponseTopic == "xd/v1/store-001/cmd/res"
    assert pub.properties.CorrelationData == signed.command.command_id.encode()
    assert pub.properties.MessageExpiryInterval == 90  # rounded up: never expires early
    with pytest.raises(CommandError, match="expired"):
        command_publish(signed, T0 + 90)
    assert response_properties(b"abc").CorrelationData == b"abc"


def test_refusal_payload_names_the_reason() -> None:
    verdict = make_verifier().verify(defrost(target="store-009"))
    answer = json.loads(refusal_payload(verdict))
    assert answer["status"] == "refused" and answer["reason"] == "wrong_target"
    assert answer["id"] == verdict.command.command_id  # type: ignore[union-attr]
    assert json.loads(refusal_payload(make_verifier().verify(b"junk")))["id"] is None


def test_command_is_a_value() -> None:
    c = Command("k", "i", "store-001", T0, T0 + 1, "0" * 32, "reboot", {"device": "agent"})
    assert c.body().startswith(b'{"action":"reboot","exp":')
