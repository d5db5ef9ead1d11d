"""The terminal's own update (issue 19): one signed file holding one release directory.

    file      = MAGIC (8) | manifest length (u32 BE) | manifest | signature (72) | payload
    manifest  = canonical JSON (sorted keys, no spaces, UTF-8): format, kind "agent",
                version, arch, python, schema, payload_sha256, payload_size
    signature = key id (8: SHA-256 of the raw public key, first 8)
                | Ed25519 over DOMAIN + SHA-256(manifest)
    payload   = a tar (xz) of /opt/xiaodian/releases/VERSION/'s contents (venv/, VERSION)

The key is the `agent-signing` pair of `xiaodian pki`, apart from the command key (who may
command a store may not thereby run code on it) and from the firmware key (a fridge image
signer may not replace the terminal's software). The manifest is signed, not the payload:
the payload's hash is in it, so one Ed25519 check over ~200 bytes plus one streaming hash
judges a 30 MB file without holding it in memory. The domain prefix keeps a signature over a
manifest from ever being a signature over anything else the key signs.

Who checks: the agent before it asks for the switch (an early, cheap refusal it can
report), and again the root helper that unpacks it (it trusts nothing the agent's user
could have written). Pure apart from reading the file.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MAGIC = b"XDREL\x00\x01\n"
DOMAIN = b"xiaodian-agent-release-v1\x00"
FORMAT = 1
KIND = "agent"
SIG_SIZE = 8 + 64
MAX_MANIFEST = 4096
_CHUNK = 1 << 20
# MAJOR.MINOR.PATCH, as the signed `update` command's version (xiaodian/wire/commands.py):
# compared as integers (1.10.0 > 1.9.0), no pre-release ordering to get wrong. The package
# may carry other Debian versions; a self-update never does.
_VERSION = re.compile(r"^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$")


class ReleaseRefused(ValueError):
    """The file is not a release this terminal may install; `reason` is the result code the
    terminal reports (the same vocabulary as firmware: bad_signature, downgrade, ...)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class Manifest:
    version: str
    arch: str
    python: str
    schema: int  # the edge database's schema version this release writes (edge/store_schema)
    payload_sha256: str
    payload_size: int

    def to_bytes(self) -> bytes:
        doc = {"format": FORMAT, "kind": KIND, "version": self.version, "arch": self.arch,
               "python": self.python, "schema": self.schema,
               "payload_sha256": self.payload_sha256, "payload_size": self.payload_size}
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Release:
    manifest: Manifest
    key_id: str  # hex, of the key that signed it
    payload_offset: int  # where the payload starts in the file


def version_key(version: str) -> tuple[int, ...]:
    if not _VERSION.match(version):
        raise ReleaseRefused("bad_version", f"not a dotted version: {version!r}")
    return tuple(int(p) for p in version.split("."))


def key_id(public: Ed25519PublicKey) -> bytes:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:8]


def _statement(manifest: bytes) -> bytes:
    return DOMAIN + hashlib.sha256(manifest).digest()


def write(out: BinaryIO, payload: BinaryIO, version: str, *, arch: str, python: str,
          schema: int, key: Ed25519PrivateKey) -> Manifest:
    """Sign `payload` (a seekable file: hashed first, then copied) into `out`."""
    version_key(version)
    digest, size = hashlib.sha256(), 0
    payload.seek(0)
    while chunk := payload.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    manifest = Manifest(version, arch, python, schema, digest.hexdigest(), size)
    body = manifest.to_bytes()
    out.write(MAGIC + struct.pack(">I", len(body)) + body)
    out.write(key_id(key.public_key()) + key.sign(_statement(body)))
    payload.seek(0)
    while chunk := payload.read(_CHUNK):
        out.write(chunk)
    return manifest


def read_header(f: BinaryIO, trusted: Sequence[Ed25519PublicKey]) -> Release:
    """The manifest, once its signature is checked against `trusted`; the payload unread."""
    head = f.read(len(MAGIC) + 4)
    if len(head) < len(MAGIC) + 4 or head[: len(MAGIC)] != MAGIC:
        raise ReleaseRefused("bad_format", "not a xiaodian agent release")
    (n,) = struct.unpack(">I", head[len(MAGIC):])
    if not 0 < n <= MAX_MANIFEST:
        raise ReleaseRefused("bad_format", f"manifest of {n} bytes")
    body, sig = f.read(n), f.read(SIG_SIZE)
    if len(body) != n or len(sig) != SIG_SIZE:
        raise ReleaseRefused("bad_format", "file cut short in its header")
    if not trusted:
        raise ReleaseRefused("bad_signature", "this terminal trusts no agent-signing key")
    signer = next((k for k in trusted if key_id(k) == sig[:8]), None)
    if signer is None:
        raise ReleaseRefused("bad_signature", f"signed by an unknown key {sig[:8].hex()}")
    try:
        signer.verify(sig[8:], _statement(body))
    except InvalidSignature:
        raise ReleaseRefused("bad_signature", "the signature does not match") from None
    manifest = _manifest(body)
    return Release(manifest, sig[:8].hex(), len(MAGIC) + 4 + n + SIG_SIZE)


def _manifest(body: bytes) -> Manifest:
    try:
        doc = json.loads(body)
        if doc.get("format") != FORMAT or doc.get("kind") != KIND:
            raise ReleaseRefused("bad_format", f"format {doc.get('format')!r}, "
                                 f"kind {doc.get('kind')!r}")
        m = Manifest(str(doc["version"]), str(doc["arch"]), str(doc["python"]),
                     int(doc["schema"]), str(doc["payload_sha256"]), int(doc["payload_size"]))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        if isinstance(exc, ReleaseRefused):
            raise
        raise ReleaseRefused("bad_format", f"manifest unreadable: {exc}") from None
    version_key(m.version)
    return m


def verify_file(path: Path, trusted: Sequence[Ed25519PublicKey]) -> Release:
    """Signature, then the payload's size and hash, streamed (the file is never in memory)."""
    with path.open("rb") as f:
        release = read_header(f, trusted)
        digest, size = hashlib.sha256(), 0
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    m = release.manifest
    if size != m.payload_size or digest.hexdigest() != m.payload_sha256:
        raise ReleaseRefused("bad_hash", f"payload of {size} bytes does not match the "
                             "signed manifest")
    return release


def judge(m: Manifest, *, running: str, arch: str, python: str) -> None:
    """May a terminal running `running` on `arch` with `python` install `m`? Raises
    ReleaseRefused (`downgrade`, `wrong_platform`) if not. Re-installing the running
    version is refused too: it would prove nothing and could mask a failed update."""
    if m.arch != arch or m.python != python:
        raise ReleaseRefused("wrong_platform", f"built for {m.arch}/python{m.python}, this "
                             f"terminal is {arch}/python{python}")
    try:
        current = version_key(running)
    except ReleaseRefused:
        current = ()  # a development or hand-built version: any dotted release is newer
    if version_key(m.version) <= current:
        raise ReleaseRefused("downgrade", f"{m.version} is not newer than {running}")


def load_public_keys(paths: Iterable[Path]) -> list[Ed25519PublicKey]:
    out: list[Ed25519PublicKey] = []
    for p in paths:
        key = serialization.load_pem_public_key(p.read_bytes())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{p}: not an Ed25519 public key")
        out.append(key)
    return out
