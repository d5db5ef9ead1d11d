"""`xiaodian cloud store set|show`: a store's profile (display name and time zone).

The zone is the one every page and export shows the store's times in (cloud_gateway/stores.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from . import sql
from .cli_read import _db_path, _db_source

if TYPE_CHECKING:  # imported lazily at run time: `xiaodian --help` stays quick
    from .stores import Profile


def add(cmds: Any) -> None:
    store = cmds.add_parser("store", help="a store's profile: display name and time zone")
    sub = store.add_subparsers(dest="store_command", required=True, metavar="COMMAND")
    put = sub.add_parser(
        "set", help="set a store's display name and/or time zone",
        description="Times on the owner page, the HACCP record and its CSV are shown in the"
                    " store's time zone (Asia/Shanghai unless set). Prints the profile as JSON.")
    put.add_argument("store", metavar="STORE")
    put.add_argument("--name", default=None, help="the name people see (e.g. 幸福路店)")
    put.add_argument("--tz", default=None, help="IANA time zone, e.g. Asia/Shanghai")
    _db_source(put)
    put.set_defaults(func=_set)
    show = sub.add_parser("show", help="a store's profile as JSON (defaults if never set)")
    show.add_argument("store", metavar="STORE")
    _db_source(show)
    show.set_defaults(func=_show)


def _print(p: Profile) -> None:
    print(json.dumps({"store": p.store, "name": p.name, "tz": p.tz}, ensure_ascii=False))


def _fail(message: str) -> int:
    print(f"xiaodian cloud store: {message}", file=sys.stderr)
    return 1


def _set(args: argparse.Namespace) -> int:
    from . import stores
    from .db import Database

    if args.name is None and args.tz is None:
        return _fail("nothing to set: give --name and/or --tz")
    path = _db_path(args)
    try:
        with Database.open(path) as db, db.transaction() as conn:
            profile = stores.set_profile(conn, args.store, time.time(), name=args.name,
                                         tz=args.tz)
    except stores.ProfileError as exc:
        return _fail(str(exc))
    except sql.ERRORS as exc:
        return _fail(f"cannot write {sql.describe(path)}: {exc}")
    _print(profile)
    return 0


def _show(args: argparse.Namespace) -> int:
    from . import stores
    from .db import Database

    path = _db_path(args)
    try:
        with Database.open_readonly(path) as db:
            profile = stores.get(db.conn, args.store)
    except sql.ERRORS as exc:
        return _fail(f"cannot read {sql.describe(path)}: {exc}")
    _print(profile)
    return 0
