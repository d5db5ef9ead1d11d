"""`xiaodian cloud catalogue|order|stock`: a store's catalogue, orders and stock."""

from __future__ import annotations

import argparse
import json
import sys
import time

from xiaodian.i18n import N_

from . import config as cloud_config
from . import sql
from .cli_audit import audit
from .cli_certs import shared_certificate
from .cli_read import _db_path, _none, _open_readonly


def _send_now(cfg: cloud_config.CloudConfig, kind: str, ref: int, timeout: float = 10.0) -> bool:
    """Publish what is pending with a connection of this process; whether (kind, ref) went."""
    from . import commands
    from .db import Database
    from .downlink import DownlinkSender

    cli_id = commands.cli_publisher_id(cfg.cloud.worker_id)
    problem = shared_certificate(cfg, [cfg.cloud.worker_id, cli_id])
    if problem:  # stored: a running worker sends it
        print(f"xiaodian cloud: not sent now: {problem}", file=sys.stderr)
    else:
        pub = commands.CommandPublisher(cfg.mqtt, cli_id)
        try:
            pub.start()
            if pub.wait_connected(timeout):
                DownlinkSender(cfg.cloud.database, pub, resync_on_connect=False).send_pending()
        except OSError as exc:
            print(f"xiaodian cloud: not sent now: {exc}", file=sys.stderr)
        except sql.ERRORS as exc:
            print(f"xiaodian cloud: not sent now: {exc}", file=sys.stderr)
        finally:
            pub.stop()
    with Database.open(cfg.cloud.database) as db:
        row = db.conn.execute("SELECT published_at FROM downlink WHERE kind = ? AND ref = ?"
                              " ORDER BY id DESC LIMIT 1", (kind, ref)).fetchone()
    return row is not None and row[0] is not None


def _catalogue_push(args: argparse.Namespace) -> int:
    import getpass
    import tomllib

    from . import retail
    from .db import Database

    def fail(message: str) -> int:
        print(f"xiaodian cloud catalogue push: {message}", file=sys.stderr)
        return 1

    cfg = cloud_config.load(args.config)
    try:
        raw = tomllib.loads(args.file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return fail(f"{args.file}: {exc}")
    unknown = sorted(set(raw) - {"items"})
    if unknown:
        return fail(f"{args.file}: unknown key {unknown[0]!r} (expected [[items]] tables)")
    try:
        items, prices = retail.parse_catalogue(args.store, raw.get("items", []))
        with Database.open(cfg.cloud.database) as db, db.transaction() as conn:
            cat = retail.put_catalogue(conn, args.store, items, time.time(),
                                       f"cli:{getpass.getuser()}", prices)
            audit(conn, "catalogue.push", args.store, f"v{cat.version}", {"items": len(items)})
    except retail.RetailError as exc:
        return fail(f"{args.file}: {exc.message}")
    except sql.ERRORS as exc:
        return fail(f"cannot store it in {sql.describe(cfg.cloud.database)}: {exc}")
    sent = _send_now(cfg, "catalogue", cat.version)
    print(json.dumps({"store": args.store, "version": cat.version, "items": len(items),
                      "priced": len(prices), "sent": sent}))
    return 0 if sent else 4


def _order_create(args: argparse.Namespace) -> int:
    import getpass

    from xiaodian.pki.names import PkiError

    from . import retail
    from .db import Database
    from .pickup_cli import codec

    def fail(message: str, code: int = 1) -> int:
        print(f"xiaodian cloud order create: {message}", file=sys.stderr)
        return code

    cfg = cloud_config.load(args.config)
    items = []
    for word in args.items:
        item, sep, qty = word.partition("=")
        if not sep or not qty.isdigit():
            return fail(f"--item {word!r}: expected ITEM=QTY")
        items.append({"item": item, "qty": int(qty)})
    try:
        req = retail.parse_order_request({"items": items, "mode": args.mode,
                                          "customer": args.customer,
                                          "expires_in_s": args.expires_in_s})
        issuer = None
        if cfg.pickup.keys_dir is not None:
            key_file = cfg.pickup.keys_dir / f"{args.store}.key"
            if key_file.exists() or req.mode == "pickup":
                issuer = codec(args.store, key_file, cfg.pickup.key_id)
        elif req.mode == "pickup":
            return fail(f"{args.config}: no [pickup] keys_dir: a pickup order needs a code")
        with Database.open(cfg.cloud.database) as db, db.transaction() as conn:
            order = retail.create_order(conn, args.store, req, time.time(),
                                        f"cli:{getpass.getuser()}")
            audit(conn, "order.create", args.store, str(order.id), {"mode": order.mode})
    except retail.RetailError as exc:
        return fail(exc.message, 3 if exc.reason is retail.Refusal.CONFLICT else 1)
    except (OSError, ValueError, PkiError) as exc:  # the key file: named, never shown
        return fail(str(exc))
    except sql.ERRORS as exc:
        return fail(f"cannot store it in {sql.describe(cfg.cloud.database)}: {exc}")
    code = (issuer.issue(order.id, order.expires)
            if issuer is not None and order.mode == "pickup" else None)  # as the API does
    sent = _send_now(cfg, "order", order.id)
    print(json.dumps({"id": order.id, "store": order.store, "expires": order.expires,
                      "pickup_code": code, "sent": sent}))
    return 0 if sent else 4


def _stock(args: argparse.Namespace) -> int:
    from . import retail

    path = _db_path(args)
    db = _open_readonly(path)
    if db is None:
        return 1
    with db:
        try:
            view = retail.stock_view(db.conn, args.store, time.time())
        except sql.ERRORS as exc:
            print(f"xiaodian cloud: cannot read stock from {sql.describe(path)}: {exc}",
                  file=sys.stderr)
            return 1
    if args.format == "json":
        print(json.dumps(view))
        return 0
    if not view["items"]:
        return _none(N_("None: no stock recorded for this store."))
    print(f"{'item':<16} {'name':<28} {'on_hand':>8} {'reserved':>8} {'available':>9}")
    for it in view["items"]:
        print(f"{it['item']:<16} {(it['name'] or '')[:28]:<28} {it['on_hand']:>8}"
              f" {it['reserved']:>8} {it['available']:>9}")
    return 0
