"""`issue_stores`: a certificate per store for a whole fleet, the CA's index written once."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from xiaodian.pki import PkiError, dev_pki, issue_stores, list_certificates, load_pki


def test_each_store_gets_its_own_certificate_once(tmp_path: Path) -> None:
    pki = dev_pki(tmp_path, stores=["store-001"], services=["cloud-gateway"])
    names = [f"fs-{n:05d}" for n in range(1, 6)]
    assert issue_stores(tmp_path, [*names, "store-001"]) == 5  # store-001 had one
    assert issue_stores(tmp_path, names) == 0  # kept, not reissued
    ca = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    for name in names:
        cert = x509.load_pem_x509_certificate((tmp_path / "clients" / f"{name}.crt").read_bytes())
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
        assert (tmp_path / "clients" / f"{name}.key").stat().st_mode & 0o077 == 0
    issued = [i.name for i in list_certificates(tmp_path / "ca") if i.kind == "store"]
    assert sorted(issued) == sorted([*names, "store-001"])
    assert set(load_pki(tmp_path).stores) == {*names, "store-001"}


def test_a_service_name_is_never_certified_as_a_store(tmp_path: Path) -> None:
    dev_pki(tmp_path, stores=[], services=["cloud-gateway"])
    with pytest.raises(PkiError, match="already a service"):
        issue_stores(tmp_path, ["fs-00001", "cloud-gateway"])
