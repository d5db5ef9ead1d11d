"""People and roles: accounts, their stores, login sessions, API tokens and the audit trail.

Roles (docs/security.md has the full table):

    owner       of given stores: reads them, acknowledges alerts, runs orders and catalogue
    technician  of given stores: reads device data and commands, sends commands
    operator    every store, every action, plus the operations views (dead letters, audit)

Secrets are never stored as given: passwords as scrypt hashes (salted, memory-hard), session
ids and API tokens as SHA-256 digests (they are 256 random bits, so a fast hash suffices and a
stolen database yields no live credential). Plain SQL with `?` placeholders, both backends.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from xiaodian.wire import ids

from . import sql
from .errors import CloudError

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password TEXT,  -- scrypt$N$r$p$salt$hash; NULL for an account that uses tokens only
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS user_stores (
    username TEXT NOT NULL,
    store TEXT NOT NULL,
    PRIMARY KEY (username, store)
);
CREATE TABLE IF NOT EXISTS sessions (
    digest TEXT PRIMARY KEY,  -- SHA-256 of the cookie value
    username TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    client TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (username);
CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,  -- SHA-256 of the token
    username TEXT NOT NULL,
    label TEXT NOT NULL,
    stores TEXT NOT NULL,  -- JSON list narrowing the user stores; [] for all of them
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION,
    revoked_at DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    store TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL,
    via TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_by_store ON audit_log (store, at);
-- Acknowledgement links that were used: a link works once.
CREATE TABLE IF NOT EXISTS ack_links_used (
    digest TEXT PRIMARY KEY,
    store TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    used_at DOUBLE PRECISION NOT NULL
);
"""
TABLES = ("users", "user_stores", "sessions", "api_tokens", "audit_log", "ack_links_used")

ROLES = ("owner", "technician", "operator")
# What each role may do on a store it covers. "ops.read" is store-less (dead letters, the
# audit trail): operators only.
PERMISSIONS: dict[str, frozenset[str]] = {
    "owner": frozenset({"store.read", "orders.read", "orders.write", "catalogue.write",
                        "alerts.read", "alerts.ack", "commands.read"}),
    "technician": frozenset({"store.read", "alerts.read", "commands.read", "commands.send"}),
    "operator": frozenset({"store.read", "orders.read", "orders.write", "catalogue.write",
                           "alerts.read", "alerts.ack", "commands.read", "commands.send",
                           "ops.read"}),
}
AUDITED = ("alert.ack", "command.send", "catalogue.push", "order.create", "order.cancel",
           # readings past their retention dropped by the sweep (db/partitions.py)
           "readings.retention")

USERNAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}\Z")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # scrypt reads all of it: bound the work one request can cause
SESSION_TTL_S = 12 * 3600.0
TOKEN_PREFIX = "xdt_"
# scrypt at N=2^15, r=8, p=1: 32 MiB and ~0.1 s per hash, above the interactive-login
# minimum (N=2^14) of RFC 7914; the parameters are stored with each hash so they can grow.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


class AccountError(CloudError, ValueError):
    """A request about accounts that cannot be done; the message says why."""


@dataclass(frozen=True)
class Principal:
    """Who is calling, as established for this one request."""

    name: str
    role: str
    stores: frozenset[str]  # ignored for an operator, who covers every store
    via: str  # "session", "token:<id>" or "service-token"

    def covers(self, store: str) -> bool:
        return self.role == "operator" or store in self.stores

    def may(self, permission: str, store: str | None = None) -> bool:
        if permission not in PERMISSIONS.get(self.role, frozenset()):
            return False
        return store is None or self.covers(store)

    def visible(self, stores: Iterable[str]) -> set[str]:
        return {s for s in stores if self.covers(s)}


# ---------------------------------------------------------------- secrets


