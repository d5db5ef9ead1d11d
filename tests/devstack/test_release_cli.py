"""`xiaodian terminal sign-release | verify-release` (devstack/release_cli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.cli import main as xiaodian
from xiaodian import agent_release
from xiaodian.pki import make_agent_key


def test_sign_then_verify_as_a_terminal_would(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    key, pub, kid = make_agent_key(tmp_path / "k")
    _other_key, other_pub, _ = make_agent_key(tmp_path / "other")
    payload = tmp_path / "payload.tar.xz"
    payload.write_bytes(b"not really a tarball, the signature does not care")
    out = tmp_path / "xiaodian-agent_1.2.0_amd64.xdrel"
    assert xiaodian(["terminal", "sign-release", "--key", str(key), "--version", "1.2.0",
                     "--payload", str(payload), "--schema", "4", "--out", str(out)]) == 0
    m = agent_release.verify_file(out, agent_release.load_public_keys([pub])).manifest
    assert (m.version, m.arch, m.python, m.schema) == ("1.2.0", "amd64", "3.11", 4)
    assert not out.with_name(out.name + ".tmp").exists()

    capsys.readouterr()
    assert xiaodian(["terminal", "verify-release", str(out), "--pub", str(pub),
                     "--running", "1.1.9"]) == 0
    assert f"signed by {kid}" in capsys.readouterr().out
    assert xiaodian(["terminal", "verify-release", str(out), "--pub", str(other_pub)]) == 2
    assert "bad_signature" in capsys.readouterr().err
    assert xiaodian(["terminal", "verify-release", str(out), "--pub", str(pub),
                     "--running", "1.2.0"]) == 2
    assert "downgrade" in capsys.readouterr().err
    # A version a terminal would not take is refused at signing already.
    assert xiaodian(["terminal", "sign-release", "--key", str(key), "--version", "1.2",
                     "--payload", str(payload), "--schema", "4", "--out", str(out)]) == 2
    assert not out.with_name(out.name + ".tmp").exists()
