"""`xiaodian pki` and `xiaodian broker config`: enrolment, revocation, renewal, secrets at rest."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devstack import cli, security_cli
from devstack.testkit.cli import run_commands
from xiaodian import pki
from xiaodian.wire.commands import key_id_for


def run(argv: list[str]) -> int:
    """Run one `xiaodian` command with only this module's commands registered."""
    return run_commands(argv, security_cli.register)


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    d = tmp_path / "pki"
    assert run(["pki", "init", "--dir", str(d)]) == 0
    return d


def cert_of(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_pki_is_registered_with_the_main_command() -> None:
    assert "devstack.security_cli" in cli.COMMAND_MODULES


def test_init_makes_ca_crl_and_broker_certificate(ca: Path) -> None:
    ca_cert = cert_of(ca / "ca" / "ca.crt")
    crl = x509.load_pem_x509_crl((ca / "ca" / "crl.pem").read_bytes())
    assert crl.is_signature_valid(ca_cert.public_key())  # type: ignore[arg-type]
    assert list(crl) == []
    assert crl.next_update_utc is not None
    assert crl.next_update_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=29)
    broker = cert_of(ca / "server" / "broker.crt")
    broker.verify_directly_issued_by(ca_cert)
    assert run(["pki", "init", "--dir", str(ca)]) == 1  # never replaces a CA


def test_store_enrolment_only_the_csr_travels(ca: Path, tmp_path: Path) -> None:
    store_dir = tmp_path / "terminal"
    assert run(["pki", "store-key", "store-007", "--out", str(store_dir)]) == 0
    csr_path, key_path = store_dir / "store-007.csr", store_dir / "store-007.key"
    out = tmp_path / "store-007.crt"
    argv = ["pki", "sign-csr", str(csr_path), "--dir", str(ca), "--store", "store-007"]
    assert run([*argv, "--out", str(out)]) == 0
    cert = cert_of(out)
    cert.verify_directly_issued_by(cert_of(ca / "ca" / "ca.crt"))
    assert cn(cert) == "store-007"
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert cert.public_key() == key.public_key()
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    # The CA never saw the key: nothing under the PKI directory holds it.
    secret = key_path.read_bytes()
    assert not any(p.read_bytes() == secret for p in ca.rglob("*") if p.is_file())


def _csr(name: x509.Name, *extensions: x509.ExtensionType) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    for ext in extensions:
        builder = builder.add_extension(ext, critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _cn(value: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, value)])


