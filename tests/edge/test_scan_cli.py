"""`xiaodian scan parse`: JSON out and exit 0, or a JSON error, a message on stderr and exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from devstack.cli import main
from edge.scan import Ed25519PickupCodec, PickupCodec

KEY = bytes(range(32))
NOW = 1_750_000_000


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object], str]:
    code = main(["scan", "parse", *argv])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def test_product(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "]E06901234567892")
    assert code == 0 and err == ""
    assert out["kind"] == "product" and out["gtin"] == "06901234567892"
    assert out["symbology"] == "E0"


def test_gs1_with_typed_separator(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "]C101069012345678921726050010L2406A<GS>3103001250")
    assert code == 0
    assert (out["expiry"], out["batch"], out["weight_g"]) == ("2026-05-31", "L2406A", 1250)
    code, out, _ = run(capsys, "]d2010690123456789210B7\\x1d3922001299")
    assert (out["batch"], out["price_fen"]) == ("B7", 1299)


def test_wrong_check_digit(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "]E06901234567893")
    assert code == 1
    assert out == {
        "error": "wrong check digit in 6901234567893: expected 2, got 3",
        "reason": "check_digit",
    }
    assert "wrong check digit" in err


def test_unknown_format(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "]Q1https://example.com/")
    assert code == 1 and out["reason"] == "unknown_format"


def test_layout_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    layout = tmp_path / "layout.toml"
    layout.write_text('[[rules]]\nprefixes = ["28"]\nmeasure = "weight"\n', encoding="utf-8")
    code, out, _ = run(capsys, "2800123004507", "--layout", str(layout))
    assert (code, out["kind"], out["item"], out["weight_g"]) == (
        0,
        "variable_measure",
        "00123",
        450,
    )
    code, out, _ = run(capsys, "2800123004507")  # default layout: price in fen
    assert out["price_fen"] == 450


def test_bad_layout_file_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = tmp_path / "layout.toml"
    layout.write_text('[[rules]]\nprefixes = ["30"]\n', encoding="utf-8")
    assert main(["scan", "parse", "1", "--layout", str(layout)]) == 2
    assert "rules[0].prefixes" in capsys.readouterr().err


def test_pickup_verified_with_hmac_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "pickup.key"
    key_file.write_text(KEY.hex() + "\n", encoding="ascii")
    pk = PickupCodec("store-001", KEY).issue(4711, NOW + 3600, nonce=7)
    args = ("--pickup-key-file", str(key_file), "--store", "store-001", "--now", str(NOW))
    code, out, _ = run(capsys, "]Q1" + pk, *args)
    assert code == 0 and out["kind"] == "pickup"
    assert out["pickup"] == {
        "order_id": 4711,
        "expires_at": (NOW + 3600) // 60 * 60,
        "expires": "2025-06-15T16:06:00+00:00",
        "key_id": 0,
        "nonce": 7,
        "scheme": "hmac",
        "store": "store-001",
        "verified": True,
    }
    code, out, err = run(capsys, pk, *args[:3], "store-002", "--now", str(NOW))
    assert (code, out["reason"]) == (1, "wrong_store") and "another store" in err
    code, out, _ = run(capsys, pk, *args[:4], "--now", str(NOW + 7200))
    assert out["reason"] == "expired"


def test_pickup_unverified_without_key(capsys: pytest.CaptureFixture[str]) -> None:
    pk = PickupCodec("store-001", KEY).issue(1, NOW + 3600)
    code, out, _ = run(capsys, pk)
    assert code == 0 and out["pickup"]["verified"] is False  # type: ignore[index]


def test_pickup_verified_with_ed25519_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    private = Ed25519PrivateKey.from_private_bytes(bytes(32))
    pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    key_file = tmp_path / "pickup.pem"
    key_file.write_bytes(pem)
    pk = Ed25519PickupCodec("s1", {}, private_key=private).issue(5, NOW + 60)
    code, out, _ = run(
        capsys, pk, "--pickup-key-file", str(key_file), "--store", "s1", "--now", str(NOW)
    )
    assert code == 0 and out["pickup"]["scheme"] == "ed25519"  # type: ignore[index]


def test_key_without_store_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["scan", "parse", "x", "--pickup-key-file", "k"])
    assert exc.value.code == 2
    capsys.readouterr()


def test_unreadable_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "k"
    bad.write_text("not hex", encoding="ascii")
    assert main(["scan", "parse", "x", "--pickup-key-file", str(bad), "--store", "s"]) == 2
    assert "pickup key" in capsys.readouterr().err
