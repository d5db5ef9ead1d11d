"""`xiaodian scan parse STRING`: what a scan means, as JSON, for support staff and tests.

A GS (FNC1) separator is hard to type, so `<GS>` and the four characters `\\x1d` in STRING
stand for it. With `--pickup-key-file` and `--store`, a pickup code is also verified:
the file holds the store's HMAC key in hex, or an Ed25519 public key in PEM.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from edge.scan.parse import GS, parse_scan
from edge.scan.variable_measure import DEFAULT_LAYOUT, VariableMeasureLayout
from xiaodian.config import load_config
from xiaodian.wire.errors import CodeError
from xiaodian.wire.pickup import Ed25519PickupCodec, PickupCodec, PickupTicket


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    scan = subparsers.add_parser("scan", help="barcode and pickup-code tools")
    commands = scan.add_subparsers(dest="scan_command", required=True, metavar="SUBCOMMAND")
    parse = commands.add_parser(
        "parse",
        help="print what a scanner line means, as JSON",
        description='Exit 0 with the meaning as JSON, or 1 with {"error", "reason"}.',
    )
    parse.add_argument("line", metavar="STRING", help="scanner line, e.g. ']E06901234567892'")
    parse.add_argument("--layout", metavar="FILE", help="variable-measure layout TOML")
    parse.add_argument("--pickup-key-file", metavar="F", help="HMAC key (hex) or Ed25519 PEM")
    parse.add_argument("--store", metavar="S", help="this store's id (to verify pickup codes)")
    parse.add_argument("--key-id", type=int, default=0, help="id of the HMAC key (default 0)")
    parse.add_argument("--now", type=float, help="unix time to check expiry against")
    parse.set_defaults(func=parse_command, parser=parse)


def parse_command(args: argparse.Namespace) -> int:
    if (args.pickup_key_file is None) != (args.store is None):
        args.parser.error("--pickup-key-file and --store go together")
    layout = DEFAULT_LAYOUT
    if args.layout:
        layout = load_config(args.layout, VariableMeasureLayout)
    codec = None
    if args.pickup_key_file:
        try:
            codec = _codec(Path(args.pickup_key_file), args.store, args.key_id)
        except (OSError, ValueError) as exc:
            print(f"xiaodian scan parse: pickup key: {exc}", file=sys.stderr)
            return 2
    line = str(args.line).replace("<GS>", GS).replace("\\x1d", GS)
    try:
        scan = parse_scan(line, layout)
        out = scan.to_dict()
        if codec is not None and scan.kind == "pickup":
            now = time.time() if args.now is None else args.now
            out["pickup"] = _ticket_dict(codec.verify(scan.data, now), out["pickup"])
    except CodeError as exc:
        print(json.dumps({"error": exc.message, "reason": exc.reason}, ensure_ascii=False))
        print(f"xiaodian scan parse: {exc.message}", file=sys.stderr)
        return 1
    print(json.dumps(out, ensure_ascii=False))
    return 0


def _codec(path: Path, store: str, key_id: int) -> PickupCodec | Ed25519PickupCodec:
    raw = path.read_bytes()
    if raw.lstrip().startswith(b"-----BEGIN PUBLIC KEY-----"):
        public = load_pem_public_key(raw)
        if not isinstance(public, Ed25519PublicKey):
            raise ValueError(f"{path}: not an Ed25519 public key")
        return Ed25519PickupCodec(store, {key_id: public}, key_id=key_id)
    return PickupCodec(store, bytes.fromhex(raw.decode("ascii").strip()), key_id=key_id)


def _ticket_dict(ticket: PickupTicket, base: dict[str, Any]) -> dict[str, Any]:
    return {**base, "store": ticket.store_id, "verified": True}