def hash_password(password: str) -> str:
    check_password(password)
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(stored: str | None, password: str) -> bool:
    if stored is None or len(password) > MAX_PASSWORD:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        given = _scrypt(password, bytes.fromhex(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(given, bytes.fromhex(digest))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=256 * r * n + 1024 * 1024, dklen=32)


# A real hash to check against when the user does not exist, so a login takes as long for an
# unknown name as for a wrong password (no user enumeration by timing).
_DUMMY_HASH: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(hash_password(secrets.token_urlsafe(16)))
    return _DUMMY_HASH[0]


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"password: at most {MAX_PASSWORD} characters")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- users


def add_user(conn: sql.Connection, name: str, role: str, stores: Iterable[str],
             password: str | None, now: float) -> None:
    """Create an account (inside the caller's transaction)."""
    if not USERNAME.match(name):
        raise AccountError("name: 1-64 characters of a-z 0-9 . _ @ -, starting with a letter"
                           " or digit")
    if role not in ROLES:
        raise AccountError(f"role: one of {', '.join(ROLES)}")
    stores = sorted(set(stores))
    bad = [s for s in stores if not ids.is_store_id(s)]
    if bad:
        raise AccountError(f"{bad[0]!r} is not a store id")
    if role != "operator" and not stores:
        raise AccountError(f"a{'n' if role == 'owner' else ''} {role} needs --store"
                           " (one or more)")
    if role == "operator" and stores:
        raise AccountError("an operator covers every store: give no --store")
    hashed = None if password is None else hash_password(password)
    if conn.execute("SELECT 1 FROM users WHERE username = ?", (name,)).fetchone():
        raise AccountError(f"user {name!r} exists (names are never reused, even revoked)")
    conn.execute("INSERT INTO users (username, role, password, created_at) VALUES (?, ?, ?, ?)",
                 (name, role, hashed, now))
    conn.executemany("INSERT INTO user_stores (username, store) VALUES (?, ?)",
                     [(name, s) for s in stores])


def set_password(conn: sql.Connection, name: str, password: str) -> None:
    hashed = hash_password(password)
    if conn.execute("UPDATE users SET password = ? WHERE username = ? AND revoked_at IS NULL",
                    (hashed, name)).rowcount == 0:
        raise AccountError(f"no active user {name!r}")
    conn.execute("DELETE FROM sessions WHERE username = ?", (name,))


def list_users(conn: sql.Connection) -> list[dict[str, Any]]:
    stores: dict[str, list[str]] = {}
    for r in conn.execute("SELECT username, store FROM user_stores ORDER BY username, store"):
        stores.setdefault(r["username"], []).append(r["store"])
    return [{"name": r["username"], "role": r["role"], "stores": stores.get(r["username"], []),
             "password": r["password"] is not None, "created_at": r["created_at"],
             "revoked_at": r["revoked_at"]}
            for r in conn.execute("SELECT username, role, password, created_at, revoked_at"
                                  " FROM users ORDER BY username")]


def revoke_user(conn: sql.Connection, name: str, now: float) -> None:
    """Disable an account at once: its sessions go, its tokens stop working."""
    if conn.execute("UPDATE users SET revoked_at = ? WHERE username = ? AND revoked_at IS NULL",
                    (now, name)).rowcount == 0:
        raise AccountError(f"no active user {name!r}")
    conn.execute("DELETE FROM sessions WHERE username = ?", (name,))
    conn.execute("UPDATE api_tokens SET revoked_at = ? WHERE username = ? AND revoked_at IS NULL",
                 (now, name))


def _principal(conn: sql.Connection, name: str, via: str,
               narrow: list[str] | None = None) -> Principal | None:
    row = conn.execute("SELECT role FROM users WHERE username = ? AND revoked_at IS NULL",
                       (name,)).fetchone()
    if row is None:
        return None
    stores = {r["store"] for r in conn.execute(
        "SELECT store FROM user_stores WHERE username = ?", (name,))}
    role = row["role"]
    if narrow:  # a token limited to some stores: never more than the user has
        if role == "operator":
            return _NarrowOperator(name, role, frozenset(narrow), via)
        stores &= set(narrow)
    return Principal(name, role, frozenset(stores), via)


