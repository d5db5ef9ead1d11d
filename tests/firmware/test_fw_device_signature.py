"""The device checks the image's signature itself (fwsig.py, edverify.py, fwstage.py): the
verifier against `cryptography` in CPython and in the real micropython binary (RFC 8032's
first vector, random keys and messages, tampered signatures), the signed statement's bytes,
and the device refusing, before any switch, images the terminal's check would have
stopped, with the terminal bypassed: the frames pushed straight to the device process."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from firmware_bridge import codec, edverify, fwimage, fwsig
from firmware_bridge.fwpush import Pusher
from tests.firmware.fw_device import BRIDGE, INTERPRETERS, MICROPYTHON, Device

KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
# RFC 8032 §7.1, TEST 1 (empty message)
RFC_SECRET = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
RFC_SIG = ("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bac"
           "c61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")

VECTOR_DRIVER = """
import sys, json, binascii
sys.path.insert(0, sys.argv[1])
import edverify
u = binascii.unhexlify
out = []
for kind, a, b, c in json.loads(sys.stdin.read()):
    if kind == "sha512":
        out.append(binascii.hexlify(edverify.sha512(u(a))).decode())
    else:
        out.append(edverify.verify(u(a), u(b), u(c)))
print(json.dumps(out))
"""


def raw_pub(key: ed25519.Ed25519PrivateKey) -> bytes:
    return fwimage.raw_public(key.public_key())


def vectors() -> tuple[list[list[str]], list[object]]:
    """(cases, what cryptography / hashlib say), seeded."""
    rnd = random.Random(8032)
    cases: list[list[str]] = []
    want: list[object] = []
    for n in (0, 1, 111, 112, 127, 128, 129, 239, 240, 1000):  # SHA-512 padding edges
        data = bytes(rnd.randrange(256) for _ in range(n))
        cases.append(["sha512", data.hex(), "", ""])
        want.append(hashlib.sha512(data).hexdigest())
    cases.append(["verify", RFC_PUBLIC, "", RFC_SIG])
    want.append(True)
    for i in range(12):
        key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(rnd.randrange(256)
                                                                 for _ in range(32)))
        msg = bytes(rnd.randrange(256) for _ in range(rnd.choice((0, 32, 63, 64, 200))))
        sig = key.sign(msg)
        pub = raw_pub(key)
        kind = i % 4
        if kind == 1:  # a bit of the signature flipped (R or S)
            at = rnd.randrange(64)
            sig = sig[:at] + bytes([sig[at] ^ (1 << rnd.randrange(8))]) + sig[at + 1 :]
        elif kind == 2:  # another message
            msg = msg + b"!"
        elif kind == 3:  # another key
            pub = raw_pub(OTHER)
        cases.append(["verify", pub.hex(), msg.hex(), sig.hex()])
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)
            want.append(True)
        except Exception:
            want.append(False)
    # S >= L (malleability) is refused by both
    sig = KEY.sign(b"m")
    s = int.from_bytes(sig[32:], "little") + edverify._L
    if s < 2**256:
        cases.append(["verify", raw_pub(KEY).hex(), b"m".hex(),
                      (sig[:32] + s.to_bytes(32, "little")).hex()])
        want.append(False)
    return cases, want


def test_rfc8032_vector_is_what_cryptography_makes() -> None:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(RFC_SECRET))
    assert raw_pub(key).hex() == RFC_PUBLIC
    assert key.sign(b"").hex() == RFC_SIG  # Ed25519 is deterministic


@pytest.mark.parametrize("exe", INTERPRETERS)
def test_verifier_agrees_with_cryptography(exe: str, tmp_path: Path) -> None:
    cases, want = vectors()
    assert True in want and False in want
    driver = tmp_path / "vectors.py"
    driver.write_text(VECTOR_DRIVER)
    run = subprocess.run([exe, str(driver), str(BRIDGE)], input=json.dumps(cases),
                         capture_output=True, text=True, timeout=300, check=True)
    assert json.loads(run.stdout) == want


def test_statement_bytes_are_fixed() -> None:
    """Golden: the terminal signs and the device rebuilds exactly these bytes."""
    said = fwsig.statement(bytes(range(32)), (1, 2, 3), "xd-fridge-1", 61494)
    assert said.hex() == (
        "7869616f6469616e2d66772d763200"  # "xiaodian-fw-v2" 0
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"  # SHA-256
        "010203" "36f00000" "0b" "78642d6672696467652d31")  # version, size, len, hardware
    with pytest.raises(ValueError):
        fwsig.statement(bytes(31), (1, 2, 3), "xd-fridge-1", 1)


# -- the device refuses, the terminal bypassed ---------------------------------------------

FILES = {"main.mpy": b"M\x06" + bytes(range(256)) * 3, "codec.mpy": b"M\x06codec" * 50}


def unsigned(version: tuple[int, int, int] = (1, 1, 0)) -> bytes:
    return fwimage.pack(FILES, version, fwimage.HARDWARE, "0.1.0")


def with_device_sig(image: bytes, sig: bytes, key: ed25519.Ed25519PrivateKey = KEY) -> bytes:
    """`image` (signed) with its XSG2 trailer replaced by one carrying `sig`."""
    return image[: -fwsig.TRAILER_SIZE] + fwsig.MAGIC + fwimage.key_id(key.public_key()) + sig


def forged() -> dict[str, bytes]:
    good = fwimage.sign(unsigned(), KEY)
    parsed = fwimage.parse(good)
    sha = hashlib.sha256(parsed.signed_part).digest()
    sig2 = parsed.device_signature
    assert sig2 is not None
    newer = fwimage.sign(unsigned((1, 2, 0)), KEY)
    return {
        # a bit of the device signature flipped
        "bad_signature": with_device_sig(good, sig2[:10] + bytes([sig2[10] ^ 4]) + sig2[11:]),
        # the whole thing signed by a key the device does not hold
        "untrusted_key": fwimage.sign(unsigned(), OTHER),
        # a good signature, over a statement naming another image's hash
        "other_hash": with_device_sig(good, KEY.sign(fwsig.statement(
            hashlib.sha256(b"another image").digest(), (1, 1, 0), fwimage.HARDWARE,
            parsed.manifest.size))),
        # the manifest's version raised after signing (the old trailers kept)
        "manifest_changed": fwimage.parse(newer).signed_part + good[len(parsed.signed_part):],
        # a statement claiming another version than the manifest, over the right hash
        "statement_version": with_device_sig(good, KEY.sign(fwsig.statement(
            sha, (1, 2, 0), fwimage.HARDWARE, parsed.manifest.size))),
        # the terminal's whole-image signature only (the old form)
        "old_form": good[: -fwsig.TRAILER_SIZE],
    }


class BareDevice(Device):
    """The driver's device on the flash as the test provisioned it (Device adds a key)."""

    def __init__(self, exe: str, root: Path) -> None:
        self.exe, self.root = exe, root
        self.proc = None
        self.start()


