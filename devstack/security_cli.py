"""`xiaodian pki ...` and `xiaodian broker config`: the fleet's certificates and its broker.

Prints paths, serials and key ids, never key material.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from devstack.broker import write_broker_config
from devstack.broker_emqx import EMQX_ACL_NAME, write_emqx_config
from xiaodian import pki

log = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace], int]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("pki", help="private CA: store and service certificates, CRL")
    cmds = p.add_subparsers(dest="pki_command", required=True, metavar="PKI_COMMAND")

    def add(name: str, handler: Handler, help_: str) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = cmds.add_parser(name, help=help_, description=help_)
        sp.set_defaults(func=_guarded(handler))
        return sp

    def ca_dir(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--dir", type=Path, required=True, help="the PKI directory")

    def days(sp: argparse.ArgumentParser, default: int = 397) -> None:
        sp.add_argument("--days", type=int, default=default, help=f"validity (default {default})")

    sp = add("init", _init, "create the CA, its (empty) CRL and the broker's certificate")
    ca_dir(sp)
    sp.add_argument(
        "--host",
        action="append",
        help="name or address clients use for the broker (repeatable; "
        "default localhost and 127.0.0.1)",
    )
    days(sp, 3650)

    sp = add("store-key", _store_key, "on the store: make its private key and a CSR")
    sp.add_argument("store", help="store id (= certificate CN = MQTT username)")
    sp.add_argument("--out", type=Path, required=True, help="directory for STORE.key/.csr")

    sp = add("sign-csr", _sign_csr, "at the CA: sign a store's CSR after checking it")
    sp.add_argument("csr", type=Path)
    ca_dir(sp)
    sp.add_argument(
        "--store", required=True, help="the store id the CSR must name (checked, not trusted)"
    )
    sp.add_argument("--out", type=Path, help="certificate file (default: CSR path with .crt)")
    days(sp)

    sp = add("issue-store", _issue_store, "store-key and sign-csr in one go, key kept here")
    sp.add_argument("store")
    ca_dir(sp)
    days(sp)

    sp = add("issue-service", _issue_service, "a client certificate for a cloud service")
    sp.add_argument("name", help="e.g. cloud-gateway")
    ca_dir(sp)
    days(sp)

    sp = add("revoke", _revoke, "revoke a name's certificates (or one serial); rewrite the CRL")
    sp.add_argument("name_or_serial")
    ca_dir(sp)
    sp.add_argument("--reason", required=True, choices=pki.REVOCATION_REASONS)

    sp = add("renew", _renew, "a new certificate for the same key; the old one stays valid")
    sp.add_argument("name")
    ca_dir(sp)
    days(sp)

    sp = add("crl", _crl, "re-sign the CRL with a new next-update (run weekly)")
    ca_dir(sp)
    days(sp, pki.DEFAULT_CRL_DAYS)

    sp = add("list", _list, "every certificate issued: name, serial, not-after, revoked")
    ca_dir(sp)
    sp.add_argument("--json", action="store_true", help="JSON lines instead of a table")

    sp = add("command-key", _command_key, "make the Ed25519 command-signing key pair")
    sp.add_argument("--dir", type=Path, required=True, help="directory (not the CA's)")

    sp = add("firmware-key", _firmware_key,
             "make the Ed25519 firmware-signing key pair (not the command key)")
    sp.add_argument("--dir", type=Path, required=True, help="directory (not the CA's)")

    sp = add("agent-key", _agent_key,
             "make the Ed25519 key pair that signs the terminal's own updates")
    sp.add_argument("--dir", type=Path, required=True, help="directory (not the CA's)")

    sp = add("pickup-key", _pickup_key,
             "make a store's pickup-code key (256-bit HMAC, hex, 0600) under DIR/pickup/")
    sp.add_argument("store", help="store id")
    sp.add_argument("--dir", type=Path, required=True, help="the PKI directory")

    b = subparsers.add_parser("broker", help="Mosquitto or EMQX configuration from the PKI")
    bcmds = b.add_subparsers(dest="broker_command", required=True, metavar="BROKER_COMMAND")
    conf = bcmds.add_parser(
        "config",
        help="write mosquitto.conf, the ACL and the subscribe rules (or EMQX's emqx.conf "
        "and acl.conf)",
        description="TLS listener requiring client certificates (CN = username = client "
        "id), the CRL, an ACL confining each store to its own topics and subscribe rules "
        "keeping stores out of other trees and the cloud's shared groups. No plaintext "
        "listener unless --dev-plaintext-local, which binds 127.0.0.1 only. "
        "--flavour emqx writes the same identities and rules for an EMQX 5 cluster.",
    )
    conf.set_defaults(func=_guarded(_broker_config))
    conf.add_argument("--dir", type=Path, required=True, help="broker directory to write")
    conf.add_argument("--pki", type=Path, required=True, help="the PKI directory")
    conf.add_argument("--port", type=int, default=8883)
    conf.add_argument("--flavour", choices=("mosquitto", "emqx"), default="mosquitto",
                      help="the broker to configure (default mosquitto)")
    conf.add_argument("--bind", default="127.0.0.1", help="TLS listener address")
    conf.add_argument(
        "--dev-plaintext-local",
        action="store_true",
        help="INSECURE: also listen without TLS on 127.0.0.1 (local development only)",
    )
    conf.add_argument("--dev-plaintext-port", type=int, default=1883)


def _guarded(handler: Handler) -> Handler:
    """Expected failures (existing files, refused CSRs, bad names) as one line, exit 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (pki.PkiError, ValueError, FileExistsError, FileNotFoundError) as exc:
            print(f"xiaodian: {exc}", file=sys.stderr)
            return 1

    return run


