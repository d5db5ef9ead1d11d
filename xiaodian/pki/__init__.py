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

By responsibility: `ca` (the CA, the directory, the development PKI), `issue` (certificates
and CSRs), `revoke` (the CRL), `keys` (command-signing and pickup keys), with `names` (names,
kinds, errors: `PkiError` is the one base) and `files` (the CA's key pair, its index, private
files) beneath them. Every public name is re-exported here, so `xiaodian.pki.X` still works.
"""

from __future__ import annotations

from .ca import SERVER_CN, DevPki, create_ca, dev_pki, init_pki, load_pki
from .files import CA_CERT_NAME, CA_KEY_NAME, CRL_NAME, INDEX_NAME, ISSUED_DIR, Issued
from .issue import (
    MAX_CSR_BYTES,
    issue_certificate,
    issue_service,
    issue_store,
    issue_stores,
    make_store_key,
    renew,
    sign_csr,
)
from .keys import (
    AGENT_KEY_NAME,
    AGENT_PUB_NAME,
    COMMAND_KEY_NAME,
    COMMAND_PUB_NAME,
    FIRMWARE_KEY_NAME,
    FIRMWARE_PUB_NAME,
    PICKUP_DIR,
    PICKUP_KEY_BYTES,
    load_command_private_key,
    load_command_public_key,
    load_pickup_key,
    make_agent_key,
    make_command_key,
    make_firmware_key,
    make_pickup_key,
    pickup_key_path,
)
from .names import CsrError, Kind, PkiError, check_name
from .revoke import (
    DEFAULT_CRL_DAYS,
    REVOCATION_REASONS,
    crl_next_update,
    list_certificates,
    revoke,
    write_crl,
)

__all__ = [
    "AGENT_KEY_NAME", "AGENT_PUB_NAME", "CA_CERT_NAME", "CA_KEY_NAME", "COMMAND_KEY_NAME",
    "COMMAND_PUB_NAME", "CRL_NAME",
    "DEFAULT_CRL_DAYS", "FIRMWARE_KEY_NAME", "FIRMWARE_PUB_NAME", "INDEX_NAME", "ISSUED_DIR",
    "MAX_CSR_BYTES", "PICKUP_DIR",
    "PICKUP_KEY_BYTES", "REVOCATION_REASONS", "SERVER_CN", "CsrError", "DevPki", "Issued",
    "Kind", "PkiError", "check_name", "create_ca", "crl_next_update", "dev_pki",
    "init_pki", "issue_certificate", "issue_service", "issue_store", "issue_stores",
    "list_certificates",
    "load_command_private_key", "load_command_public_key", "load_pickup_key", "load_pki",
    "make_agent_key", "make_command_key", "make_firmware_key", "make_pickup_key",
    "make_store_key",
    "pickup_key_path", "renew",
    "revoke", "sign_csr", "write_crl",
]
