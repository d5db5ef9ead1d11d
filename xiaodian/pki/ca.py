"""The CA and the deployment's PKI directory: create the CA, set up or load the directory
(CA, broker certificate, client certificates), and the idempotent development PKI."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from xiaodian.mqtt import TlsSettings

from .files import (
    CA_CERT_NAME,
    CA_KEY_NAME,
    CRL_NAME,
    key_pem,
    leaf_paths,
    load_ca,
    private_dir,
    read_index,
    write_file,
)
from .issue import issue_certificate
from .names import BACKDATE, Kind, PkiError, check_name
from .revoke import crl_next_update, write_crl

SERVER_CN = "broker"


@dataclass(frozen=True)
class DevPki:
    """A CA plus a broker certificate and one client certificate per store and service."""

    directory: Path
    ca: Path
    server_cert: Path
    server_key: Path
    stores: tuple[str, ...]
    services: tuple[str, ...]
    crl: Path | None = None  # the broker checks client certificates against it when set

    def client(self, name: str) -> TlsSettings:
        """TLS settings for the store or service `name` (its certificate's CN)."""
        if name not in self.stores and name not in self.services:
            raise KeyError(f"no client certificate for {name!r} in {self.directory}")
        cert, key = leaf_paths(self.directory / "clients", name)
        return TlsSettings(ca=self.ca, cert=cert, key=key)


def create_ca(directory: Path, common_name: str = "xiaodian CA", days: int = 3650) -> Path:
    """Create a CA in `directory` (ca.crt, ca.key, an empty crl.pem); return the cert's path.

    Refuses to overwrite an existing CA: replacing it would silently invalidate every
    certificate already handed out.
    """
    if days < 1:
        raise ValueError("days: must be at least 1")
    cert_path, key_path = directory / CA_CERT_NAME, directory / CA_KEY_NAME
    for p in (cert_path, key_path):
        if p.exists():
            raise FileExistsError(f"CA already exists: {p}")
    private_dir(directory)
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
        .not_valid_before(now - BACKDATE)
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
                crl_sign=True,
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
    write_file(key_path, key_pem(key), 0o600)
    write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    # A broker with `crlfile` refuses every client while the CRL is missing, so a CA always
    # has one, even when nothing is revoked yet.
    write_crl(directory)
    return cert_path


def init_pki(
    directory: Path,
    hosts: Sequence[str] = ("localhost", "127.0.0.1"),
    *,
    ca_days: int = 3650,
    server_days: int = 397,
) -> DevPki:
    """A new CA with its CRL and the broker's certificate for `hosts`."""
    create_ca(directory / "ca", days=ca_days)
    issue_certificate(
        directory / "ca", directory / "server", SERVER_CN,
        server=True, hosts=tuple(hosts), days=server_days,
    )  # fmt: skip
    return load_pki(directory)


def load_pki(directory: Path) -> DevPki:
    """The PKI in `directory` as the broker sees it: CA, server certificate, CRL, names.

    Stores are those whose key is kept in clients/ (locally issued); services are every
    service the CA ever certified, since the broker's ACL must name them all.
    """
    ca_dir = directory / "ca"
    load_ca(ca_dir)
    server_cert, server_key = leaf_paths(directory / "server", SERVER_CN)
    if not server_cert.is_file() or not server_key.is_file():
        raise PkiError(f"{server_cert}: broker certificate or key missing (run `pki init`)")
    stores: list[str] = []
    services: list[str] = []
    for item in read_index(ca_dir):
        if item.kind == "service" and item.name not in services:
            services.append(item.name)
        elif item.kind == "store" and item.name not in stores:
            cert, key = leaf_paths(directory / "clients", item.name)
            if cert.is_file() and key.is_file():
                stores.append(item.name)
    crl = ca_dir / CRL_NAME
    return DevPki(
        directory=directory,
        ca=ca_dir / CA_CERT_NAME,
        server_cert=server_cert,
        server_key=server_key,
        stores=tuple(stores),
        services=tuple(services),
        crl=crl if crl.is_file() else None,
    )


def dev_pki(
    directory: Path,
    stores: Sequence[str],
    services: Sequence[str] = ("cloud-gateway",),
) -> DevPki:
    """Make (or complete) a CA, a broker certificate and a client certificate per name.

    Idempotent: files that exist are checked (signed by this CA, key matches, not expired)
    and reused; missing ones are issued. A stale file is an error, not silently replaced.
    A CRL that will go stale within a day is re-signed.
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
    ca_cert, _ = load_ca(ca_dir)
    next_update = crl_next_update(ca_dir)
    if next_update is None or next_update < dt.datetime.now(dt.UTC) + dt.timedelta(days=1):
        write_crl(ca_dir)

    server_cert, server_key = _ensure_leaf(
        ca_dir, ca_cert, directory / "server", SERVER_CN, "server"
    )
    for name in stores_t:
        _ensure_leaf(ca_dir, ca_cert, directory / "clients", name, "store")
    for name in services_t:
        _ensure_leaf(ca_dir, ca_cert, directory / "clients", name, "service")
    return DevPki(
        directory=directory,
        ca=ca_dir / CA_CERT_NAME,
        server_cert=server_cert,
        server_key=server_key,
        stores=stores_t,
        services=services_t,
        crl=ca_dir / CRL_NAME,
    )


def _ensure_leaf(
    ca_dir: Path, ca_cert: x509.Certificate, out_dir: Path, name: str, kind: Kind
) -> tuple[Path, Path]:
    cert_path, key_path = leaf_paths(out_dir, name)
    if not cert_path.exists() and not key_path.exists():
        return issue_certificate(ca_dir, out_dir, name, server=kind == "server", kind=kind)
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