def _init(args: argparse.Namespace) -> int:
    hosts = tuple(args.host or ("localhost", "127.0.0.1"))
    result = pki.init_pki(args.dir, hosts, ca_days=args.days)
    log.info("CA created in %s", args.dir / "ca")
    print(f"CA:     {result.ca}")
    print(f"CRL:    {result.crl}")
    print(f"broker: {result.server_cert} (for {', '.join(hosts)})")
    return 0


def _store_key(args: argparse.Namespace) -> int:
    key, csr = pki.make_store_key(args.store, args.out)
    log.info("key and CSR for %s made in %s", args.store, args.out)
    print(f"key (stays here): {key}")
    print(f"CSR (send to the CA): {csr}")
    return 0


def _sign_csr(args: argparse.Namespace) -> int:
    out: Path = args.out or args.csr.with_suffix(".crt")
    if out.exists():
        raise FileExistsError(f"certificate already exists: {out}")
    cert = pki.sign_csr(args.dir / "ca", args.csr.read_bytes(), args.store, args.days)
    out.write_bytes(cert.public_bytes(Encoding.PEM))
    log.info("signed CSR for %s: serial %x", args.store, cert.serial_number)
    print(f"{out} serial {cert.serial_number:x} not-after {cert.not_valid_after_utc:%Y-%m-%d}")
    print(_REGENERATE_STORE, file=sys.stderr)
    return 0


# stderr, so scripts reading the paths on stdout are not disturbed.
_REGENERATE_STORE = (
    "regenerate the broker config (its subscribe rules name stores) and restart it"
)


def _issue_store(args: argparse.Namespace) -> int:
    cert, key = pki.issue_store(args.dir, args.store, args.days)
    log.info("issued store certificate for %s", args.store)
    print(f"{cert}\n{key}")
    print(_REGENERATE_STORE, file=sys.stderr)
    return 0


def _issue_service(args: argparse.Namespace) -> int:
    cert, key = pki.issue_service(args.dir, args.name, args.days)
    log.info("issued service certificate for %s", args.name)
    print(f"{cert}\n{key}")
    print("regenerate the broker config (the ACL names services) and restart it")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    revoked = pki.revoke(args.dir / "ca", args.name_or_serial, args.reason)
    for item in revoked:
        log.info("revoked %s serial %s (%s)", item.name, item.serial_hex, args.reason)
        print(f"revoked {item.name} {item.serial_hex}")
    if not revoked:
        print("nothing newly revoked (already revoked or expired)")
    # Mosquitto 2.0.11 re-reads the CRL on SIGHUP (or restart), not by itself.
    print(f"CRL: {args.dir / 'ca' / pki.CRL_NAME}; now reload the broker (SIGHUP)")
    return 0