def push(exe: str, root: Path, image: bytes) -> tuple[str, int]:
    """Every frame of an update straight to the device process, offered as the manifest's
    version: (result, exit code)."""
    dev = BareDevice(exe, root)
    pusher = Pusher(image, fwimage.parse(image).manifest.version, fwimage.HARDWARE, 8, rto_s=0.5)
    decoder, seq = codec.FrameDecoder(), 0

    def send(items: list[tuple[int, bytes, int]]) -> None:
        nonlocal seq
        for kind, payload, flags in items:
            dev.write(codec.encode_frame(kind, seq, payload, flags))
            seq += 1

    send(pusher.start(time.monotonic()))
    deadline = time.monotonic() + 60
    while pusher.state not in ("restarting", "failed") and time.monotonic() < deadline:
        for frame in decoder.feed(dev.read()):
            send(pusher.on_frame(time.monotonic(), frame))
        send(pusher.tick(time.monotonic()))
    assert dev.proc is not None
    if pusher.state == "failed":
        dev.kill()
    else:
        dev.close()
    return str(pusher.result if pusher.state == "failed" else "installed"), dev.proc.returncode


@pytest.mark.parametrize("exe", INTERPRETERS)
def test_device_refuses_what_it_cannot_verify(exe: str, tmp_path: Path) -> None:
    cases = forged()
    trusted = [KEY.public_key()]
    for name, image in cases.items():
        # the terminal would have stopped each one ...
        with pytest.raises(fwimage.ImageRefused) as refused:
            fwimage.judge(image, trusted, fwimage.HARDWARE, (1, 0, 0))
        assert refused.value.reason == "bad_signature", name
        # ... and the device does too, on its own, before the switch
        root = tmp_path / name
        root.mkdir()
        fwimage.write_device_keys(root, trusted)
        got, _ = push(exe, root, image)
        assert got == "device_bad_signature", name
        assert not (root / "fw" / "boot.json").exists(), name
        assert not (root / "fw" / "a").exists() or not os.listdir(root / "fw" / "a"), name


@pytest.mark.parametrize("exe", INTERPRETERS)
def test_device_installs_a_signed_image_and_only_with_its_key(exe: str, tmp_path: Path) -> None:
    good = fwimage.sign(unsigned(), KEY)
    fwimage.judge(good, [KEY.public_key()], fwimage.HARDWARE, (1, 0, 0))
    # a flash with no fwkeys.json (not provisioned) installs nothing
    bare = tmp_path / "bare"
    bare.mkdir()
    assert push(exe, bare, good)[0] == "device_bad_signature"
    assert not (bare / "fw" / "boot.json").exists()
    # the factory's keys: the old one rotated out, this one in
    root = tmp_path / "good"
    fwimage.write_device_keys(root, [OTHER.public_key(), KEY.public_key()])
    assert push(exe, root, good) == ("installed", 75)
    pointer = json.loads((root / "fw" / "boot.json").read_text())
    assert pointer["trial"] == "a" and pointer["sha256"] == hashlib.sha256(good).hexdigest()
    assert {p.name for p in (root / "fw" / "a").iterdir()} == set(FILES)
    assert (root / fwsig.KEYS_FILE).exists()  # the install never touches the keys


@pytest.mark.skipif(MICROPYTHON is None, reason="no micropython binary")
def test_device_refuses_an_image_naming_the_keys_file(tmp_path: Path) -> None:
    assert MICROPYTHON is not None
    image = fwimage.sign(fwimage.pack({**FILES, fwsig.KEYS_FILE: b'{"keys": []}'}, (1, 1, 0),
                                      fwimage.HARDWARE, "0.1.0"), KEY)
    fwimage.write_device_keys(tmp_path, [KEY.public_key()])
    assert push(MICROPYTHON, tmp_path, image)[0] == "bad_manifest"
    assert not (tmp_path / "fw" / "boot.json").exists()

