"""A private certificate authority for one deployment: the broker's and the clients' certificates.

Layout written by `dev_pki(directory, ...)`:

    directory/ca/ca.crt, ca.key            the CA (directory 0700, key 0600)
    directory/server/broker.crt, .key      the broker's certificate (SAN localhost, 127.0.0.1)
    directory/clients/<name>.crt, .key     one per store id or service name (CN = name)

Keys are ECDSA P-256: every OpenSSL that Mosquitto and Python link against accepts it, which
is not yet true of Ed25519 in TLS. Serial numbers are random, so a later revocation list
(issue 7) can name any certificate issued here without a serial-number database.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from xiaodian.mqtt import TlsSettings

CA_CERT_NAME = "ca.crt"
CA_KEY_NAME = "ca.key"
SERVER_CN = "broker"

# A certificate name becomes a file name and, on the broker, the MQTT username that the ACL
# substitutes into topics (%u), so it must not contain "/", "+", "#", spaces or dots-only.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# Tolerate clocks that run a little behind the issuing machine's.
_BACKDATE = dt.timedelta(minutes=5)


class PkiError(Exception):
    """Existing PKI files that cannot be used as they are; the message names the file."""


@dataclass(frozen=True)
class DevPki:
    """A CA plus a broker certificate and one client certificate per store and service."""

    directory: Path
    ca: Path
    server_cert: Path
    server_key: Path
    stores: tuple[str, ...]
    services: tuple[str, ...]

    def client(self, name: str) -> TlsSettings:
        """TLS settings for the store or service `name` (its certificate's CN)."""
        if name not in self.stores and name not in self.services:
            raise KeyError(f"no client certificate for {name!r} in {self.directory}")
        cert, key = _leaf_paths(self.directory / "clients", name)
        return TlsSettings(ca=self.ca, cert=cert, key=key)


def check_name(name: str) -> str:
    """Return `name` if it can be a certificate CN, file name and MQTT username."""
    if not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"certificate name {name!r}: use 1-64 letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def create_ca(directory: Path, common_name: str = "xiaodian CA", days: int = 3650) -> Path:
    """Create a CA in `directory` (ca.crt, ca.key) and return the certificate's path.

    Refuses to overwrite an existing CA: replacing it would silently invalidate every
    certificate already handed out.
    """
    if days < 1:
        raise ValueError("days: must be at least 1")
    cert_path, key_path = directory / CA_CERT_NAME, directory / CA_KEY_NAME
    for p in (cert_path, key_path):
        if p.exists():
            raise FileExistsError(f"CA already exists: {p}")
    _private_dir(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        # path_length 0: this CA signs leaf certificates only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,  # the revocation list of issue 7 is signed by this key
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    # Key first: a crash in between leaves a key without a certificate, which create_ca
    # then refuses loudly rather than pairing a new certificate with a stale key.
    _write_file(key_path, _key_pem(key), 0o600)
    _write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path


def issue_certificate(
    ca_dir: Path,
    out_dir: Path,
    common_name: str,
    *,
    server: bool = False,
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
    days: int = 397,
) -> tuple[Path, Path]:
    """Issue a certificate signed by the CA in `ca_dir`; return (cert, key) paths.

    Files are `out_dir/<common_name>.crt` and `.key` (mode 0600); existing files are never
    overwritten. A server certificate names `hosts` (DNS names and IP addresses) and may only
    authenticate a server; a client certificate may only authenticate a client, and its CN
    is the MQTT username the broker's ACL sees. Validity never exceeds the CA's.
    """
    check_name(common_name)
    if days < 1:
        raise ValueError("days: must be at least 1")
    if server and not hosts:
        raise ValueError("hosts: a server certificate needs at least one host name or address")
    cert_path, key_path = _leaf_paths(out_dir, common_name)
    for p in (cert_path, key_path):
        if p.exists():
            raise FileExistsError(f"certificate already exists: {p}")
    ca_cert, ca_key = _load_ca(ca_dir)
    _private_dir(out_dir)

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,  # ECDHE-ECDSA and TLS 1.3 need signatures only
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(h) for h in hosts]), critical=False
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_file(key_path, _key_pem(key), 0o600)
    _write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def dev_pki(
    directory: Path,
    stores: Sequence[str],
    services: Sequence[str] = ("cloud-gateway",),
) -> DevPki:
    """Make (or complete) a CA, a broker certificate and a client certificate per name.

    Idempotent: files that exist are checked (signed by this CA, key matches, not expired)
    and reused; missing ones are issued. A stale file is an error, not silently replaced.
    """
    stores_t, services_t = tuple(stores), tuple(services)
    names = stores_t + services_t
    for name in names:
        check_name(name)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        # A store named like a service would be given the service's ACL rights.
        raise ValueError(f"names used twice across stores and services: {duplicates}")

    ca_dir = directory / "ca"
    if not (ca_dir / CA_CERT_NAME).exists() and not (ca_dir / CA_KEY_NAME).exists():
        create_ca(ca_dir)
    ca_cert, _ = _load_ca(ca_dir)

    server_cert, server_key = _ensure_leaf(ca_dir, ca_cert, directory / "server", SERVER_CN, True)
    for name in names:
        _ensure_leaf(ca_dir, ca_cert, directory / "clients", name, False)
    return DevPki(
        directory=directory,
        ca=ca_dir / CA_CERT_NAME,
        server_cert=server_cert,
        server_key=server_key,
        stores=stores_t,
        services=services_t,
    )


def _ensure_leaf(
    ca_dir: Path, ca_cert: x509.Certificate, out_dir: Path, name: str, server: bool
) -> tuple[Path, Path]:
    cert_path, key_path = _leaf_paths(out_dir, name)
    if not cert_path.exists() and not key_path.exists():
        return issue_certificate(ca_dir, out_dir, name, server=server)
    problem = _leaf_problem(ca_cert, cert_path, key_path)
    if problem:
        raise PkiError(f"{cert_path}: {problem}; delete it and its key to issue a new one")
    return cert_path, key_path


def _leaf_problem(ca_cert: x509.Certificate, cert_path: Path, key_path: Path) -> str | None:
    if not cert_path.exists() or not key_path.exists():
        return "certificate or key missing (an interrupted issue?)"
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        return f"not issued by the CA in use ({exc.__class__.__name__})"
    if cert.public_key() != key.public_key():
        return "does not match its key"
    if cert.not_valid_after_utc <= dt.datetime.now(dt.UTC):
        return "expired"
    return None


def _leaf_paths(out_dir: Path, name: str) -> tuple[Path, Path]:
    return out_dir / f"{name}.crt", out_dir / f"{name}.key"


def _load_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
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


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # Unencrypted: the broker and the agents start unattended. The 0600 mode protects it.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _private_dir(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)  # mkdir's mode is filtered by the umask and skipped if it exists


def _write_file(path: Path, data: bytes, mode: int) -> None:
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
