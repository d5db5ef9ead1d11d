"""Signed firmware images: `xiaodian firmware build/sign/verify`, the firmware-signing key,
and every refusal before anything changes (unsigned, wrong key, tampered, wrong hardware,
downgrade, too large, fuzzed manifests)."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from devstack.cli import main as xiaodian
from firmware_bridge import fwimage
from xiaodian import pki

HW = fwimage.HARDWARE


def small_image(version: tuple[int, int, int] = (1, 1, 0), hardware: str = HW) -> bytes:
    return fwimage.pack({"main.mpy": b"M\x06main", "codec.mpy": b"M\x06codec"}, version,
                        hardware, "0.1.0")


def test_build_sign_verify_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert xiaodian(["pki", "firmware-key", "--dir", str(tmp_path / "keys")]) == 0
    key = tmp_path / "keys" / pki.FIRMWARE_KEY_NAME
    pub = tmp_path / "keys" / pki.FIRMWARE_PUB_NAME
    assert key.stat().st_mode & 0o777 == 0o600
    # a second one would orphan every image signed with the first
    assert xiaodian(["pki", "firmware-key", "--dir", str(tmp_path / "keys")]) == 1
    image = tmp_path / "fw.xdfw"
    assert xiaodian(["firmware", "build", "--version", "1.2.0", "-o", str(image)]) == 0
    parsed = fwimage.parse(image.read_bytes())
    names = [n for n, _ in parsed.manifest.files]
    assert "main.mpy" in names and "codec.mpy" in names and "fwmsg.mpy" in names
    assert "fwversion.mpy" in names and "fwboot.mpy" not in names and "fwslots.mpy" not in names
    assert all(parsed.files()[n][:1] == b"M" for n in names)  # .mpy files, by their magic
    assert parsed.manifest.version == (1, 2, 0) and parsed.manifest.hardware == HW
    assert parsed.manifest.sha256 == hashlib.sha256(parsed.body).hexdigest()
    assert parsed.signature is None
    capsys.readouterr()
    assert xiaodian(["firmware", "verify", str(image), "--pub", str(pub)]) == 2
    assert "bad_signature: the image is not signed" in capsys.readouterr().err
    assert xiaodian(["firmware", "sign", str(image), "--key", str(key)]) == 0
    assert xiaodian(["firmware", "verify", str(image), "--pub", str(pub), "--running",
                     "1.0.0"]) == 0
    assert "ok: version 1.2.0" in capsys.readouterr().out
    assert xiaodian(["firmware", "verify", str(image), "--pub", str(pub), "--running",
                     "1.2.0"]) == 2
    assert "downgrade" in capsys.readouterr().err


def test_every_refusal_has_its_reason() -> None:
    key, other = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    trusted = [key.public_key()]
    good = fwimage.sign(small_image(), key)
    assert fwimage.judge(good, trusted, HW, (1, 0, 0)).manifest.version == (1, 1, 0)

    def reason(raw: bytes, hardware: str = HW, running: tuple[int, int, int] | None = (1, 0, 0),
               max_size: int = fwimage.MAX_IMAGE) -> str:
        with pytest.raises(fwimage.ImageRefused) as caught:
            fwimage.judge(raw, trusted, hardware, running, max_size)
        return caught.value.reason

    assert reason(small_image()) == "bad_signature"  # unsigned
    assert reason(fwimage.sign(small_image(), other)) == "bad_signature"  # untrusted key
    flipped = bytearray(good)
    flipped[-70] ^= 1  # inside the signature
    assert reason(bytes(flipped)) == "bad_signature"
    body_at = len(good) - fwimage.TRAILER_SIZE - 3
    tampered = bytearray(good)
    tampered[body_at] ^= 0x20  # the body: signature no longer matches
    assert reason(bytes(tampered)) == "bad_signature"
    # signed, but the manifest's hash is not the body's: the release tool packed it wrong
    raw = small_image()
    meta_len = struct.unpack_from("<H", raw, 5)[0]
    meta = json.loads(raw[7 : 7 + meta_len])
    meta["sha256"] = "00" * 32
    new_meta = json.dumps(meta).encode()
    wrong = raw[:5] + struct.pack("<H", len(new_meta)) + new_meta + raw[7 + meta_len :]
    assert reason(fwimage.sign(wrong, key)) == "bad_hash"
    assert reason(good, hardware="xd-fridge-2") == "wrong_hardware"
    assert reason(good, running=(1, 1, 0)) == "downgrade"
    assert reason(good, running=(2, 0, 0)) == "downgrade"
    assert reason(good, max_size=len(good) - 1) == "too_large"
    assert fwimage.judge(good, trusted, HW, None)  # running unknown: the device judges


def test_an_image_needing_a_newer_agent_is_refused_with_its_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    needs = fwimage.sign(fwimage.pack({"main.mpy": b"M\x06main"}, (1, 1, 0), HW, "0.10.0"), key)
    trusted = [key.public_key()]
    for agent in ("0.9.9", "0.2.0", "0.1.0"):  # 0.10 > 0.9: compared as numbers, not text
        with pytest.raises(fwimage.ImageRefused) as caught:
            fwimage.judge(needs, trusted, HW, (1, 0, 0), agent=agent)
        assert caught.value.reason == "agent_too_old"
        assert "needs agent 0.10.0 or newer, this one is " + agent in str(caught.value)
    for agent in ("0.10.0", "0.10.0.1", "1.0.0"):
        assert fwimage.judge(needs, trusted, HW, (1, 0, 0), agent=agent)
    assert fwimage.judge(needs, trusted, HW, (1, 0, 0))  # no pusher named: not judged
    odd = fwimage.sign(fwimage.pack({"main.mpy": b"M"}, (1, 1, 0), HW, "latest"), key)
    with pytest.raises(fwimage.ImageRefused, match="bad_manifest: min_agent"):
        fwimage.judge(odd, trusted, HW, (1, 0, 0), agent="0.1.0")
    # Through the CLI: verify with --agent, and flash (this package is the pusher) refuses
    # before it opens the port (the port does not exist: any other path would fail on it).
    img, pub = tmp_path / "fw.xdfw", tmp_path / "k.pub"
    img.write_bytes(needs)
    pub.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    capsys.readouterr()
    assert xiaodian(["firmware", "verify", str(img), "--pub", str(pub), "--agent", "0.9.0"]) == 2
    assert "agent_too_old: image needs agent 0.10.0" in capsys.readouterr().err
    assert xiaodian(["firmware", "flash", str(img), "--pub", str(pub), "--port",
                     str(tmp_path / "no-such-port")]) == 2
    assert "agent_too_old" in capsys.readouterr().err


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzzed_images_are_refused_cleanly(data: st.DataObject) -> None:
    """Any damage to an image is a clean ImageRefused, never another exception."""
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32))
    good = fwimage.sign(small_image(), key)
    raw = bytearray(good)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    damaged = bytes(raw[:cut])
    if damaged == good:
        return
    with pytest.raises(fwimage.ImageRefused):
        fwimage.judge(damaged, [key.public_key()], HW, (1, 0, 0))


def test_pack_refuses_path_names() -> None:
    for bad in ("../main.mpy", "a/b.mpy", ".hidden", ""):
        with pytest.raises(ValueError):
            fwimage.pack({bad: b"x"}, (1, 0, 0), HW, "0.1.0")