def _renew(args: argparse.Namespace) -> int:
    cert = pki.renew(args.dir, args.name, args.days)
    log.info("renewed %s: serial %x", args.name, cert.serial_number)
    path = args.dir / "ca" / pki.ISSUED_DIR / f"{cert.serial_number:x}.pem"
    print(f"{path} serial {cert.serial_number:x} not-after {cert.not_valid_after_utc:%Y-%m-%d}")
    return 0


def _crl(args: argparse.Namespace) -> int:
    path = pki.write_crl(args.dir / "ca", days=args.days)
    print(f"{path} next-update {pki.crl_next_update(args.dir / 'ca'):%Y-%m-%dT%H:%MZ}")
    return 0


def _list(args: argparse.Namespace) -> int:
    now = dt.datetime.now(dt.UTC)
    items = pki.list_certificates(args.dir / "ca")
    if args.json:
        for i in items:
            row = {
                "name": i.name,
                "kind": i.kind,
                "serial": i.serial_hex,
                "not_after": i.not_after.isoformat(),
                "expired": i.not_after <= now,
                "revoked": i.revoked_at is not None,
                "reason": i.reason,
            }
            print(json.dumps(row))
        return 0
    print(f"{'name':<20} {'kind':<8} {'serial':<40} {'not-after':<10} revoked")
    for i in items:
        state = f"yes ({i.reason})" if i.revoked_at else ("expired" if i.not_after <= now else "no")
        print(f"{i.name:<20} {i.kind:<8} {i.serial_hex:<40} {i.not_after:%Y-%m-%d} {state}")
    return 0


def _command_key(args: argparse.Namespace) -> int:
    priv, pub, key_id = pki.make_command_key(args.dir)
    log.info("command-signing key %s made in %s", key_id, args.dir)
    print(f"private (cloud only): {priv}\npublic (pin on stores): {pub}\nkey id: {key_id}")
    return 0


def _firmware_key(args: argparse.Namespace) -> int:
    priv, pub, key_id = pki.make_firmware_key(args.dir)
    log.info("firmware-signing key %s made in %s", key_id, args.dir)
    print(f"private (release machine only): {priv}\npublic (pin on terminals): {pub}\n"
          f"key id: {key_id}")
    return 0


def _agent_key(args: argparse.Namespace) -> int:
    priv, pub, key_id = pki.make_agent_key(args.dir)
    log.info("agent-signing key %s made in %s", key_id, args.dir)
    print(f"private (release machine only): {priv}\npublic (pin on terminals): {pub}\n"
          f"key id: {key_id}")
    return 0


def _pickup_key(args: argparse.Namespace) -> int:
    path = pki.make_pickup_key(args.dir, args.store)
    log.info("pickup key for %s made: %s", args.store, path)  # the path, never the key
    print(f"pickup key (cloud [pickup] keys_dir, and the store's [pickup] key_file): {path}")
    return 0


def _broker_config(args: argparse.Namespace) -> int:
    """Write mosquitto.conf + ACL from the PKI directory (TLS only unless the dev flag)."""
    # Absolute paths: mosquitto resolves relative ones against its own working directory.
    loaded = pki.load_pki(args.pki.resolve())
    if args.flavour == "emqx":
        if args.dev_plaintext_local:
            raise ValueError("--dev-plaintext-local: Mosquitto only (EMQX gets TLS only)")
        emqx = write_emqx_config(args.dir.resolve(), loaded, args.port, bind=args.bind)
        print(f"{emqx}\n{emqx.with_name(EMQX_ACL_NAME)}\n"
              f"include it from each node's etc/emqx.conf: include \"{emqx}\"")
        return 0
    conf = write_broker_config(
        args.dir.resolve(),
        loaded,
        args.port,
        bind=args.bind,
        dev_plaintext_port=args.dev_plaintext_port if args.dev_plaintext_local else None,
    )
    if args.dev_plaintext_local:
        log.warning("plaintext listener on 127.0.0.1:%d: development only", args.dev_plaintext_port)
    print(f"{conf}\nstart: mosquitto -c {conf}")
    return 0
