"""A private certificate authority for one deployment: the broker's and the clients' certificates.

Layout of a PKI directory (`init_pki`, `dev_pki`):

    ca/ca.crt, ca.key          the CA (directory 0700, key 0600)
    ca/crl.pem                 the revocation list, signed by the CA, always present
    ca/index.json              every certificate the CA issued: serial, name, kind, validity
    ca/issued/<serial>.pem     a copy of each of those certificates (renewal reads them)
    server/broker.crt, .key    the broker's certificate (SAN localhost, 127.0.0.1 by default)
    clients/<name>.crt, .key   certificates whose key was made here (services, local stores)

A store's key should be made on the store (`make_store_key`) so that only its CSR travels;
`sign_csr` is the CA's half. Keys are ECDSA P-256: every OpenSSL that Mosquitto and Python
link against accepts it in TLS, which is not yet true of Ed25519. Serial numbers are random,
so the CRL can name any certificate without a serial counter.

The command-signing key (`make_command_key`) is an Ed25519 pair kept apart from the CA: a
stolen TLS CA lets an attacker join the broker, not command a store.

The CLI runs one command at a time; nothing here locks index.json against concurrent writers.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from xiaodian.mqtt import TlsSettings
from xiaodian.wire.commands import key_id_for

CA_CERT_NAME = "ca.crt"
CA_KEY_NAME = "ca.key"
CRL_NAME = "crl.pem"
INDEX_NAME = "index.json"
ISSUED_DIR = "issued"
SERVER_CN = "broker"
COMMAND_KEY_NAME = "command-signing.key"
COMMAND_PUB_NAME = "command-signing.pub"
DEFAULT_CRL_DAYS = 30
MAX_CSR_BYTES = 16 * 1024  # a P-256 CSR is ~0.5 KB; anything near this is not ours

Kind = Literal["server", "store", "service"]

# A certificate name becomes a file name and, on the broker, the MQTT username that the ACL
# substitutes into topics (%u), so it must not contain "/", "+", "#", spaces or dots-only.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# Tolerate clocks that run a little behind the issuing machine's.
_BACKDATE = dt.timedelta(minutes=5)
_REASONS = {r.name: r for r in x509.ReasonFlags if r is not x509.ReasonFlags.remove_from_crl}
REVOCATION_REASONS = tuple(_REASONS)


class PkiError(Exception):
    """Existing PKI files that cannot be used as they are; the message names the file."""


class CsrError(ValueError):
    """A certificate signing request the CA refuses to sign; the message says why."""


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
        cert, key = _leaf_paths(self.directory / "clients", name)
        return TlsSettings(ca=self.ca, cert=cert, key=key)


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


def check_name(name: str) -> str:
    """Return `name` if it can be a certificate CN, file name and MQTT username."""
    if not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"certificate name {name!r}: use 1-64 letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


# ------------------------------------------------------------------------------ the CA


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
    _write_file(key_path, _key_pem(key), 0o600)
    _write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
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
    _load_ca(ca_dir)
    server_cert, server_key = _leaf_paths(directory / "server", SERVER_CN)
    if not server_cert.is_file() or not server_key.is_file():
        raise PkiError(f"{server_cert}: broker certificate or key missing (run `pki init`)")
    stores: list[str] = []
    services: list[str] = []
    for item in _read_index(ca_dir):
        if item.kind == "service" and item.name not in services:
            services.append(item.name)
        elif item.kind == "store" and item.name not in stores:
            cert, key = _leaf_paths(directory / "clients", item.name)
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


# ------------------------------------------------------------------------------ issuing


def issue_certificate(
    ca_dir: Path,
    out_dir: Path,
    common_name: str,
    *,
    server: bool = False,
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
    days: int = 397,
    kind: Kind | None = None,
) -> tuple[Path, Path]:
    """Issue a certificate signed by the CA in `ca_dir`; return (cert, key) paths.

    Files are `out_dir/<common_name>.crt` and `.key` (mode 0600); existing files are never
    overwritten. A server certificate names `hosts` (DNS names and IP addresses) and may only
    authenticate a server; a client certificate may only authenticate a client, and its CN
    is the MQTT username the broker's ACL sees. `kind` (default: server or store) is what
    the CA's index records. Validity never exceeds the CA's.
    """
    check_name(common_name)
    if server and not hosts:
        raise ValueError("hosts: a server certificate needs at least one host name or address")
    kind = kind or ("server" if server else "store")
    cert_path, key_path = _leaf_paths(out_dir, common_name)
    for p in (cert_path, key_path):
        if p.exists():
            raise FileExistsError(f"certificate already exists: {p}")
    _check_kind(ca_dir, common_name, kind)
    _private_dir(out_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _sign_leaf(ca_dir, common_name, key.public_key(), kind, hosts, days)
    _write_file(key_path, _key_pem(key), 0o600)
    _write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def issue_service(directory: Path, name: str, days: int = 397) -> tuple[Path, Path]:
    """A client certificate for a cloud-side service (ACL: all store traffic)."""
    return issue_certificate(
        directory / "ca", directory / "clients", name, days=days, kind="service"
    )


def make_store_key(store: str, out_dir: Path) -> tuple[Path, Path]:
    """On the store: a new private key (0600, directory 0700) and a CSR for it.

    Returns (key, csr). Only the CSR leaves the store; the CA answers with a certificate.
    """
    check_name(store)
    key_path, csr_path = out_dir / f"{store}.key", out_dir / f"{store}.csr"
    for p in (key_path, csr_path):
        if p.exists():
            raise FileExistsError(f"already exists: {p}")
    _private_dir(out_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, store)]))
        .sign(key, hashes.SHA256())
    )
    _write_file(key_path, _key_pem(key), 0o600)
    _write_file(csr_path, csr.public_bytes(serialization.Encoding.PEM), 0o644)
    return key_path, csr_path


def sign_csr(ca_dir: Path, csr_pem: bytes, store: str, days: int = 397) -> x509.Certificate:
    """The CA's half of store enrolment: check the CSR, then certify its key for `store`.

    The CA decides everything in the certificate (client-only usage, no CA rights); the CSR
    contributes only its public key and a CN, which must be exactly `store`. A CSR asking
    for anything else is refused rather than trimmed, since it means a confused or hostile
    requester.
    """
    check_name(store)
    csr = _check_csr(csr_pem, store)
    _check_kind(ca_dir, store, "store")
    public_key = csr.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)  # _check_csr
    return _sign_leaf(ca_dir, store, public_key, "store", (), days)


def issue_store(directory: Path, store: str, days: int = 397) -> tuple[Path, Path]:
    """`make_store_key` and `sign_csr` in one place, for stores set up by the operator.

    Key and certificate land in clients/; the CSR is deleted once signed.
    """
    clients = directory / "clients"
    cert_path, key_path = _leaf_paths(clients, store)
    if cert_path.exists():
        raise FileExistsError(f"certificate already exists: {cert_path}")
    _check_kind(directory / "ca", store, "store")
    key_path, csr_path = make_store_key(store, clients)
    cert = sign_csr(directory / "ca", csr_path.read_bytes(), store, days)
    _write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    csr_path.unlink()
    return cert_path, key_path


def renew(directory: Path, name: str, days: int = 397) -> x509.Certificate:
    """A new certificate for the key of `name`'s newest certificate, valid from now.

    The previous certificate is neither revoked nor deleted: it stays valid until it expires,
    so a store can switch over whenever it next connects. The new one replaces the file in
    clients/ (or server/) when the key there is the one certified. A revoked certificate's
    key is never certified again: it may be compromised, so that needs a new key and CSR.
    """
    ca_dir = directory / "ca"
    current = [i for i in list_certificates(ca_dir) if i.name == name]
    if not current:
        raise PkiError(f"no certificate issued for {name!r} in {ca_dir}")
    latest = max(current, key=lambda i: i.not_after)
    if latest.revoked_at is not None:
        raise PkiError(
            f"{name}: newest certificate {latest.serial_hex} is revoked; "
            "make a new key and CSR instead of renewing"
        )
    old = x509.load_pem_x509_certificate(_issued_path(ca_dir, latest.serial).read_bytes())
    public_key = old.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    hosts: tuple[str, ...] = ()
    if latest.kind == "server":
        san = old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        hosts = tuple(str(v) for v in san.get_values_for_type(x509.DNSName)) + tuple(
            str(v) for v in san.get_values_for_type(x509.IPAddress)
        )
    cert = _sign_leaf(ca_dir, name, public_key, latest.kind, hosts, days)
    out_dir = directory / ("server" if latest.kind == "server" else "clients")
    cert_path, key_path = _leaf_paths(out_dir, name)
    if cert_path.is_file() and key_path.is_file():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if key.public_key() == public_key:
            _write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert


# ------------------------------------------------------------------------------ revocation


def revoke(
    ca_dir: Path, name_or_serial: str, reason: str = "unspecified", *, crl_days: int = 30
) -> list[Issued]:
    """Revoke every unexpired certificate of a name, or one by hex serial; rewrite the CRL.

    Returns what was newly revoked. A name is looked up first, so a store whose name looks
    like hex is still a name; a serial may be written `0x...` or with colons.
    """
    if reason not in _REASONS:
        raise ValueError(f"reason: one of {', '.join(REVOCATION_REASONS)}")
    issued = list_certificates(ca_dir)
    now = dt.datetime.now(dt.UTC)
    targets = [i for i in issued if i.name == name_or_serial and i.not_after > now]
    if not any(i.name == name_or_serial for i in issued):
        serial = _parse_serial(name_or_serial)
        targets = [i for i in issued if i.serial == serial]
        if not targets:
            raise PkiError(f"{name_or_serial!r}: no certificate of that name or serial")
    new = [i for i in targets if i.revoked_at is None]
    entries = _crl_entries(ca_dir)
    for item in new:
        entries[item.serial] = (now, reason)
    write_crl(ca_dir, entries, days=crl_days)
    return [Issued(i.serial, i.name, i.kind, i.not_before, i.not_after, now, reason) for i in new]


def write_crl(
    ca_dir: Path,
    entries: dict[int, tuple[dt.datetime, str]] | None = None,
    *,
    days: int = DEFAULT_CRL_DAYS,
    now: dt.datetime | None = None,
) -> Path:
    """Sign and write ca/crl.pem with `entries` (serial -> (revoked at, reason)).

    `entries` None keeps the current list (a refresh). Past its next-update a CRL is stale
    and OpenSSL (so Mosquitto) then refuses *every* client: refresh well before, e.g. weekly
    from cron with `xiaodian pki crl`.
    """
    if days < 1:
        raise ValueError("days: must be at least 1")
    ca_cert, ca_key = _load_ca(ca_dir)
    if entries is None:
        entries = _crl_entries(ca_dir)
    now = now or dt.datetime.now(dt.UTC)
    path = ca_dir / CRL_NAME
    number = 1
    if path.exists():
        try:
            old = x509.load_pem_x509_crl(path.read_bytes())
            number = old.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
        except (ValueError, x509.ExtensionNotFound):
            raise PkiError(f"{path}: not a CRL with a CRL number; refusing to replace it") from None
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - _BACKDATE)
        .next_update(now + dt.timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    for serial, (when, reason) in sorted(entries.items()):
        revoked = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
        if reason != "unspecified":  # RFC 5280 5.3.1: omit rather than say "unspecified"
            revoked = revoked.add_extension(x509.CRLReason(_REASONS[reason]), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    crl = builder.sign(ca_key, hashes.SHA256())
    _write_file(path, crl.public_bytes(serialization.Encoding.PEM), 0o644)
    return path


def crl_next_update(ca_dir: Path) -> dt.datetime | None:
    path = ca_dir / CRL_NAME
    if not path.exists():
        return None
    return x509.load_pem_x509_crl(path.read_bytes()).next_update_utc


def list_certificates(ca_dir: Path) -> list[Issued]:
    """Everything in the index, oldest first, with revocation taken from the CRL."""
    entries = _crl_entries(ca_dir)
    out = []
    for item in _read_index(ca_dir):
        if item.serial in entries:
            when, reason = entries[item.serial]
            item = Issued(
                item.serial, item.name, item.kind, item.not_before, item.not_after, when, reason
            )
        out.append(item)
    return out


# ------------------------------------------------------------------------------ command keys


def make_command_key(directory: Path) -> tuple[Path, Path, str]:
    """A new Ed25519 command-signing pair: (private 0600, public, key id).

    Refuses to overwrite: stores pin the public key, and losing the private key would
    silently make every command unverifiable.
    """
    priv_path, pub_path = directory / COMMAND_KEY_NAME, directory / COMMAND_PUB_NAME
    for p in (priv_path, pub_path):
        if p.exists():
            raise FileExistsError(f"command key already exists: {p}")
    _private_dir(directory)
    key = ed25519.Ed25519PrivateKey.generate()
    _write_file(priv_path, _key_pem(key), 0o600)
    pub_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_file(pub_path, pub_pem, 0o644)
    return priv_path, pub_path, key_id_for(key.public_key())


def load_command_private_key(path: Path) -> ed25519.Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise PkiError(f"{path}: not an Ed25519 private key")
    return key


def load_command_public_key(path: Path) -> ed25519.Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise PkiError(f"{path}: not an Ed25519 public key")
    return key


# ------------------------------------------------------------------------------ pickup keys

PICKUP_DIR = "pickup"
PICKUP_KEY_BYTES = 32  # HMAC-SHA256 key, 256 bits


def pickup_key_path(directory: Path, store: str) -> Path:
    """Where `make_pickup_key` puts a store's key: <dir>/pickup/<store>.key."""
    return directory / PICKUP_DIR / f"{check_name(store)}.key"