class _NarrowOperator(Principal):
    """An operator token narrowed to some stores: an operator on those only."""

    def covers(self, store: str) -> bool:
        return store in self.stores

    def may(self, permission: str, store: str | None = None) -> bool:
        # Store-less operations views span every store: not for a narrowed token.
        if permission == "ops.read":
            return False
        return super().may(permission, store)


# ---------------------------------------------------------------- sessions


class LoginThrottle:
    """At most `limit` wrong passwords per name and per client address within `window_s`;
    past that, logins from there are refused until the window moves on, right password or
    not. Kept in the process: it slows guessing down, and a restart forgets it."""

    MAX_KEYS = 10_000  # bounded memory whatever the guesser sends

    def __init__(self, limit: int = 10, window_s: float = 900.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, keys: Iterable[str], now: float) -> bool:
        with self._lock:
            return any(len(self._recent(k, now)) >= self.limit for k in keys)

    def failed(self, keys: Iterable[str], now: float) -> None:
        with self._lock:
            if len(self._failures) >= self.MAX_KEYS:
                self._failures = {k: v for k, v in self._failures.items()
                                  if v and v[-1] > now - self.window_s}
                if len(self._failures) >= self.MAX_KEYS:
                    self._failures.clear()
            for k in keys:
                self._failures[k] = [*self._recent(k, now), now]

    def _recent(self, key: str, now: float) -> list[float]:
        return [t for t in self._failures.get(key, ()) if t > now - self.window_s]



def check_login(conn: sql.Connection, name: str, password: str) -> bool:
    """Whether the password is the active user's. Run it outside any write transaction:
    scrypt takes ~0.1 s, and SQLite would hold its one write lock all that time."""
    row = conn.execute("SELECT password FROM users WHERE username = ? AND revoked_at IS NULL",
                       (name,)).fetchone()
    if row is None:
        verify_password(_dummy_hash(), password)  # same time as a wrong password
        return False
    return verify_password(row["password"], password)


def start_session(conn: sql.Connection, name: str, client: str, now: float,
                  ttl_s: float = SESSION_TTL_S) -> tuple[str, Principal] | None:
    """A new session id (for the cookie) and who it is; None if the user was revoked since
    `check_login`."""
    principal = _principal(conn, name, "session")
    if principal is None:
        return None
    session = secrets.token_urlsafe(32)
    conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))  # housekeeping
    conn.execute("INSERT INTO sessions (digest, username, created_at, expires_at, client)"
                 " VALUES (?, ?, ?, ?, ?)", (digest(session), name, now, now + ttl_s, client))
    return session, principal


def session_principal(conn: sql.Connection, session: str, now: float) -> Principal | None:
    row = conn.execute("SELECT username FROM sessions WHERE digest = ? AND expires_at > ?",
                       (digest(session), now)).fetchone()
    return None if row is None else _principal(conn, row["username"], "session")


def logout(conn: sql.Connection, session: str) -> bool:
    return conn.execute("DELETE FROM sessions WHERE digest = ?",
                        (digest(session),)).rowcount > 0


# ---------------------------------------------------------------- API tokens


