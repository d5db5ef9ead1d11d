"""Revocation: the CRL the broker checks client certificates against, and what the CA issued
with what the CRL says of each."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from .files import CRL_NAME, Issued, load_ca, read_index, write_file
from .names import BACKDATE, PkiError

DEFAULT_CRL_DAYS = 30
_REASONS = {r.name: r for r in x509.ReasonFlags if r is not x509.ReasonFlags.remove_from_crl}
REVOCATION_REASONS = tuple(_REASONS)


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
    ca_cert, ca_key = load_ca(ca_dir)
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
        .last_update(now - BACKDATE)
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
    write_file(path, crl.public_bytes(serialization.Encoding.PEM), 0o644)
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
    for item in read_index(ca_dir):
        if item.serial in entries:
            when, reason = entries[item.serial]
            item = Issued(
                item.serial, item.name, item.kind, item.not_before, item.not_after, when, reason
            )
        out.append(item)
    return out


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


def _parse_serial(text: str) -> int:
    digits = text.lower().removeprefix("0x").replace(":", "")
    try:
        return int(digits, 16)
    except ValueError:
        raise PkiError(f"{text!r}: no certificate of that name, and not a hex serial") from None
