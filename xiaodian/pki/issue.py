"""Issuing certificates: the broker's, the services', the stores' (from a CSR made on the
store) and renewals. The CA decides every extension; a CSR gives only its key and its CN."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .files import (
    ISSUED_DIR,
    Issued,
    issued_path,
    key_pem,
    leaf_paths,
    load_ca,
    private_dir,
    read_index,
    write_file,
    write_index,
)
from .names import BACKDATE, CsrError, Kind, PkiError, check_name
from .revoke import list_certificates

MAX_CSR_BYTES = 16 * 1024  # a P-256 CSR is ~0.5 KB; anything near this is not ours


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
    cert_path, key_path = leaf_paths(out_dir, common_name)
    for p in (cert_path, key_path):
        if p.exists():
            raise FileExistsError(f"certificate already exists: {p}")
    _check_kind(ca_dir, common_name, kind)
    private_dir(out_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _sign_leaf(ca_dir, common_name, key.public_key(), kind, hosts, days)
    write_file(key_path, key_pem(key), 0o600)
    write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
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
    private_dir(out_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, store)]))
        .sign(key, hashes.SHA256())
    )
    write_file(key_path, key_pem(key), 0o600)
    write_file(csr_path, csr.public_bytes(serialization.Encoding.PEM), 0o644)
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
    cert_path, key_path = leaf_paths(clients, store)
    if cert_path.exists():
        raise FileExistsError(f"certificate already exists: {cert_path}")
    _check_kind(directory / "ca", store, "store")
    key_path, csr_path = make_store_key(store, clients)
    cert = sign_csr(directory / "ca", csr_path.read_bytes(), store, days)
    write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
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
    old = x509.load_pem_x509_certificate(issued_path(ca_dir, latest.serial).read_bytes())
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
    cert_path, key_path = leaf_paths(out_dir, name)
    if cert_path.is_file() and key_path.is_file():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if key.public_key() == public_key:
            write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert


def _sign_leaf(
    ca_dir: Path,
    name: str,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    kind: Kind,
    hosts: tuple[str, ...],
    days: int,
) -> x509.Certificate:
    """Certify `public_key` as `name`, record it in the index and archive a copy."""
    ca = load_ca(ca_dir)
    cert = _leaf_certificate(ca, name, public_key, kind, hosts, days)
    _archive(ca_dir, cert)
    index = read_index(ca_dir)
    index.append(
        Issued(cert.serial_number, name, kind, cert.not_valid_before_utc, cert.not_valid_after_utc)
    )
    write_index(ca_dir, index)
    return cert


def issue_stores(directory: Path, stores: Sequence[str], days: int = 397) -> int:
    """A key and certificate in clients/ for each of `stores` that has none; how many issued.

    What `issue_store` does for one store, for thousands (a fleet load test): the CA is
    loaded and the index read and written once, not once per certificate (`issue_store`
    rewrites the whole index each time, quadratic in the fleet). Keys are made here, so
    this is the operator's path, not enrolment by CSR.
    """
    ca_dir, clients = directory / "ca", directory / "clients"
    ca = load_ca(ca_dir)
    index = read_index(ca_dir)
    kinds = {item.name: item.kind for item in index}
    private_dir(clients)
    issued = 0
    for store in stores:
        check_name(store)
        if kinds.get(store, "store") != "store":
            raise PkiError(f"{store!r} is already a {kinds[store]}; it cannot also be a store")
        cert_path, key_path = leaf_paths(clients, store)
        if cert_path.exists() and key_path.exists():
            continue
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _leaf_certificate(ca, store, key.public_key(), "store", (), days)
        _archive(ca_dir, cert)
        write_file(key_path, key_pem(key), 0o600)
        write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        index.append(Issued(cert.serial_number, store, "store", cert.not_valid_before_utc,
                            cert.not_valid_after_utc))
        kinds[store] = "store"
        issued += 1
    if issued:
        write_index(ca_dir, index)
    return issued


def _archive(ca_dir: Path, cert: x509.Certificate) -> None:
    issued_dir = ca_dir / ISSUED_DIR
    private_dir(issued_dir)
    write_file(
        issued_path(ca_dir, cert.serial_number),
        cert.public_bytes(serialization.Encoding.PEM),
        0o644,
    )


def _leaf_certificate(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    name: str,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    kind: Kind,
    hosts: tuple[str, ...],
    days: int,
) -> x509.Certificate:
    """The signed certificate alone: no file written, nothing recorded."""
    if days < 1:
        raise ValueError("days: must be at least 1")
    ca_cert, ca_key = ca
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
        .not_valid_before(now - BACKDATE)
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
    return builder.sign(ca_key, hashes.SHA256())


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
    for item in read_index(ca_dir):
        if item.name == name and item.kind != kind:
            raise PkiError(f"{name!r} is already a {item.kind}; it cannot also be a {kind}")


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)