@pytest.mark.parametrize(
    ("csr", "store", "message"),
    [
        (_csr(_cn("store-002")), "store-001", "expected the store id"),
        (_csr(_cn("store/1")), "store/1", "certificate name"),
        (
            _csr(_cn("store-001"), x509.BasicConstraints(ca=True, path_length=None)),
            "store-001",
            "asks for CA rights",
        ),
        (
            _csr(_cn("store-001"), x509.SubjectAlternativeName([x509.DNSName("evil")])),
            "store-001",
            "requests extension",
        ),
        (
            _csr(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COMMON_NAME, "store-001"),
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x"),
                    ]
                )
            ),
            "store-001",
            "subject must be only CN",
        ),
        (b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", "store-001", "not a PEM"),
        (b"x" * (pki.MAX_CSR_BYTES + 1), "store-001", "exceeds"),
    ],
)
def test_sign_csr_refuses(ca: Path, csr: bytes, store: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pki.sign_csr(ca / "ca", csr, store)
    assert pki.list_certificates(ca / "ca")[-1].name == "broker"  # nothing issued


def test_sign_csr_refuses_a_tampered_csr(ca: Path) -> None:
    der = x509.load_pem_x509_csr(_csr(_cn("store-001"))).public_bytes(serialization.Encoding.DER)
    tampered = der.replace(b"store-001", b"store-002")  # CN changed after signing
    pem = b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(tampered)
    pem += b"-----END CERTIFICATE REQUEST-----\n"
    with pytest.raises(pki.CsrError, match="signature does not verify") as exc:
        pki.sign_csr(ca / "ca", pem, "store-002")
    # The package's one base error, and still the ValueError it was before the split.
    assert isinstance(exc.value, pki.PkiError) and isinstance(exc.value, ValueError)


def test_a_name_keeps_its_kind(ca: Path) -> None:
    assert run(["pki", "issue-service", "cloud-gateway", "--dir", str(ca)]) == 0
    # A store certificate named like the service would inherit the service's ACL rights.
    assert run(["pki", "issue-store", "cloud-gateway", "--dir", str(ca)]) == 1
    with pytest.raises(pki.PkiError, match="already a service"):
        pki.sign_csr(ca / "ca", _csr(_cn("cloud-gateway")), "cloud-gateway")


def test_revoke_by_name_and_serial_lists_and_signs_the_crl(
    ca: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for store in ("store-001", "store-002"):
        assert run(["pki", "issue-store", store, "--dir", str(ca)]) == 0
    assert run(["pki", "renew", "store-001", "--dir", str(ca)]) == 0
    assert run(["pki", "revoke", "store-001", "--dir", str(ca), "--reason", "key_compromise"]) == 0
    serial2 = cert_of(ca / "clients" / "store-002.crt").serial_number
    argv = ["pki", "revoke", f"0x{serial2:x}", "--dir", str(ca), "--reason", "superseded"]
    assert run(argv) == 0
    capsys.readouterr()
    assert run(["pki", "list", "--dir", str(ca), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    state = [(r["name"], r["revoked"], r["reason"]) for r in rows]
    assert state == [
        ("broker", False, None),
        ("store-001", True, "key_compromise"),  # both: the original and the renewal
        ("store-002", True, "superseded"),
        ("store-001", True, "key_compromise"),
    ]
    ca_cert = cert_of(ca / "ca" / "ca.crt")
    crl = x509.load_pem_x509_crl((ca / "ca" / "crl.pem").read_bytes())
    assert crl.is_signature_valid(ca_cert.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(serial2) is not None
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 3
    assert run(["pki", "list", "--dir", str(ca)]) == 0
    table = capsys.readouterr().out
    assert "yes (key_compromise)" in table and f"{serial2:x}" in table
    assert run(["pki", "revoke", "no-such-store", "--dir", str(ca), "--reason", "superseded"]) == 1


def test_renew_overlaps_and_refuses_a_revoked_key(ca: Path) -> None:
    pki.issue_store(ca, "store-001", days=30)
    old = cert_of(ca / "clients" / "store-001.crt")
    assert run(["pki", "renew", "store-001", "--dir", str(ca), "--days", "90"]) == 0
    new = cert_of(ca / "clients" / "store-001.crt")  # replaced: same key, kept locally
    assert new.serial_number != old.serial_number
    assert new.public_key() == old.public_key()
    assert new.not_valid_after_utc > old.not_valid_after_utc
    assert new.not_valid_before_utc < old.not_valid_after_utc  # overlapping validity
    assert (ca / "ca" / "issued" / f"{old.serial_number:x}.pem").is_file()  # still valid
    assert not any(i.revoked_at for i in pki.list_certificates(ca / "ca"))
    pki.revoke(ca / "ca", f"{new.serial_number:x}", "key_compromise")
    with pytest.raises(pki.PkiError, match="is revoked"):
        pki.renew(ca, "store-001")


def test_renew_a_store_whose_key_is_elsewhere(ca: Path, tmp_path: Path) -> None:
    _, csr = pki.make_store_key("store-003", tmp_path / "terminal")
    first = pki.sign_csr(ca / "ca", csr.read_bytes(), "store-003")
    renewed = pki.renew(ca, "store-003")
    assert renewed.public_key() == first.public_key()
    assert not (ca / "clients" / "store-003.crt").exists()


def test_crl_refresh_moves_next_update(ca: Path) -> None:
    pki.write_crl(ca / "ca", days=1)
    assert run(["pki", "crl", "--dir", str(ca), "--days", "7"]) == 0
    next_update = pki.crl_next_update(ca / "ca")
    assert next_update is not None
    assert next_update > dt.datetime.now(dt.UTC) + dt.timedelta(days=6)


def test_command_key_is_ed25519_and_separate_from_the_ca(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "cmdkey"
    assert run(["pki", "command-key", "--dir", str(d)]) == 0
    priv = pki.load_command_private_key(d / pki.COMMAND_KEY_NAME)
    pub = pki.load_command_public_key(d / pki.COMMAND_PUB_NAME)
    assert isinstance(priv, ed25519.Ed25519PrivateKey)
    assert priv.public_key() == pub
    assert f"key id: {key_id_for(pub)}" in capsys.readouterr().out
    assert run(["pki", "command-key", "--dir", str(d)]) == 1  # never overwritten


# --- secrets at rest -------------------------------------------------------------------------


def _all_commands(tmp_path: Path) -> tuple[Path, list[list[str]]]:
    d = tmp_path / "pki"
    term = tmp_path / "terminal"
    return d, [
        ["pki", "init", "--dir", str(d)],
        ["pki", "issue-store", "store-001", "--dir", str(d)],
        ["pki", "issue-service", "cloud-gateway", "--dir", str(d)],
        ["pki", "store-key", "store-002", "--out", str(term)],
        ["pki", "sign-csr", str(term / "store-002.csr"), "--dir", str(d), "--store", "store-002"],
        ["pki", "renew", "store-001", "--dir", str(d)],
        ["pki", "revoke", "store-001", "--dir", str(d), "--reason", "key_compromise"],
        ["pki", "crl", "--dir", str(d)],
        ["pki", "list", "--dir", str(d)],
        ["pki", "command-key", "--dir", str(tmp_path / "cmd")],
        ["pki", "issue-store", "store-001", "--dir", str(d)],  # fails: exists
        ["broker", "config", "--dir", str(tmp_path / "broker"), "--pki", str(d), "--port", "8883"],
    ]


def test_every_private_key_is_0600_in_a_0700_directory(tmp_path: Path) -> None:
    _, commands = _all_commands(tmp_path)
    for argv in commands:
        run(argv)
    keys = [p for p in tmp_path.rglob("*.key")]
    assert len(keys) == 6  # CA, broker, store-001, cloud-gateway, store-002, command key
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
        assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700, key.parent
        assert b"PRIVATE KEY" in key.read_bytes()
    others = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".key"]
    assert not any(b"PRIVATE KEY" in p.read_bytes() for p in others)


def test_no_key_material_in_output_or_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _, commands = _all_commands(tmp_path)
    codes = [run(argv) for argv in commands]
    assert codes == [0] * 10 + [1, 0]
    captured = capsys.readouterr()
    text = captured.out + captured.err + caplog.text
    assert len(caplog.records) >= 8  # the commands do log
    for key_path in tmp_path.rglob("*.key"):
        pem = key_path.read_text()
        body = [line for line in pem.splitlines() if not line.startswith("-----")]
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        raw = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        for line in body:
            assert line[:24] not in text, key_path
        assert raw.hex()[-64:] not in text  # the secret scalar ends the DER
        assert base64.b64encode(raw)[-40:].decode() not in text
    assert "PRIVATE" not in text


# --- broker config -------------------------------------------------------------------------------


def test_broker_config_from_the_pki(ca: Path, tmp_path: Path) -> None:
    pki.issue_service(ca, "cloud-gateway")
    pki.issue_store(ca, "store-001")
    out = tmp_path / "broker"
    argv = ["broker", "config", "--dir", str(out), "--pki", str(ca), "--port", "8883"]
    assert run(argv) == 0
    conf = (out / "mosquitto.conf").read_text()
    lines = conf.splitlines()
    assert "listener 8883 127.0.0.1" in lines
    assert f"crlfile {ca / 'ca' / 'crl.pem'}" in lines
    assert "require_certificate true" in lines and "use_identity_as_username true" in lines
    assert "allow_anonymous false" in lines
    assert sum(line.startswith("listener ") for line in lines) == 1
    assert "INSECURE" not in conf
    acl = (out / "acl").read_text()
    assert "pattern read xd/v1/%u/cmd/req" in acl and "user cloud-gateway" in acl
    # Client id = CN, and the subscribe rules name the CA's stores and services.
    assert "use_username_as_clientid true" in lines
    rules = json.loads((out / "subscribe-rules.json").read_text())
    assert {c["username"] for c in rules["clients"]} == {"cloud-gateway", "store-001"}
    assert f"plugin_opt_config_file {out.resolve() / 'subscribe-rules.json'}" in lines


def test_broker_config_plaintext_only_with_the_dev_flag(ca: Path, tmp_path: Path) -> None:
    out = tmp_path / "broker"
    base = ["broker", "config", "--dir", str(out), "--pki", str(ca), "--port", "8883"]
    assert run([*base, "--dev-plaintext-local", "--dev-plaintext-port", "1884"]) == 0
    lines = (out / "mosquitto.conf").read_text().splitlines()
    i = lines.index("listener 1884 127.0.0.1")
    assert "INSECURE" in lines[i - 3]
    assert [line for line in lines if line.startswith("listener ")] == [
        "listener 8883 127.0.0.1",
        "listener 1884 127.0.0.1",
    ]
    assert run([*base, "--bind", "example.com"]) == 1  # an address, not a name


# Every public name of xiaodian/pki.py before it became a package: importers rely on them.
OLD_PKI_NAMES = (
    "CA_CERT_NAME", "CA_KEY_NAME", "COMMAND_KEY_NAME", "COMMAND_PUB_NAME", "CRL_NAME",
    "CsrError", "DEFAULT_CRL_DAYS", "DevPki", "INDEX_NAME", "ISSUED_DIR", "Issued", "Kind",
    "MAX_CSR_BYTES", "PICKUP_DIR", "PICKUP_KEY_BYTES", "PkiError", "REVOCATION_REASONS",
    "SERVER_CN", "check_name", "create_ca", "crl_next_update", "dev_pki", "init_pki",
    "issue_certificate", "issue_service", "issue_store", "list_certificates",
    "load_command_private_key", "load_command_public_key", "load_pickup_key", "load_pki",
    "make_command_key", "make_pickup_key", "make_store_key", "pickup_key_path", "renew",
    "revoke", "sign_csr", "write_crl",
)


# Added since, each on purpose: the firmware-signing key (issue #17), and below.
ADDED_PKI_NAMES = ("FIRMWARE_KEY_NAME", "FIRMWARE_PUB_NAME", "make_firmware_key",
                   "AGENT_KEY_NAME", "AGENT_PUB_NAME", "make_agent_key",
                   "issue_stores")  # the agent-signing key (#19), the fleet load test (#18)


def test_the_pki_package_keeps_every_public_name() -> None:
    assert sorted(pki.__all__) == sorted(OLD_PKI_NAMES + ADDED_PKI_NAMES)
    assert all(hasattr(pki, name) for name in OLD_PKI_NAMES)
