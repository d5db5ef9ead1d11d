"""`xiaodian cloud readings|dead-letters|gaps|haccp`: read the cloud database.

Also the helpers every reading command shares: where the database is (`--config` or
`--db`), opening it read-only, and stopping quietly when the reader of stdout goes away.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported lazily at run time: `xiaodian --help` stays quick
    from .db import Database

from xiaodian.i18n import N_

from . import config as cloud_config
from . import sql


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
        rows = db.readings(args.store, args.fridge)
        return _emit(lambda: write_readings(rows, sys.stdout, args.format))


def _dead_letters(args: argparse.Namespace) -> int:
    from .export import write_dead_letters

    path = _db_path(args)
    db = _open_readonly(path)
    if db is None:
        return 1
    with db:
        letters = db.dead_letters(limit=args.limit)
        if not letters and args.format == "text":
            return _none(N_("None: no parked messages."))
        return _emit(lambda: write_dead_letters(letters, sys.stdout, args.format))


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
        if not rows and args.format == "text":
            return _none(N_("None: no data gaps.") if args.all else
                         N_("None: no open data gaps."))
        return _emit(lambda: write_gaps(rows, sys.stdout, args.format))


def _haccp(args: argparse.Namespace) -> int:
    from xiaodian.i18n import negotiate, translator

    from . import haccp, stores
    from .db import Database

    def fail(message: str) -> int:
        print(f"xiaodian cloud haccp: {message}", file=sys.stderr)
        return 1

    try:
        tz = None if args.tz is None else haccp.parse_tz(args.tz)
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
            profile = stores.get(db.conn, args.store)
            tz = tz or profile.zone  # the store's own zone unless --tz says otherwise
            day = day or haccp.latest_day(db.conn, args.store, tz)
            assert day is not None  # the store has readings
            days = haccp.report(db.conn, args.store, day, tz, args.fridge)
            if args.format == "csv":
                haccp.write_csv(days, sys.stdout)
            else:
                t = translator(negotiate(args.lang))
                sys.stdout.write(haccp.report_html(db.conn, days, t, store_name=profile.name)
                                 + "\n")
            sys.stdout.flush()
        except sql.ERRORS as exc:
            return fail(f"cannot read {sql.describe(path)}: {exc}")
        except BrokenPipeError:
            return _reader_went_away()
    return 0


def _none(text: str) -> int:
    """An empty listing says so (Chinese unless XIAODIAN_LANG=en), not a bare
    header or nothing: a person must not wonder whether the command worked."""
    from xiaodian.i18n import negotiate, translator

    lang = os.environ.get("XIAODIAN_LANG")
    return _emit(lambda: print(translator(negotiate(lang)).gettext(text)))


def _emit(write: Callable[[], object]) -> int:
    """Write a command's output; 0, or 1 quietly when the reader went away (`| head`)."""
    try:
        write()
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