def create_token(conn: sql.Connection, name: str, label: str, stores: Iterable[str],
                 now: float, expires_in_s: float | None = None) -> tuple[int, str]:
    """(id, token): the token is returned once and only its digest is kept."""
    row = conn.execute("SELECT role FROM users WHERE username = ? AND revoked_at IS NULL",
                       (name,)).fetchone()
    if row is None:
        raise AccountError(f"no active user {name!r}")
    narrow = sorted(set(stores))
    if narrow and row["role"] != "operator":
        own = {r["store"] for r in conn.execute(
            "SELECT store FROM user_stores WHERE username = ?", (name,))}
        if not set(narrow) <= own:
            raise AccountError(f"{name} has no store {sorted(set(narrow) - own)[0]!r}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = None if expires_in_s is None else now + expires_in_s
    tid = conn.execute(
        "INSERT INTO api_tokens (digest, username, label, stores, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        (digest(token), name, label, json.dumps(narrow), now, expires)).fetchone()[0]
    return int(tid), token


def token_principal(conn: sql.Connection, token: str, now: float) -> Principal | None:
    row = conn.execute(
        "SELECT id, username, stores FROM api_tokens WHERE digest = ? AND revoked_at IS NULL"
        " AND (expires_at IS NULL OR expires_at > ?)", (digest(token), now)).fetchone()
    if row is None:
        return None
    return _principal(conn, row["username"], f"token:{row['id']}", json.loads(row["stores"]))


def revoke_token(conn: sql.Connection, token_id: int, now: float,
                 owner: str | None = None) -> None:
    """Revoke token `token_id` (only if it is `owner`'s, when given)."""
    q = "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"
    args: tuple[Any, ...] = (now, token_id)
    if owner is not None:
        q, args = q + " AND username = ?", (*args, owner)
    if conn.execute(q, args).rowcount == 0:
        raise AccountError(f"no active token {token_id}")


def list_tokens(conn: sql.Connection, name: str | None = None) -> list[dict[str, Any]]:
    q = ("SELECT id, username, label, stores, created_at, expires_at, revoked_at"
         " FROM api_tokens")
    rows = conn.execute(q + (" WHERE username = ? ORDER BY id" if name else " ORDER BY id"),
                        (name,) if name else ())
    return [{"id": r["id"], "user": r["username"], "label": r["label"],
             "stores": json.loads(r["stores"]), "created_at": r["created_at"],
             "expires_at": r["expires_at"], "revoked_at": r["revoked_at"]} for r in rows]


# ---------------------------------------------------------------- audit trail


def audit(conn: sql.Connection, who: Principal | str, action: str, store: str, target: str,
          now: float, via: str = "", detail: dict[str, Any] | None = None) -> None:
    """One audit row (inside the caller's transaction when the change has one)."""
    assert action in AUDITED, action
    actor, role = (who.name, who.role) if isinstance(who, Principal) else (who, "")
    if isinstance(who, Principal):
        via = f"{who.via} {via}".strip()
    conn.execute(
        "INSERT INTO audit_log (at, actor, role, action, store, target, detail, via)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (now, actor, role, action, store, target,
         json.dumps(detail or {}, separators=(",", ":"), ensure_ascii=False), via))


def audit_rows(conn: sql.Connection, *, store: str | None = None, stores: set[str] | None = None,
               limit: int = 100) -> list[dict[str, Any]]:
    """Newest first; `store` for one store, `stores` to keep only those (None: all)."""
    q = "SELECT id, at, actor, role, action, store, target, detail, via FROM audit_log"
    args: tuple[Any, ...] = ()
    if store is not None:
        q, args = q + " WHERE store = ?", (store,)
    rows = conn.execute(q + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
    return [dict(r) | {"detail": json.loads(r["detail"])} for r in rows
            if stores is None or r["store"] in stores]


# ---------------------------------------------------------------- acknowledgement links


def use_ack_link(conn: sql.Connection, token: str, store: str, alert_id: str,
                 now: float) -> bool:
    """Mark a link as used (inside the ack's transaction); False if it was used before."""
    cur = conn.execute("INSERT INTO ack_links_used (digest, store, alert_id, used_at)"
                       " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                       (digest(token), store, alert_id, now))
    return cur.rowcount == 1


def ack_link_used(conn: sql.Connection, token: str) -> bool:
    return conn.execute("SELECT 1 FROM ack_links_used WHERE digest = ?",
                        (digest(token),)).fetchone() is not None
