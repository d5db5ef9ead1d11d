"""The terminal's signed release file (xiaodian/agent_release.py): what it accepts and the
exact reason it refuses everything else."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from xiaodian import agent_release as ar
from xiaodian import pki


def _signed(tmp_path: Path, key: Ed25519PrivateKey, version: str = "1.2.0",
            payload: bytes = b"tar bytes " * 1000, arch: str = "amd64") -> Path:
    out = tmp_path / f"xiaodian-agent_{version}.xdrel"
    with out.open("wb") as f:
        ar.write(f, io.BytesIO(payload), version, arch=arch, python="3.11", schema=7, key=key)
    return out


def test_a_signed_release_verifies_and_names_its_manifest(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = _signed(tmp_path, key)
    release = ar.verify_file(path, [Ed25519PrivateKey.generate().public_key(),
                                    key.public_key()])
    assert release.manifest.version == "1.2.0" and release.manifest.schema == 7
    assert release.key_id == ar.key_id(key.public_key()).hex()
    assert path.read_bytes()[release.payload_offset:] == b"tar bytes " * 1000


@pytest.mark.parametrize("offset_from_end, reason", [(5, "bad_hash"), (-1, "bad_signature")])
def test_one_flipped_byte_anywhere_is_refused(tmp_path: Path, offset_from_end: int,
                                              reason: str) -> None:
    key = Ed25519PrivateKey.generate()
    path = _signed(tmp_path, key)
    data = bytearray(path.read_bytes())
    # In the payload (its hash no longer matches), or in the manifest (the signature fails).
    at = len(data) - offset_from_end if offset_from_end > 0 else len(ar.MAGIC) + 4 + 20
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ar.ReleaseRefused) as exc:
        ar.verify_file(path, [key.public_key()])
    assert exc.value.reason == reason


def test_unknown_key_no_key_cut_file_and_garbage_are_refused(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = _signed(tmp_path, key)
    cases = {"unknown key": ([Ed25519PrivateKey.generate().public_key()], path.read_bytes()),
             "no key": ([], path.read_bytes()),
             "cut in the header": ([key.public_key()], path.read_bytes()[:40]),
             "cut in the payload": ([key.public_key()], path.read_bytes()[:-1]),
             "not a release": ([key.public_key()], b"\x7fELF" + bytes(100))}
    reasons = {}
    for name, (keys, data) in cases.items():
        path.write_bytes(data)
        with pytest.raises(ar.ReleaseRefused) as exc:
            ar.verify_file(path, keys)
        reasons[name] = exc.value.reason
    assert reasons == {"unknown key": "bad_signature", "no key": "bad_signature",
                       "cut in the header": "bad_format", "cut in the payload": "bad_hash",
                       "not a release": "bad_format"}


def test_judge_refuses_downgrades_reinstalls_and_other_platforms() -> None:
    m = ar.Manifest("1.10.0", "amd64", "3.11", 3, "00" * 32, 1)
    ar.judge(m, running="1.9.3", arch="amd64", python="3.11")  # 10 > 9 as numbers
    ar.judge(m, running="0.0.0+dev", arch="amd64", python="3.11")  # a hand-built agent
    for running, arch, reason in (("1.10.0", "amd64", "downgrade"),
                                  ("2.0.0", "amd64", "downgrade"),
                                  ("1.9.0", "arm64", "wrong_platform")):
        with pytest.raises(ar.ReleaseRefused) as exc:
            ar.judge(m, running=running, arch=arch, python="3.11")
        assert exc.value.reason == reason


def test_a_release_version_must_be_dotted_numbers(tmp_path: Path) -> None:
    with pytest.raises(ar.ReleaseRefused) as exc:
        _signed(tmp_path, Ed25519PrivateKey.generate(), version="1.2.0~rc1")
    assert exc.value.reason == "bad_version"


def test_pki_makes_an_agent_key_apart_that_signs_releases(tmp_path: Path) -> None:
    priv, pub, _kid = pki.make_agent_key(tmp_path / "keys")
    assert priv.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        pki.make_agent_key(tmp_path / "keys")
    key = pki.load_command_private_key(priv)  # any Ed25519 PEM private key
    path = _signed(tmp_path, key)
    assert ar.verify_file(path, ar.load_public_keys([pub])).manifest.version == "1.2.0"
