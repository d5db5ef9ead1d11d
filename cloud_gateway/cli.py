"""`xiaodian cloud ...`: run an ingest worker with the HTTP API, or read the cloud database."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported lazily at run time: `xiaodian --help` stays quick
    from .db import Database

from . import config as cloud_config
from . import sql


def register(sub: Any) -> None:
    cloud = sub.add_parser("cloud", help="the cloud gateway: ingest, database, HTTP API")
    cmds = cloud.add_subparsers(dest="cloud_command", required=True, metavar="COMMAND")

    run = cmds.add_parser("run", help="ingest worker and HTTP API/dashboard in one process")
    run.add_argument("--config", required=True, type=Path, help="cloud TOML file")
    run.set_defaults(func=_run)

    readings = cmds.add_parser("readings", help="export one fridge's readings (CSV or JSONL)")
    _db_source(readings)
    readings.add_argument("--store", required=True)
    readings.add_argument("--fridge", required=True, help="the fridge's device id")
    readings.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    readings.set_defaults(func=_readings)

    dead = cmds.add_parser("dead-letters", help="list parked (refused) messages, newest first")
    _db_source(dead)
    dead.add_argument("--format", choices=("text", "jsonl"), default="text",
                      help="text: one tab-separated line each; jsonl: full payloads")
    dead.add_argument("--limit", type=int, default=None, help="at most this many")
    dead.set_defaults(func=_dead_letters)

    gaps = cmds.add_parser("gaps", help="list missing stretches of records (open data gaps)")
    _db_source(gaps)
    gaps.add_argument("--store", default=None, help="only this store")
    gaps.add_argument("--all", action="store_true",
                      help="filled gaps too (records that arrived late)")
    gaps.add_argument("--format", choices=("text", "jsonl"), default="text",
                      help="text: a header and one tab-separated line each; jsonl: objects")
    gaps.set_defaults(func=_gaps)

    rec = cmds.add_parser("haccp", help="HACCP day record of a store's fridges (CSV or HTML)")
    _db_source(rec)
    rec.add_argument("--store", required=True)
    rec.add_argument("--fridge", default=None, help="only this fridge (default: every fridge)")
    rec.add_argument("--day", default=None,
                     help="YYYY-MM-DD, a local day in --tz (default: that of the newest reading)")
    rec.add_argument("--tz", default="UTC", help="IANA time zone of the day (Asia/Shanghai)")
    rec.add_argument("--format", choices=("csv", "html"), default="csv",
                     help="csv: day, excursion and alert rows; html: printable page with charts")
    rec.set_defaults(func=_haccp)

    command = cmds.add_parser(
        "command", help="issue a signed command to a store and wait for its answer (JSON)",
        description="Exit status: 0 answered, 3 refused by the store, 4 expired or not sent,"
                    " 5 no answer within --timeout, 1 error. A running `cloud run` worker"
                    " collects the answer into the database; this command waits for it there.")
    command.add_argument("--config", required=True, type=Path, help="cloud TOML file")
    command.add_argument("--store", required=True)
    command.add_argument("action", metavar="ACTION", help="unlock, set_point, defrost, ...")
    command.add_argument("params", metavar="KEY=VALUE", nargs="*",
                         help="parameters, typed as the action defines (minutes=20)")
    command.add_argument("--timeout", type=float, default=30.0,
                         help="seconds to wait for the answer (default 30)")
    command.set_defaults(func=_command)

    cat = cmds.add_parser("catalogue", help="a store's catalogue")
    cat_cmds = cat.add_subparsers(dest="catalogue_command", required=True, metavar="COMMAND")
    push = cat_cmds.add_parser(
        "push", help="store a new catalogue version from a TOML file and send it (retained)",
        description="FILE.toml has [[items]] tables: item (GTIN-14 or in:NUMBER), name, unit"
                    " (piece|weight), shelf_life_days, storage (chilled|frozen|ambient) and"
                    " optionally location = {fridge, lane, unit_grams}. Exit status 0 sent,"
                    " 4 stored but the broker has not taken it yet (a `cloud run` worker"
                    " sends it), 1 error.")
    push.add_argument("store", metavar="STORE")
    push.add_argument("file", metavar="FILE.toml", type=Path)
    push.add_argument("--config", required=True, type=Path, help="cloud TOML file")
    push.set_defaults(func=_catalogue_push)

    order = cmds.add_parser("order", help="orders of a store")
    order_cmds = order.add_subparsers(dest="order_command", required=True, metavar="COMMAND")
    create = order_cmds.add_parser(
        "create", help="reserve stock, store an order and send it to the store",
        description="Prints the order as JSON, with its pickup code. Exit status 0 sent,"
                    " 4 stored but not yet taken by the broker, 3 not enough stock,"
                    " 1 other errors.")
    create.add_argument("--config", required=True, type=Path, help="cloud TOML file")
    create.add_argument("--store", required=True)
    create.add_argument("--item", dest="items", action="append", required=True,
                        metavar="ITEM=QTY", help="an order line (repeatable)")
    create.add_argument("--mode", choices=("pickup", "delivery"), default="pickup")
    create.add_argument("--customer", required=True, help="display name for the clerk")
    create.add_argument("--expires-in-s", type=int, default=24 * 3600,
                        help="seconds until the order and its code expire (default 1 day)")
    create.set_defaults(func=_order_create)

    stock = cmds.add_parser("stock", help="a store's stock: on hand, reserved, available")
    stock.add_argument("store", metavar="STORE")
    _db_source(stock)
    stock.add_argument("--format", choices=("text", "json"), default="text")
    stock.set_defaults(func=_stock)


def _db_source(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", type=Path,
                     help="cloud TOML file (uses its [cloud] db or database_url)")
    src.add_argument("--db", help="cloud database: a SQLite file or a postgresql:// URL")


def _db_path(args: argparse.Namespace) -> Path | str:
    if args.db is not None:
        return str(args.db) if sql.is_url(args.db) else Path(args.db)
    return cloud_config.load(args.config).cloud.database


def _open_readonly(path: Path | str) -> Database | None:
    """The cloud database for a reading command, or None after saying why it cannot be."""
    from .db import Database

    try:
        return Database.open_readonly(path)
    except sql.ERRORS as exc:
        print(f"xiaodian cloud: cannot open database {sql.describe(path)}: {exc}", file=sys.stderr)
        return None


def _run(args: argparse.Namespace) -> int:
    from . import commands
    from .downlink import DownlinkSender
    from .http_api import Api, HttpServer
    from .ingest import IngestWorker

    cfg = cloud_config.load(args.config)
    commander: commands.Commander | None = None
    publisher: commands.CommandPublisher | None = None
    token: bytes | None = None
    if cfg.commands.enabled:
        assert cfg.commands.api_token_file is not None  # enabled: all three are set
        try:
            signer = commands.load_signer(cfg.commands)
            token = commands.load_api_token(cfg.commands.api_token_file)
        except commands.CommandSetupError as exc:
            print(f"xiaodian cloud: refusing to start: {exc}", file=sys.stderr)
            return 1
        publisher = commands.CommandPublisher(
            cfg.mqtt, commands.default_publisher_id(cfg.cloud.worker_id))
        commander = commands.Commander(
            signer, cfg.cloud.database, publisher, lifetime_s=cfg.commands.lifetime_s,
            publish_timeout_s=cfg.commands.publish_timeout_s)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        alerts = _alert_service(cfg)
    except commands.CommandSetupError as exc:
        print(f"xiaodian cloud: refusing to start: {exc}", file=sys.stderr)
        return 1
    worker = IngestWorker(cfg.mqtt, cfg.cloud, alerts=alerts)
    try:
        worker.start()
    except sql.ERRORS as exc:
        print(f"xiaodian cloud: cannot open database {sql.describe(cfg.cloud.database)}:"
              f" {exc}", file=sys.stderr)
        return 1
    # Orders and catalogues: a publisher of their own, and a thread that retries them.
    down_pub = commands.CommandPublisher(cfg.mqtt, f"{cfg.cloud.worker_id}-down")
    downlink = DownlinkSender(cfg.cloud.database, down_pub, retry_s=cfg.cloud.downlink_retry_s,
                              resend_open_s=cfg.cloud.order_resend_s)
    try:
        if publisher is not None:
            publisher.start()
        down_pub.start()
        server = HttpServer(Api(cfg.cloud.database, worker.status, commander=commander,
                                api_token=token,
                                alert_link_secret=alerts.link_secret if alerts else None,
                                downlink=downlink, pickup_keys_dir=cfg.pickup.keys_dir,
                                pickup_key_id=cfg.pickup.key_id),
                            cfg.cloud.http_host, cfg.cloud.http_port)
    except OSError as exc:  # also a missing TLS file for the publisher
        worker.stop()
        if publisher is not None:
            publisher.stop()
        down_pub.stop()
        print(f"xiaodian cloud: cannot listen on {cfg.cloud.http_host}:{cfg.cloud.http_port}:"
              f" {exc.strerror or exc}", file=sys.stderr)
        return 1
    exit_code = 0
    if alerts is not None:
        alerts.start()
    downlink.start()
    with server:
        print(server.url, flush=True)
        # The short wait keeps signal delivery prompt and lets us notice a dead worker.
        while not stop.wait(0.5):
            if not worker.alive():
                print("xiaodian cloud: ingest worker died; see the log", file=sys.stderr)
                exit_code = 1
                break
        worker.stop()
        downlink.stop()
        down_pub.stop()
        if alerts is not None:
            alerts.stop()
        if publisher is not None:
            publisher.stop()
    return exit_code


def _alert_service(cfg: cloud_config.CloudConfig) -> Any:
    """The alert sender, if `[alerts]` names contacts; secrets are checked like the token."""
    from .alerts.notifier import AlertService
    from .commands import load_api_token

    a = cfg.alerts
    if a.link_secret_file is None:
        return None
    secrets = {f"{st.store}/{c.name}": load_api_token(c.webhook_secret_file)
               for st in a.stores for c in st.contacts if c.webhook_secret_file is not None}
    host = f"[{cfg.cloud.http_host}]" if ":" in cfg.cloud.http_host else cfg.cloud.http_host
    return AlertService(a, cfg.cloud.database, cfg.cloud.worker_id,
                        link_secret=load_api_token(a.link_secret_file),
                        webhook_secrets=secrets,
                        public_url=f"http://{host}:{cfg.cloud.http_port}/")


def _command(args: argparse.Namespace) -> int:
    import getpass

    from xiaodian.wire.commands import CommandError

    from . import commands
    from .db import Database

    def fail(message: str) -> int:
        print(f"xiaodian cloud command: {message}", file=sys.stderr)
        return 1

    cfg = cloud_config.load(args.config)
    if not cfg.commands.enabled:
        return fail(f"{args.config}: no [commands] section (signing_key, key_id, ...)")
    try:
        params = commands.parse_cli_params(args.action, args.params)
        signer = commands.load_signer(cfg.commands)
    except (ValueError, commands.CommandSetupError) as exc:
        return fail(str(exc))
    try:
        Database.open(cfg.cloud.database).close()  # the schema, if no worker ever ran here
    except sql.ERRORS as exc:
        return fail(f"cannot open database {sql.describe(cfg.cloud.database)}: {exc}")
    publisher = commands.CommandPublisher(cfg.mqtt, commands.cli_publisher_id(cfg.cloud.worker_id))
    try:
        publisher.start()
    except OSError as exc:
        return fail(str(exc))
    try:
        if not publisher.wait_connected(min(args.timeout, 10.0)):
            return fail(f"cannot connect to the broker {cfg.mqtt.host}:{cfg.mqtt.port}")
        commander = commands.Commander(
            signer, cfg.cloud.database, publisher, lifetime_s=cfg.commands.lifetime_s,
            publish_timeout_s=cfg.commands.publish_timeout_s)
        try:
            command_id = commander.issue(args.store, args.action, params,
                                         issued_by=f"cli:{getpass.getuser()}")
        except CommandError as exc:
            return fail(str(exc))
        except sql.ERRORS as exc:
            return fail(f"cannot record the command in {sql.describe(cfg.cloud.database)}: {exc}")
    finally:
        publisher.stop()
    cmd = commands.wait_settled(cfg.cloud.database, command_id, args.timeout)
    print(json.dumps(cmd, separators=(",", ":")), flush=True)
    state = cmd["state"] if cmd else "sent"
    if state == "sent":
        print(f"xiaodian cloud command: no answer to {command_id} within {args.timeout:g} s"
              " (is a `cloud run` worker collecting answers?)", file=sys.stderr)
    return {"answered": 0, "refused": 3, "expired": 4, "unsent": 4}.get(state, 5)


def _send_now(cfg: cloud_config.CloudConfig, kind: str, ref: int, timeout: float = 10.0) -> bool:
    """Publish what is pending with a connection of this process; whether (kind, ref) went."""
    from . import commands
    from .db import Database
    from .downlink import DownlinkSender

    pub = commands.CommandPublisher(cfg.mqtt, f"{cfg.cloud.worker_id}-down-cli-{os.getpid()}")
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
        items = retail.parse_catalogue_items(args.store, raw.get("items", []))
        with Database.open(cfg.cloud.database) as db, db.transaction() as conn:
            cat = retail.put_catalogue(conn, args.store, items, time.time(),
                                       f"cli:{getpass.getuser()}")
    except retail.RetailError as exc:
        return fail(f"{args.file}: {exc.message}")
    except sql.ERRORS as exc:
        return fail(f"cannot store it in {sql.describe(cfg.cloud.database)}: {exc}")
    sent = _send_now(cfg, "catalogue", cat.version)
    print(json.dumps({"store": args.store, "version": cat.version, "items": len(items),
                      "sent": sent}))
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
    except retail.RetailError as exc:
        return fail(exc.message, 3 if exc.status == 409 else 1)
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
    print(f"{'item':<16} {'name':<28} {'on_hand':>8} {'reserved':>8} {'available':>9}")
    for it in view["items"]:
        print(f"{it['item']:<16} {(it['name'] or '')[:28]:<28} {it['on_hand']:>8}"
              f" {it['reserved']:>8} {it['available']:>9}")
    return 0


def _readings(args: argparse.Namespace) -> int:
    from .export import write_readings

    path = _db_path(args)
    db = _open_readonly(path)
    if db is None:
        return 1
    with db:
        if next(db.readings(args.store, args.fridge, limit=1), None) is None:
            print(f"xiaodian cloud: no readings for store {args.store!r} fridge {args.fridge!r}"
                  f" in {sql.describe(path)}", file=sys.stderr)
            return 1
        try:
            write_readings(db.readings(args.store, args.fridge), sys.stdout, args.format)
            sys.stdout.flush()
        except BrokenPipeError:
            return _reader_went_away()
    return 0


def _dead_letters(args: argparse.Namespace) -> int:
    from .export import write_dead_letters

    path = _db_path(args)
    db = _open_readonly(path)
    if db is None:
        return 1
    with db:
        try:
            write_dead_letters(db.dead_letters(limit=args.limit), sys.stdout, args.format)
            sys.stdout.flush()
        except BrokenPipeError:
            return _reader_went_away()
    return 0


def _gaps(args: argparse.Namespace) -> int:
    from .export import write_gaps

    path = _db_path(args)
    db = _open_readonly(path)
    if db is None:
        return 1
    with db:
        try:
            rows = db.gaps(args.store, state="all" if args.all else "open")
        except sql.ERRORS as exc:  # a database no worker has opened since gap tracking
            print(f"xiaodian cloud: cannot read gaps from {sql.describe(path)}: {exc}",
                  file=sys.stderr)
            return 1
        try:
            write_gaps(rows, sys.stdout, args.format)
            sys.stdout.flush()
        except BrokenPipeError:
            return _reader_went_away()
    return 0


def _haccp(args: argparse.Namespace) -> int:
    from . import haccp
    from .db import Database

    def fail(message: str) -> int:
        print(f"xiaodian cloud haccp: {message}", file=sys.stderr)
        return 1

    try:
        tz = haccp.parse_tz(args.tz)
        day = None if args.day is None else haccp.parse_day(args.day)
    except ValueError as exc:
        return fail(str(exc))
    path = _db_path(args)
    try:
        db = Database.open_readonly(path)
    except sql.ERRORS as exc:
        return fail(f"cannot open database {sql.describe(path)}: {exc}")
    with db:
        try:
            known = haccp.fridge_ids(db.conn, args.store)
            if not known or (args.fridge is not None and args.fridge not in known):
                what = f"store {args.store!r}" + (f" fridge {args.fridge!r}" if args.fridge else "")
                return fail(f"no readings for {what} in {sql.describe(path)}")
            day = day or haccp.latest_day(db.conn, args.store, tz)
            assert day is not None  # the store has readings
            days = haccp.report(db.conn, args.store, day, tz, args.fridge)
            if args.format == "csv":
                haccp.write_csv(days, sys.stdout)
            else:
                sys.stdout.write(haccp.report_html(db.conn, days) + "\n")
            sys.stdout.flush()
        except sql.ERRORS as exc:
            return fail(f"cannot read {sql.describe(path)}: {exc}")
        except BrokenPipeError:
            return _reader_went_away()
    return 0


def _reader_went_away() -> int:
    # `... | head`: stop quietly. Point stdout at /dev/null so the interpreter's final
    # flush does not raise again (the recipe from the Python signal docs).
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 1
