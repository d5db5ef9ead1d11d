"""A resident's light identity: a phone number proven by a one-time code, and a session.

Residents are not staff: they have no account, role or password (cloud_gateway/accounts.py
stays as it is), and a resident session opens only the resident pages and only that
resident's orders. The code goes out through a `CodeSender` (the present one writes it to the
server's log, which is where the demo shows it; an SMS gateway or Apprise channel plugs in
here). A WeChat login would replace all of this: the official account's OAuth gives an
`openid` per resident, which would take the phone number's place as the resident's key.

Limits, counted in the database so that every worker sees them: `CODES_PER_PHONE` codes per
number in `PHONE_WINDOW_S`, `CODES_PER_CLIENT` per address in `CLIENT_WINDOW_S`; a code lives
`CODE_TTL_S`, is used once, and dies after `MAX_ATTEMPTS` wrong tries. Only digests of codes
and session ids are stored.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Protocol

from xiaodian.i18n import N_, Message

from . import sql
from .errors import CloudError

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS residents (
    id INTEGER PRIMARY KEY,
    phone TEXT NOT NULL UNIQUE,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS resident_codes (
    id INTEGER PRIMARY KEY,
    phone TEXT NOT NULL,
    client TEXT NOT NULL,
    salt TEXT NOT NULL,
    digest TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL,
    used_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS resident_codes_by_phone ON resident_codes (phone, created_at);
CREATE INDEX IF NOT EXISTS resident_codes_by_client ON resident_codes (client, created_at);
CREATE INDEX IF NOT EXISTS resident_codes_by_age ON resident_codes (created_at);
CREATE TABLE IF NOT EXISTS resident_sessions (
    digest TEXT PRIMARY KEY,
    resident BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS resident_sessions_by_expiry ON resident_sessions (expires_at);
"""
TABLES = ("residents", "resident_codes", "resident_sessions")
PHONE = re.compile(r"1[3-9][0-9]{9}\Z")  # a mainland mobile number, ASCII digits
CODE_TTL_S = 300
MAX_ATTEMPTS = 5
CODES_PER_PHONE, PHONE_WINDOW_S = 3, 600
CODES_PER_CLIENT, CLIENT_WINDOW_S = 10, 3600
SESSION_TTL_S = 30 * 86400
# A code row is needed while it can be used or counts against a rate limit, no longer.
CODE_KEEP_S = max(CODE_TTL_S, PHONE_WINDOW_S, CLIENT_WINDOW_S)


class ResidentError(CloudError):
    def __init__(self, why: Message, *, throttled: bool = False) -> None:
        super().__init__(str(why))
        self.why = why
        self.throttled = throttled


class CodeSender(Protocol):
    def send(self, phone: str, code: str) -> None: ...


class LogSender:
    """Writes the code to the server log: the demo's stand-in for an SMS."""

    def send(self, phone: str, code: str) -> None:
        log.warning("resident one-time code for %s: %s", phone, code)


@dataclass(frozen=True)
class Resident:
    id: int
    phone: str

    @property
    def masked(self) -> str:
        """What a clerk sees: the last four digits only."""
        return "****" + self.phone[-4:]


def check_phone(phone: str) -> str:
    phone = phone.strip().replace(" ", "").replace("-", "")
    if not PHONE.match(phone):
        raise ResidentError(Message(N_("Enter an 11-digit mobile number."), {}))
    return phone


def _digest(salt: str, value: str) -> str:
    return hashlib.sha256(f"{salt}:{value}".encode()).hexdigest()


