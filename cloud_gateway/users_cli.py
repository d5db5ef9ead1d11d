"""`xiaodian cloud user|token|audit`: people, their API tokens, and the audit trail.

Added to the `cloud` command that `cloud_gateway.cli` registers (so this module comes after
it in devstack/cli.py's COMMAND_MODULES). Passwords are read from the terminal (twice) or,
for scripts, from standard input with --password-stdin: never from the command line, where
other users could see them in the process list.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from pathlib import Path
from typing import Any

from . import accounts, sql
from . import config as cloud_config


def register(sub: Any) -> None:
    cloud = sub.choices["cloud"]
    cmds = next(a for a in cloud._actions if isinstance(a, argparse._SubParsersAction))

    user = cmds.add_parser("user", help="people who may use the API and pages")
    users = user.add_subparsers(dest="user_command", required=True, metavar="COMMAND")
    add = users.add_parser(
        "add", help="add an account: owner or technician of stores, or operator",
        description="The password is asked for twice on the terminal, or read from standard"
                    " input (first line) with --password-stdin.")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", required=True, choices=accounts.ROLES)
    add.add_argument("--store", dest="stores", action="append", default=[], metavar="STORE",
                     help="a store the owner or technician covers (repeatable)")
    pw = add.add_mutually_exclusive_group()
    pw.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    pw.add_argument("--no-password", action="store_true",
                    help="no login: the account uses API tokens only")
    _db(add)
    add.set_defaults(func=_user_add)
    lst = users.add_parser("list", help="every account, its role and stores")
    _db(lst)
    lst.add_argument("--format", choices=("text", "json"), default="text")
    lst.set_defaults(func=_user_list)
    rev = users.add_parser("revoke", help="disable an account now: sessions and tokens end")
    rev.add_argument("name", metavar="NAME")
    _db(rev)
    rev.set_defaults(func=_user_revoke)
    pwd = users.add_parser("password", help="set a new password (ends the user's sessions)")
    pwd.add_argument("name", metavar="NAME")
    pwd.add_argument("--password-stdin", action="store_true")
    _db(pwd)
    pwd.set_defaults(func=_user_password)

    token = cmds.add_parser("token", help="personal API tokens (bearer)")
    tokens = token.add_subparsers(dest="token_command", required=True, metavar="COMMAND")
    create = tokens.add_parser("create", help="make a token for a user; printed once",
                               description="Prints the token on standard output, once: only"
                                           " its digest is kept.")
    create.add_argument("name", metavar="USER")
    create.add_argument("--label", default="", help="what the token is for")
    create.add_argument("--store", dest="stores", action="append", default=[], metavar="STORE",
                        help="narrow the token to this store of the user's (repeatable)")
    create.add_argument("--expires-in-days", type=int, default=None)
    _db(create)
    create.set_defaults(func=_token_create)
    trev = tokens.add_parser("revoke", help="revoke a token by id; effective at once")
    trev.add_argument("id", type=int, metavar="ID")
    _db(trev)
    trev.set_defaults(func=_token_revoke)
    tlist = tokens.add_parser("list", help="tokens (ids, users, labels; never the tokens)")
    tlist.add_argument("name", nargs="?", metavar="USER")
    _db(tlist)
    tlist.set_defaults(func=_token_list)

    aud = cmds.add_parser("audit", help="who acknowledged, sent, pushed, ordered or cancelled")
    aud.add_argument("--store", default=None)
    aud.add_argument("--limit", type=int, default=100)
    aud.add_argument("--format", choices=("text", "jsonl"), default="text")
    _db(aud)
    aud.set_defaults(func=_audit)


def _db(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", type=Path, help="cloud TOML file (its [cloud] database)")
    src.add_argument("--db", help="cloud database: a SQLite file or a postgresql:// URL")


def _path(args: argparse.Namespace) -> Path | str:
    if args.db is not None:
        return str(args.db) if sql.is_url(args.db) else Path(args.db)
    return cloud_config.load(args.config).cloud.database


def _fail(what: str, message: str) -> int:
    print(f"xiaodian cloud {what}: {message}", file=sys.stderr)
    return 1


def _write(args: argparse.Namespace, what: str, change: Any) -> int:
    """Run `change(conn)` in one transaction; errors are reported, never a traceback."""
    from .db import Database

    path = _path(args)
    try:
        with Database.open(path) as db, db.transaction() as conn:
            change(conn)
    except accounts.AccountError as exc:
        return _fail(what, str(exc))
    except sql.ERRORS as exc:
        return _fail(what, f"database {sql.describe(path)}: {exc}")
    return 0


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise accounts.AccountError("the passwords differ")
    return first


def _user_add(args: argparse.Namespace) -> int:
    try:
        password = None if args.no_password else _read_password(args.password_stdin)
        if password is not None:
            accounts.check_password(password)
    except (accounts.AccountError, EOFError) as exc:
        return _fail("user add", str(exc) or "no password given")
    code = _write(args, "user add", lambda conn: accounts.add_user(
        conn, args.name, args.role, args.stores, password, time.time()))
    if code == 0:
        where = "every store" if args.role == "operator" else ", ".join(sorted(args.stores))
        print(f"added {args.name}: {args.role} of {where}")
    return code


def _user_list(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    code = _write(args, "user list", lambda conn: rows.extend(accounts.list_users(conn)))
    if code:
        return code
    if args.format == "json":
        print(json.dumps(rows, separators=(",", ":")))
        return 0
    for r in rows:
        state = "revoked" if r["revoked_at"] else ("active" if r["password"] else "token-only")
        print(f"{r['name']}\t{r['role']}\t{','.join(r['stores']) or '*'}\t{state}")
    return 0


def _user_revoke(args: argparse.Namespace) -> int:
    code = _write(args, "user revoke",
                  lambda conn: accounts.revoke_user(conn, args.name, time.time()))
    if code == 0:
        print(f"revoked {args.name}: sessions ended, tokens revoked")
    return code


def _user_password(args: argparse.Namespace) -> int:
    try:
        password = _read_password(args.password_stdin)
    except (accounts.AccountError, EOFError) as exc:
        return _fail("user password", str(exc) or "no password given")
    return _write(args, "user password",
                  lambda conn: accounts.set_password(conn, args.name, password))


def _token_create(args: argparse.Namespace) -> int:
    if args.expires_in_days is not None and not 1 <= args.expires_in_days <= 366:
        return _fail("token create", "--expires-in-days: 1 to 366")
    ttl = None if args.expires_in_days is None else args.expires_in_days * 86400.0
    made: list[tuple[int, str]] = []
    code = _write(args, "token create", lambda conn: made.append(accounts.create_token(
        conn, args.name, args.label, args.stores, time.time(), ttl)))
    if code == 0:
        tid, token = made[0]
        print(f"token {tid} for {args.name} (shown once):", file=sys.stderr)
        print(token, flush=True)  # alone on stdout, for scripts
    return code


def _token_revoke(args: argparse.Namespace) -> int:
    code = _write(args, "token revoke",
                  lambda conn: accounts.revoke_token(conn, args.id, time.time()))
    if code == 0:
        print(f"revoked token {args.id}")
    return code


def _token_list(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    code = _write(args, "token list",
                  lambda conn: rows.extend(accounts.list_tokens(conn, args.name)))
    for r in rows:
        state = "revoked" if r["revoked_at"] else "active"
        print(f"{r['id']}\t{r['user']}\t{r['label']}\t{','.join(r['stores']) or '*'}\t{state}")
    return code


def _audit(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    code = _write(args, "audit", lambda conn: rows.extend(
        accounts.audit_rows(conn, store=args.store, limit=max(1, args.limit))))
    for r in rows:
        if args.format == "jsonl":
            print(json.dumps(r, separators=(",", ":"), ensure_ascii=False))
        else:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r["at"]))
            print(f"{when}\t{r['actor']}\t{r['role']}\t{r['action']}\t{r['store']}"
                  f"\t{r['target']}\t{r['via']}")
    return code
