"""`xiaodian cloud ...`: run an ingest worker with the HTTP API, or read the cloud database.

This module builds the argument parser; each command group lives in its own module:
`cli_run` (run), `cli_command` (command), `cli_retail` (catalogue, order, stock),
`cli_read` (readings, dead-letters, gaps, haccp) and `cli_store` (store profiles). Their
handlers are re-exported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import cli_store
from .cli_command import _command
from .cli_read import (
    _db_path,
    _db_source,
    _dead_letters,
    _gaps,
    _haccp,
    _open_readonly,
    _reader_went_away,
    _readings,
)
from .cli_retail import _catalogue_push, _order_create, _send_now, _stock
from .cli_rollout import register as register_rollout
from .cli_run import _alert_service, _run

__all__ = [
    "_alert_service", "_catalogue_push", "_command", "_db_path", "_db_source", "_dead_letters",
    "_gaps", "_haccp", "_open_readonly", "_order_create", "_reader_went_away", "_readings",
    "_run", "_send_now", "_stock", "register",
]


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
    rec.add_argument("--tz", default=None,
                     help="IANA time zone of the day (default: the store's, see `cloud store`)")
    rec.add_argument("--lang", choices=("zh-CN", "en"), default="zh-CN",
                     help="language of the HTML page (the CSV is for machines: English)")
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
    register_rollout(cmds)  # `cloud rollout`: staged updates from the cloud (cli_rollout.py)

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

    cli_store.add(cmds)
