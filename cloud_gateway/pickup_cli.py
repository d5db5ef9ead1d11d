"""`xiaodian pickup code|verify`: make or check a pickup code by hand (support staff).

Codes are `xiaodian/wire/pickup.py`'s HMAC codes under the store's key file (`xiaodian pki
pickup-key`). The key is read from the file and never printed or logged.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from xiaodian.pki.keys import load_pickup_key
from xiaodian.pki.names import PkiError
from xiaodian.wire import ids
from xiaodian.wire.pickup import PickupCodec, PickupError

# Exit status of `pickup verify`, by refusal reason (edge/scan/errors.py PickupReason).
VERIFY_EXIT = {
    "ok": 0,
    "wrong_store": 3,
    "expired": 4,
    "bad_mac": 5,  # forged or altered
    "unknown_key": 5,  # made with a key id this key file is not
    "malformed": 6,
    "oversize": 6,
}
_EXIT_HELP = ("Exit status: 0 genuine and valid, 3 for another store, 4 expired, 5 forged or"
              " made with another key, 6 not a well-formed code, 1 other errors (key file).")


def register(sub: Any) -> None:
    p = sub.add_parser("pickup", help="make or check an order's pickup code (support staff)")
    cmds = p.add_subparsers(dest="pickup_command", required=True, metavar="COMMAND")

    code = cmds.add_parser(
        "code", help="make the pickup code of an order",
        description="Print the PK1: code of an order (for a QR code). It expires at the"
                    " whole minute at or before --expires. Exit status 0, or 1 on errors.")
    code.add_argument("--store", required=True)
    code.add_argument("--order", required=True, type=int, help="order id")
    when = code.add_mutually_exclusive_group(required=True)
    when.add_argument("--expires", help="ISO 8601 time (no zone: UTC), e.g. 2026-11-26T18:00")
    when.add_argument("--ttl-s", type=int, help="expires this many seconds from now")
    code.add_argument("--key-file", required=True, type=Path, help="the store's key (hex)")
    code.add_argument("--key-id", type=int, default=0, help="key id in the code (default 0)")
    code.set_defaults(func=_code)

    verify = cmds.add_parser("verify", help="check a pickup code as the store's terminal would",
                             description="Prints one JSON line; a refusal also says why on"
                                         f" stderr. {_EXIT_HELP} Redemption is not checked:"
                                         " only the terminal knows what was handed over.",
                             epilog=_EXIT_HELP)
    verify.add_argument("code", metavar="CODE")
    verify.add_argument("--store", required=True)
    verify.add_argument("--key-file", required=True, type=Path, help="the store's key (hex)")
    verify.add_argument("--key-id", type=int, default=0, help="the key's id (default 0)")
    verify.add_argument("--now", help="judge as of this time (ISO 8601 or unix seconds)")
    verify.set_defaults(func=_verify)


def parse_time(text: str) -> float:
    """Unix seconds from ISO 8601 (a time without zone is UTC) or a plain number."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r}: not an ISO 8601 time or unix seconds") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


def load_key(path: Path) -> bytes:
    return load_pickup_key(path)


def codec(store: str, key_file: Path, key_id: int) -> PickupCodec:
    return PickupCodec(store, load_key(key_file), key_id=key_id)


def _fail(message: str) -> int:
    print(f"xiaodian pickup: {message}", file=sys.stderr)
    return 1


def _code(args: argparse.Namespace) -> int:
    if not ids.is_store_id(args.store):
        return _fail(f"{args.store!r} is not a store id")
    try:
        expires = time.time() + args.ttl_s if args.expires is None else parse_time(args.expires)
        c = codec(args.store, args.key_file, args.key_id)
        text = c.issue(args.order, expires)
    except (ValueError, PkiError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{args.key_file}: {exc.strerror or exc}")
    minute = int(expires // 60) * 60
    if minute <= time.time():
        print(f"xiaodian pickup: warning: this code has expired already"
              f" ({_iso(minute)})", file=sys.stderr)
    print(text)
    print(f"order {args.order} at {args.store}, valid until {_iso(minute)}", file=sys.stderr)
    return 0


def _verify(args: argparse.Namespace) -> int:
    try:
        now = time.time() if args.now is None else parse_time(args.now)
        c = codec(args.store, args.key_file, args.key_id)
    except (ValueError, PkiError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{args.key_file}: {exc.strerror or exc}")
    try:
        ticket = c.verify(args.code.strip(), now)
    except PickupError as exc:
        print(json.dumps({"ok": False, "reason": exc.reason, "message": exc.message}))
        print(f"refused: {exc.message}", file=sys.stderr)
        return VERIFY_EXIT.get(exc.reason, 1)
    print(json.dumps({"ok": True, "store": ticket.store_id, "order": ticket.order_id,
                      "expires": ticket.expires_at, "expires_iso": _iso(ticket.expires_at),
                      "key_id": ticket.key_id, "nonce": ticket.nonce}))
    return 0


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%MZ")