def make_pickup_key(directory: Path, store: str) -> Path:
    """A new per-store pickup-code key (256 random bits, hex, one line), mode 0600.

    The cloud issues codes with it and the store's terminal verifies them offline
    (xiaodian/wire/pickup.py). Refuses to overwrite: codes already handed to customers would
    stop verifying. Rotation is a new key id with a new file, not a replaced key.
    """
    path = pickup_key_path(directory, store)
    if path.exists():
        raise FileExistsError(f"pickup key already exists: {path}")
    _private_dir(path.parent)
    _write_file(path, os.urandom(PICKUP_KEY_BYTES).hex().encode() + b"\n", 0o600)
    return path


def load_pickup_key(path: Path) -> bytes:
    """The key in a pickup key file (hex); PkiError naming the file, never its content."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PkiError(f"{path}: mode {mode:04o} lets group/others read it;"
                       f" run: chmod 600 {path}")
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise PkiError(f"{path}: not a hex pickup key") from None
    if len(key) < 16:
        raise PkiError(f"{path}: pickup key shorter than 128 bits")
    return key


# ------------------------------------------------------------------------------ dev PKI


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
    ca_cert, _ = _load_ca(ca_dir)
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


# ------------------------------------------------------------------------------ internals


def _sign_leaf(
    ca_dir: Path,
    name: str,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    kind: Kind,
    hosts: tuple[str, ...],
    days: int,
) -> x509.Certificate:
    """Certify `public_key` as `name`, record it in the index and archive a copy."""
    if days < 1:
        raise ValueError("days: must be at least 1")
    ca_cert, ca_key = _load_ca(ca_dir)
    now = dt.datetime.now(dt.UTC)
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    server = kind == "server"
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,  # ECDHE-ECDSA and TLS 1.3 need signatures only
                content_commitment=False,
                key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
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
    issued_dir = ca_dir / ISSUED_DIR
    _private_dir(issued_dir)
    _write_file(
        _issued_path(ca_dir, cert.serial_number),
        cert.public_bytes(serialization.Encoding.PEM),
        0o644,
    )
    index = _read_index(ca_dir)
    index.append(
        Issued(cert.serial_number, name, kind, cert.not_valid_before_utc, cert.not_valid_after_utc)
    )
    _write_index(ca_dir, index)
    return cert


def _check_csr(csr_pem: bytes, store: str) -> x509.CertificateSigningRequest:
    if len(csr_pem) > MAX_CSR_BYTES:
        raise CsrError(f"CSR of {len(csr_pem)} bytes exceeds {MAX_CSR_BYTES}")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise CsrError(f"not a PEM certificate signing request ({exc})") from None
    if not csr.is_signature_valid:
        raise CsrError("CSR signature does not verify (not made with the key it carries)")
    attrs = list(csr.subject)
    if len(attrs) != 1 or attrs[0].oid != NameOID.COMMON_NAME:
        raise CsrError(f"CSR subject must be only CN={store}, got {csr.subject.rfc4514_string()}")
    if attrs[0].value != store:
        raise CsrError(f"CSR is for CN={attrs[0].value!r}, expected the store id {store!r}")
    try:
        extensions = list(csr.extensions)
    except ValueError as exc:
        raise CsrError(f"CSR extensions unreadable ({exc})") from None
    for ext in extensions:
        value = ext.value
        if isinstance(value, x509.BasicConstraints) and value.ca:
            raise CsrError("CSR asks for CA rights (basicConstraints CA:TRUE)")
        if isinstance(value, x509.KeyUsage) and (value.key_cert_sign or value.crl_sign):
            raise CsrError("CSR asks for CA rights (keyCertSign/cRLSign)")
        raise CsrError(
            f"CSR requests extension {ext.oid.dotted_string} ({ext.oid._name}); "
            "the CA sets every extension itself"
        )
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1 | ec.SECP384R1):
            raise CsrError(f"CSR key on curve {key.curve.name}: use P-256 or P-384")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise CsrError(f"CSR RSA key of {key.key_size} bits: use at least 2048")
    else:
        raise CsrError(f"CSR key type {type(key).__name__}: use EC P-256/P-384 or RSA")
    return csr


def _check_kind(ca_dir: Path, name: str, kind: Kind) -> None:
    # A name is one kind for the CA's lifetime: a store certified under a service's name
    # would get the service's ACL rights.
    for item in _read_index(ca_dir):
        if item.name == name and item.kind != kind:
            raise PkiError(f"{name!r} is already a {item.kind}; it cannot also be a {kind}")


def _ensure_leaf(
    ca_dir: Path, ca_cert: x509.Certificate, out_dir: Path, name: str, kind: Kind
) -> tuple[Path, Path]:
    cert_path, key_path = _leaf_paths(out_dir, name)
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


def _leaf_paths(out_dir: Path, name: str) -> tuple[Path, Path]:
    return out_dir / f"{name}.crt", out_dir / f"{name}.key"


def _issued_path(ca_dir: Path, serial: int) -> Path:
    return ca_dir / ISSUED_DIR / f"{serial:x}.pem"


def _parse_serial(text: str) -> int:
    digits = text.lower().removeprefix("0x").replace(":", "")
    try:
        return int(digits, 16)
    except ValueError:
        raise PkiError(f"{text!r}: no certificate of that name, and not a hex serial") from None


def _read_index(ca_dir: Path) -> list[Issued]:
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


def _write_index(ca_dir: Path, items: list[Issued]) -> None:
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
    _write_file(ca_dir / INDEX_NAME, text.encode(), 0o644)


def _crl_entries(ca_dir: Path) -> dict[int, tuple[dt.datetime, str]]:
    path = ca_dir / CRL_NAME
    if not path.exists():
        return {}
    crl = x509.load_pem_x509_crl(path.read_bytes())
    out: dict[int, tuple[dt.datetime, str]] = {}
    for r in crl:
        try:
            reason = r.extensions.get_extension_for_class(x509.CRLReason).value.reason.name
        except x509.ExtensionNotFound:
            reason = "unspecified"
        out[r.serial_number] = (r.revocation_date_utc, reason)
    return out


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


def _key_pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
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