def request_code(conn: sql.Connection, phone: str, client: str, now: float,
                 sender: CodeSender) -> None:
    """Make and send a code for `phone`, unless the number or the address asked too often."""
    phone = check_phone(phone)
    per_phone = conn.execute("SELECT COUNT(*) FROM resident_codes WHERE phone = ? AND"
                             " created_at > ?", (phone, now - PHONE_WINDOW_S)).fetchone()[0]
    per_client = conn.execute("SELECT COUNT(*) FROM resident_codes WHERE client = ? AND"
                              " created_at > ?", (client, now - CLIENT_WINDOW_S)).fetchone()[0]
    if int(per_phone) >= CODES_PER_PHONE or int(per_client) >= CODES_PER_CLIENT:
        raise ResidentError(Message(N_("Too many codes asked for: wait a few minutes and try"
                                       " again."), {}), throttled=True)
    code = f"{secrets.randbelow(1_000_000):06d}"
    salt = secrets.token_hex(8)
    # A new code ends the older ones: only the latest can be used.
    conn.execute("UPDATE resident_codes SET used_at = ? WHERE phone = ? AND used_at IS NULL",
                 (now, phone))
    conn.execute("INSERT INTO resident_codes (phone, client, salt, digest, created_at,"
                 " expires_at, attempts) VALUES (?, ?, ?, ?, ?, ?, 0)",
                 (phone, client[:64], salt, _digest(salt, code), now, now + CODE_TTL_S))
    sender.send(phone, code)


WRONG_CODE = Message(N_("Wrong or expired code: ask for a new one."), {})


def verify(conn: sql.Connection, phone: str, code: str,
           now: float) -> tuple[str, Resident] | None:
    """A new session id for the number whose latest code this is; None for a wrong code.

    Each wrong try counts against the code (None, not an exception: the caller commits the
    count); a used, expired or worn-out code opens nothing.
    """
    try:
        phone = check_phone(phone)
    except ResidentError:
        return None
    row = conn.execute("SELECT id, salt, digest, attempts FROM resident_codes WHERE phone = ?"
                       " AND used_at IS NULL AND expires_at > ? ORDER BY id DESC LIMIT 1",
                       (phone, now)).fetchone()
    if row is None or int(row[3]) >= MAX_ATTEMPTS:
        return None
    code = code.strip()
    if not (code.isascii() and code.isdigit() and len(code) == 6) or not hmac.compare_digest(
            _digest(str(row[1]), code), str(row[2])):
        conn.execute("UPDATE resident_codes SET attempts = attempts + 1 WHERE id = ?", (row[0],))
        return None
    conn.execute("UPDATE resident_codes SET used_at = ? WHERE id = ?", (now, row[0]))
    conn.execute("INSERT INTO residents (phone, created_at) VALUES (?, ?)"
                 " ON CONFLICT (phone) DO NOTHING", (phone, now))
    rid = int(conn.execute("SELECT id FROM residents WHERE phone = ?", (phone,)).fetchone()[0])
    session = secrets.token_urlsafe(32)
    conn.execute("INSERT INTO resident_sessions (digest, resident, created_at, expires_at)"
                 " VALUES (?, ?, ?, ?)", (_digest("", session), rid, now, now + SESSION_TTL_S))
    return session, Resident(rid, phone)


def session_resident(conn: sql.Connection, session: str, now: float) -> Resident | None:
    if not session or len(session) > 100:
        return None
    row = conn.execute("SELECT r.id, r.phone FROM resident_sessions s JOIN residents r"
                       " ON r.id = s.resident WHERE s.digest = ? AND s.expires_at > ?",
                       (_digest("", session), now)).fetchone()
    return None if row is None else Resident(int(row[0]), str(row[1]))


def end_session(conn: sql.Connection, session: str) -> None:
    conn.execute("DELETE FROM resident_sessions WHERE digest = ?", (_digest("", session),))


def purge(conn: sql.Connection, now: float) -> dict[str, int]:
    """Delete what the resident app no longer needs (docs/privacy.md), in the caller's
    transaction: code rows older than every rate window and their lifetime, sessions past
    their expiry, and residents with neither an order nor a live session (a new login
    makes them again). Returns how many rows of each went."""
    codes = conn.execute("DELETE FROM resident_codes WHERE created_at <= ?",
                         (now - CODE_KEEP_S,)).rowcount
    sessions = conn.execute("DELETE FROM resident_sessions WHERE expires_at <= ?",
                            (now,)).rowcount
    people = conn.execute(
        "DELETE FROM residents WHERE NOT EXISTS (SELECT 1 FROM resident_orders o WHERE"
        " o.resident = residents.id) AND NOT EXISTS (SELECT 1 FROM resident_sessions s"
        " WHERE s.resident = residents.id)").rowcount
    return {"codes": int(codes), "sessions": int(sessions), "residents": int(people)}
