"""`xiaodian pki pickup-key`: a per-store 256-bit key, hex, 0600, never printed."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from devstack.cli import main
from xiaodian.pki import PkiError, load_pickup_key, pickup_key_path


def test_pickup_key_is_private_hex_and_never_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    pki = tmp_path / "pki"
    assert main(["pki", "pickup-key", "store-001", "--dir", str(pki)]) == 0
    path = pickup_key_path(pki, "store-001")
    assert path == pki / "pickup" / "store-001.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    key = load_pickup_key(path)
    assert len(key) == 32
    out = capsys.readouterr()
    for text in (out.out, out.err, caplog.text):
        assert key.hex() not in text
    assert str(path) in out.out
    # A second key would invalidate every code already given to customers.
    assert main(["pki", "pickup-key", "store-001", "--dir", str(pki)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert load_pickup_key(path) == key
    main(["pki", "pickup-key", "store-002", "--dir", str(pki)])
    assert load_pickup_key(pickup_key_path(pki, "store-002")) != key


def test_bad_names_and_unsafe_key_files_are_refused(tmp_path: Path) -> None:
    assert main(["pki", "pickup-key", "../evil", "--dir", str(tmp_path)]) == 1
    assert not (tmp_path / "evil.key").exists()
    f = tmp_path / "k.key"
    f.write_text("00" * 32)
    f.chmod(0o644)
    with pytest.raises(PkiError, match="chmod 600"):
        load_pickup_key(f)
    f.chmod(0o600)
    f.write_text("zz" * 32)
    with pytest.raises(PkiError, match="not a hex pickup key") as exc:
        load_pickup_key(f)
    assert "zz" not in str(exc.value)
    f.write_text("ab" * 8 + "\n")
    with pytest.raises(PkiError, match="shorter than 128 bits"):
        load_pickup_key(f)
