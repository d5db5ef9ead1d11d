"""The state message's inventory field: the configuration hash is optional (an older agent
omits it), strictly a SHA-256 in hex when present, and survives the trip."""

from __future__ import annotations

import json

import pytest

from xiaodian.wire.payloads import PayloadError, State, parse, state_payload

TOPIC = "xd/v1/store-001/state"
HASH = "ab" * 32


def test_the_hash_travels_and_an_older_agents_state_is_still_read() -> None:
    got = parse(TOPIC, state_payload("store-001", True, 1, 1.0, "1.1.0", ["fridge-1"], HASH))
    assert isinstance(got, State) and got.config_hash == HASH
    older = json.loads(state_payload("store-001", True, 1, 1.0, "0.1.0", ["fridge-1"]))
    del older["config_hash"]  # what 0.1.0 sent: no such field at all
    got = parse(TOPIC, json.dumps(older).encode())
    assert isinstance(got, State) and got.config_hash is None


@pytest.mark.parametrize("bad", ["AB" * 32, "ab" * 31, "ab" * 32 + "0", "zz" * 32, ""])
def test_a_malformed_hash_is_refused(bad: str) -> None:
    body = json.loads(state_payload("store-001", True, 1, 1.0, "1.1.0", [], HASH))
    body["config_hash"] = bad
    with pytest.raises(PayloadError, match="config_hash"):
        parse(TOPIC, json.dumps(body).encode())


def test_unknown_fields_are_still_refused() -> None:
    body = json.loads(state_payload("store-001", True, 1, 1.0, "1.1.0", [], HASH))
    body["firmware_everywhere"] = "x"
    with pytest.raises(PayloadError):
        parse(TOPIC, json.dumps(body).encode())
