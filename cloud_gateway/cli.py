"""`xiaodian cloud ...`: run an ingest worker with the HTTP API, or read the cloud database."""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from . import config as cloud_config


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


def _db_source(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", type=Path, help="cloud TOML file (uses its [cloud] db)")
    src.add_argument("--db", type=Path, help="cloud database file")


def _db_path(args: argparse.Namespace) -> Path:
    if args.db is not None:
        return Path(args.db)
    return cloud_config.load(args.config).cloud.db


def _run(args: argparse.Namespace) -> int:
    from .http_api import Api, HttpServer
    from .ingest import IngestWorker

    cfg = cloud_config.load(args.config)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker = IngestWorker(cfg.mqtt, cfg.cloud)
    try:
        worker.start()
    except sqlite3.Error as exc:
        print(f"xiaodian cloud: cannot open database {cfg.cloud.db}: {exc}", file=sys.stderr)
        return 1
    try:
        server = HttpServer(Api(cfg.cloud.db, worker.status), cfg.cloud.http_host,
                            cfg.cloud.http_port)
    except OSError as exc:
        worker.stop()
        print(f"xiaodian cloud: cannot listen on {cfg.cloud.http_host}:{cfg.cloud.http_port}:"
              f" {exc.strerror or exc}", file=sys.stderr)
        return 1
    exit_code = 0
    with server:
        print(server.url, flush=True)
        # The short wait keeps signal delivery prompt and lets us notice a dead worker.
        while not stop.wait(0.5):
            if not worker.alive():
                print("xiaodian cloud: ingest worker died; see the log", file=sys.stderr)
                exit_code = 1
                break
        worker.stop()
    return exit_code


def _readings(args: argparse.Namespace) -> int:
    from .db import Database
    from .export import write_readings

    path = _db_path(args)
    try:
        db = Database.open_readonly(path)
    except sqlite3.Error as exc:
        print(f"xiaodian cloud: cannot open database {path}: {exc}", file=sys.stderr)
        return 1
    with db:
        if next(db.readings(args.store, args.fridge, limit=1), None) is None:
            print(f"xiaodian cloud: no readings for store {args.store!r} fridge {args.fridge!r}"
                  f" in {path}", file=sys.stderr)
            return 1
        try:
            write_readings(db.readings(args.store, args.fridge), sys.stdout, args.format)
            sys.stdout.flush()
        except BrokenPipeError:
            return _reader_went_away()
    return 0


def _dead_letters(args: argparse.Namespace) -> int:
    from .db import Database
    from .export import write_dead_letters

    path = _db_path(args)
    try:
        db = Database.open_readonly(path)
    except sqlite3.Error as exc:
        print(f"xiaodian cloud: cannot open database {path}: {exc}", file=sys.stderr)
        return 1
    with db:
        try:
            write_dead_letters(db.dead_letters(limit=args.limit), sys.stdout, args.format)
            sys.stdout.flush()
        except BrokenPipeError:
            return _reader_went_away()
    return 0


def _gaps(args: argparse.Namespace) -> int:
    from .db import Database
    from .export import write_gaps

    path = _db_path(args)
    try:
        db = Database.open_readonly(path)
    except sqlite3.Error as exc:
        print(f"xiaodian cloud: cannot open database {path}: {exc}", file=sys.stderr)
        return 1
    with db:
        try:
            rows = db.gaps(args.store, state="all" if args.all else "open")
        except sqlite3.Error as exc:  # a database no worker has opened since gap tracking
            print(f"xiaodian cloud: cannot read gaps from {path}: {exc}", file=sys.stderr)
            return 1
        try:
            write_gaps(rows, sys.stdout, args.format)
            sys.stdout.flush()
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
