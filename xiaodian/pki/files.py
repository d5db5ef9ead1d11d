"""The PKI directory on disk: the CA's key pair, its index of issued certificates, and
private files written atomically."""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from .names import Kind, PkiError

CA_CERT_NAME = "ca.crt"
CA_KEY_NAME = "ca.key"
CRL_NAME = "crl.pem"
INDEX_NAME = "index.json"
ISSUED_DIR = "issued"


@dataclass(frozen=True)
class Issued:
    """One certificate the CA issued, and whether the CRL names it."""

    serial: int
    name: str
    kind: Kind
    not_before: dt.datetime
    not_after: dt.datetime
    revoked_at: dt.datetime | None = None
    reason: str | None = None

    @property
    def serial_hex(self) -> str:
        return format(self.serial, "x")


def load_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA's certificate and key; PkiError if either is missing or they do not match."""
    cert_path, key_path = ca_dir / CA_CERT_NAME, ca_dir / CA_KEY_NAME
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise PkiError(f"CA incomplete: {exc.filename} missing") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{key_path}: expected an EC private key")
    if cert.public_key() != key.public_key():
        raise PkiError(f"{cert_path}: does not match {key_path}")
    return cert, key


def read_index(ca_dir: Path) -> list[Issued]:
    """Every certificate the CA issued, oldest first (revocation is the CRL's business)."""
    path = ca_dir / INDEX_NAME
    if not path.exists():
        return []
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return [
            Issued(
                serial=int(r["serial"], 16),
                name=r["name"],
                kind=r["kind"],
                not_before=dt.datetime.fromisoformat(r["not_before"]),
                not_after=dt.datetime.fromisoformat(r["not_after"]),
            )
            for r in raw["certificates"]
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise PkiError(f"{path}: unreadable ({exc.__class__.__name__}: {exc})") from None


def write_index(ca_dir: Path, items: list[Issued]) -> None:
    """Replace index.json with `items` (serial, name, kind, validity; not revocation)."""
    rows = [
        {
            "serial": i.serial_hex,
            "name": i.name,
            "kind": i.kind,
            "not_before": i.not_before.isoformat(),
            "not_after": i.not_after.isoformat(),
        }
        for i in items
    ]
    text = json.dumps({"certificates": rows}, indent=1) + "\n"
    write_file(ca_dir / INDEX_NAME, text.encode(), 0o644)


def leaf_paths(out_dir: Path, name: str) -> tuple[Path, Path]:
    """(certificate, key) of `name` in `out_dir`: <name>.crt and <name>.key."""
    return out_dir / f"{name}.crt", out_dir / f"{name}.key"


def issued_path(ca_dir: Path, serial: int) -> Path:
    """The CA's archived copy of the certificate with `serial` (renewal reads it)."""
    return ca_dir / ISSUED_DIR / f"{serial:x}.pem"


def key_pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    # Unencrypted: the broker and the agents start unattended. The 0600 mode protects it.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def private_dir(directory: Path) -> None:
    """Make `directory` (and parents) if missing; either way it ends up mode 0700."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)  # mkdir's mode is filtered by the umask and skipped if it exists


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with `mode` from the start, so a key is never briefly world-readable."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
