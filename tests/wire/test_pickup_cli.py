"""`xiaodian pickup code` / `verify`: what support staff see, and the exit status."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from devstack.cli import main
from xiaodian.pki import load_pickup_key, make_pickup_key
from xiaodian.wire.pickup import PickupCodec

NOW = 1_800_000_000  # a whole minute


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return make_pickup_key(tmp_path, "store-001"), make_pickup_key(tmp_path, "store-002")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_code_then_verify(keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    k1, k2 = keys
    rc, out, err = run(["pickup", "code", "--store", "store-001", "--order", "42",
                        "--expires", "2027-01-15T08:30:45", "--key-file", str(k1)], capsys)
    assert rc == 0 and "valid until 2027-01-15T08:30Z" in err
    code = out.strip()
    assert code.startswith("PK1:") and len(code) == 52
    assert load_pickup_key(k1).hex() not in out + err
    # What the terminal would accept, the CLI accepts: same codec, same key.
    assert PickupCodec("store-001", load_pickup_key(k1)).verify(code, NOW).order_id == 42

    def verify(*extra: str, store: str = "store-001", key: Path = k1,
               c: str = code) -> tuple[int, dict[str, object], str]:
        rc, out, err = run(["pickup", "verify", c, "--store", store, "--key-file", str(key),
                            *extra], capsys)
        return rc, json.loads(out), err

    rc, body, _ = verify("--now", "2027-01-15T08:00:00Z")
    assert rc == 0 and body["ok"] and body["order"] == 42
    assert body["expires_iso"] == "2027-01-15T08:30Z"
    rc, body, err = verify("--now", "2027-01-15T08:30:00Z")
    assert (rc, body["reason"]) == (4, "expired") and "expired at 2027-01-15 08:30 UTC" in err
    rc, body, err = verify(store="store-002", key=k2)
    assert (rc, body["reason"]) == (3, "wrong_store") and "another store" in err
    forged = code[:-3] + ("AAA" if code[-3:] != "AAA" else "BBB")
    rc, body, err = verify(c=forged)
    assert (rc, body["reason"]) == (5, "bad_mac") and "forged or altered" in err
    other_key = k2.parent / "k3.key"
    other_key.write_text(load_pickup_key(k2).hex())
    other_key.chmod(0o600)
    rc, body, _ = verify(key=other_key)  # store-001's code, checked with the wrong key
    assert (rc, body["reason"]) == (5, "bad_mac")
    rc, body, _ = verify("--key-id", "3")
    assert (rc, body["reason"]) == (5, "unknown_key")
    rc, body, err = verify(c="PK1:HELLO")
    assert (rc, body["reason"]) == (6, "malformed")


def test_ttl_and_errors(keys: tuple[Path, Path], tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    k1, _ = keys
    before = time.time()
    rc, out, _ = run(["pickup", "code", "--store", "store-001", "--order", "7", "--ttl-s",
                      "600", "--key-file", str(k1)], capsys)
    assert rc == 0
    ticket = PickupCodec("store-001", load_pickup_key(k1)).verify(out.strip(), before)
    assert before + 540 <= ticket.expires_at <= before + 600
    rc, _, err = run(["pickup", "code", "--store", "store-001", "--order", "7", "--expires",
                      "tomorrow", "--key-file", str(k1)], capsys)
    assert rc == 1 and "not an ISO 8601 time" in err
    rc, _, err = run(["pickup", "verify", "PK1:X", "--store", "store-001", "--key-file",
                      str(tmp_path / "missing.key")], capsys)
    assert rc == 1 and "missing.key" in err
    k1.chmod(0o640)
    rc, _, err = run(["pickup", "verify", "PK1:X", "--store", "store-001", "--key-file",
                      str(k1)], capsys)
    assert rc == 1 and "chmod 600" in err
