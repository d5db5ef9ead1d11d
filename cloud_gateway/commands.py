"""The cloud side of signed commands: issue, publish, collect the stores' answers, expire.

Format and signing are `xiaodian/wire/commands.py`; this module adds the record of what was
asked and what came of it (`commands` table, one row per command id):

    issue: sign -> INSERT state=sent -> PUBLISH QoS 1 -> published_at once the broker PUBACKs
    answer on xd/v1/{store}/cmd/res, matched by Correlation Data -> answered | refused
    nothing by expires_at + grace -> expired (a late answer still replaces `expired`)
    never handed to the broker -> unsent

The row is committed before the PUBLISH, so an answer can never arrive for a command the
database does not know yet. Answers are taken by the ingest worker (its shared
subscription, acked after the commit like telemetry); `record_result` is what it calls.

Publishing uses its own small client (`CommandPublisher`, client id `<worker_id>-cmd`),
not the ingest worker's connection:
- `xiaodian cloud command` issues from a process that has no ingest worker;
- the issuer learns from the PUBACK, synchronously, whether the broker took the command,
  and can say so to the HTTP caller (202 vs 503) instead of queueing blindly;
- the ingest connection reconnects on purpose (queue-full resyncs) and shares its
  in-flight window with receipts; commands are not held up by either;
- no session is needed: a command not delivered by its expiry is worthless anyway, and a
  resend after a reconnect is harmless (the store remembers executed ids).
Paho's `publish()` is safe to call from other threads while `loop_start()`'s thread owns
the socket (it queues the packet and wakes that thread), so the HTTP threads call it.
`CommandPublisher` lives in `cloud_gateway.command_publisher` and is re-exported here.
"""

from __future__ import annotations

import json
import logging
import re
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from xiaodian.mqtt import command_publish
from xiaodian.pki.keys import load_command_private_key
from xiaodian.pki.names import PkiError
from xiaodian.wire import ids, jsonio
from xiaodian.wire.commands import (
    ACTIONS,
    MAX_RESULT_BYTES,
    Scalar,
    SignedCommand,
    key_id_for,
    sign_command,
)

from .command_publisher import NO_SUBSCRIBERS, Publisher

# Re-exported (`as`): the publisher moved to cloud_gateway/command_publisher.py.
from .command_publisher import CommandPublisher as CommandPublisher
from .command_publisher import PublishResult as PublishResult
from .config import CommandSettings
from .db import Database
from .errors import CloudError

log = logging.getLogger(__name__)

# Why a command the broker took never reached a store (see NO_SUBSCRIBERS).
NO_TERMINAL = ("no terminal of this store takes commands: its edge config has no [commands]"
               " table (or its agent has never connected); `xiaodian doctor` on the terminal"
               " says which")
STATES = ("sent", "answered", "refused", "expired", "unsent")
FINAL_STATES = ("answered", "refused")  # the store has spoken: a later copy changes nothing
MIN_TOKEN_CHARS = 32
MAX_REASON_CHARS = 64
MAX_DETAIL_CHARS = 512
_RESULT_TOPIC_RE = re.compile(rf"xd/v1/({ids.STORE_ID.pattern})/cmd/res")
_TOKEN_RE = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces: fits a header as is


class CommandSetupError(CloudError):
    """A signing key or token file that must not be used; the message names the file."""


class ResultError(CloudError, ValueError):
    """An answer on cmd/res that cannot be recorded (it is parked with this reason)."""


# ---------------------------------------------------------------- secrets


@dataclass(frozen=True)
class Signer:
    key: Ed25519PrivateKey
    key_id: str


def check_private_file(path: Path) -> None:
    """Refuse a secret that other users can read (or replace): name the file and the fix."""
    try:
        st = path.stat()
    except OSError as exc:
        raise CommandSetupError(f"{path}: cannot read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CommandSetupError(f"{path}: not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise CommandSetupError(
            f"{path}: mode {mode:04o} lets group/others read it; run: chmod 600 {path}"
        )


def load_signer(settings: CommandSettings) -> Signer:
    if settings.signing_key is None:
        raise CommandSetupError("commands: no signing_key configured")
    path = settings.signing_key
    check_private_file(path)
    try:
        key = load_command_private_key(path)
    except (PkiError, ValueError, TypeError) as exc:
        # ValueError/TypeError: not PEM, or encrypted. Never echo the file's content.
        raise CommandSetupError(f"{path}: not an unencrypted Ed25519 private key PEM"
                                f" ({exc.__class__.__name__})") from None
    actual = key_id_for(key.public_key())
    if actual != settings.key_id:
        # Stores look the public key up by this id: a mismatch means every command is
        # refused as unknown_key, so fail at start-up instead.
        raise CommandSetupError(
            f"{path}: key_id {settings.key_id!r} in the config, but this key's id is {actual!r}"
        )
    return Signer(key, actual)


def load_api_token(path: Path) -> bytes:
    check_private_file(path)
    try:
        text = path.read_bytes().decode("ascii").strip()
    except UnicodeDecodeError:
        raise CommandSetupError(f"{path}: the token must be printable ASCII") from None
    if not _TOKEN_RE.fullmatch(text) or len(text) < MIN_TOKEN_CHARS:
        raise CommandSetupError(
            f"{path}: the token must be one word of at least {MIN_TOKEN_CHARS} printable"
            " ASCII characters (e.g. from `openssl rand -base64 32`)"
        )
    return text.encode()


# ---------------------------------------------------------------- issuing


class Commander:
    """Issues commands: sign, record, publish. Thread-safe (a database connection per call)."""

    def __init__(self, signer: Signer, db_path: Path | str, publisher: Publisher, *,
                 lifetime_s: int, publish_timeout_s: float,
                 now: Callable[[], float] = time.time) -> None:
        self.signer = signer
        self.db_path = db_path
        self.publisher = publisher
        self.lifetime_s = lifetime_s
        self.publish_timeout_s = publish_timeout_s
        self._now = now

    def issue(self, store: str, action: str, params: Mapping[str, Scalar],
              now: float | None = None, *, issued_by: str = "") -> str:
        """Sign, record and publish a command; its id. xiaodian.wire.commands.CommandError if a
        store would refuse it (unknown action, bad parameters or store id); sql.ERRORS
        if it cannot be recorded (then nothing was published)."""
        at = self._now() if now is None else now
        signed = sign_command(self.signer.key, self.signer.key_id, target=store, action=action,
                              params=params, issued_at=int(at), lifetime_s=self.lifetime_s)
        pub = command_publish(signed, at)
        with Database.open(self.db_path) as db:
            insert_command(db, signed, issued_by)
            result = self.publisher.publish(pub, self.publish_timeout_s)
            cid = signed.command.command_id
            if result.status == "acked" and result.detail == NO_SUBSCRIBERS:
                # Nobody subscribes to the store's command topic: nobody ever will get it.
                mark_unsent(db, cid, NO_TERMINAL)
                log.warning("command %s to %s: %s", cid, store, NO_TERMINAL)
            elif result.status == "acked":
                mark_published(db, cid, self._now())
            elif result.status in ("not_sent", "refused"):
                mark_unsent(db, cid, result.detail)
                log.warning("command %s to %s not sent: %s", cid, store, result.detail)
            else:  # still `sent`: it may reach the store; the sweep settles it otherwise
                log.warning("command %s to %s: %s", cid, store, result.detail)
        log.info("command %s issued to %s: %s by %s (%s)", cid, store, action, issued_by or "?",
                 result.status)
        return cid


def insert_command(db: Database, signed: SignedCommand, issued_by: str) -> None:
    c = signed.command
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO commands (id, store, action, params, key_id, issued_at, expires_at,"
            " issued_by, wire, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'sent')",
            (c.command_id, c.target, c.action, json.dumps(dict(c.params), sort_keys=True),
             c.key_id, c.issued_at, c.expires_at, issued_by, signed.wire))


def mark_published(db: Database, command_id: str, at: float) -> None:
    with db.transaction() as conn:
        conn.execute("UPDATE commands SET published_at = ? WHERE id = ?", (at, command_id))


def mark_unsent(db: Database, command_id: str, reason: str) -> None:
    with db.transaction() as conn:
        # Only if nothing came back meanwhile (a refused PUBACK cannot race an answer, but
        # an answer is the better evidence whenever there is one).
        conn.execute("UPDATE commands SET state = 'unsent', reason = ? WHERE id = ?"
                     " AND state = 'sent'", (reason[:MAX_DETAIL_CHARS], command_id))


# ---------------------------------------------------------------- answers


@dataclass(frozen=True)
class StoreAnswer:
    command_id: str
    store: str  # from the topic: the broker's ACL vouches for it
    status: Literal["answered", "refused"]
    reason: str | None  # the store's refusal code (xiaodian.wire.commands.Reason)
    body: str  # the answer's JSON text, as received


def parse_answer(topic: str, payload: bytes, correlation: bytes | None) -> StoreAnswer:
    """Check one message from cmd/res; ResultError (with the reason to park it) if bad.

    The shapes are the store's (`xiaodian.wire.commands.refusal_payload` for refusals): a JSON
    object; `"status": "refused"` with a `reason` code means refused, anything else is the
    result of a command that ran. An `id` in the body, when present, must match.
    """
    m = _RESULT_TOPIC_RE.fullmatch(topic)
    if m is None:
        raise ResultError(f"not a command result topic: {topic!r}")
    if correlation is None:
        raise ResultError("command result without Correlation Data")
    try:
        command_id = correlation.decode("ascii")
    except UnicodeDecodeError:
        command_id = ""
    if not ids.is_command_id(command_id):
        raise ResultError(f"Correlation Data {correlation[:80]!r} is not a command id")
    if len(payload) > MAX_RESULT_BYTES:
        raise ResultError(f"command result of {len(payload)} bytes exceeds {MAX_RESULT_BYTES}")
    try:
        body = jsonio.decode(payload, dict[str, Any], root="command result")
    except jsonio.JsonError as exc:
        if exc.reason == "invalid":
            raise ResultError("command result is not a JSON object") from None
        raise ResultError(f"command result is not UTF-8 JSON ({exc.reason})") from None
    if body.get("id") is not None and body.get("id") != command_id:
        raise ResultError(f"command result id {str(body.get('id'))[:80]!r} differs from its"
                          f" Correlation Data {command_id!r}")
    if body.get("status") == "refused":
        reason = body.get("reason")
        if not isinstance(reason, str) or not 0 < len(reason) <= MAX_REASON_CHARS:
            raise ResultError("refusal without a reason code")
        return StoreAnswer(command_id, m.group(1), "refused", reason, payload.decode("utf-8"))
    return StoreAnswer(command_id, m.group(1), "answered", None, payload.decode("utf-8"))


@dataclass(frozen=True)
class AnswerOutcome:
    action: Literal["answered", "refused", "duplicate", "parked"]
    command_id: str = ""
    reason: str = ""


def record_result(db: Database, topic: str, payload: bytes, correlation: bytes | None,
                  worker: str, received_at: float) -> AnswerOutcome:
    """Store one answer from cmd/res in one transaction, or park it with the reason."""
    try:
        answer = parse_answer(topic, payload, correlation)
    except ResultError as exc:
        db.park(topic, payload, str(exc), worker, received_at)
        return AnswerOutcome("parked", reason=str(exc))
    problem = ""
    with db.transaction() as conn:
        row = conn.execute("SELECT store, state FROM commands WHERE id = ?",
                           (answer.command_id,)).fetchone()
        if row is None:
            problem = f"command result for unknown command id {answer.command_id!r}"
        elif row["store"] != answer.store:
            # The ACL lets a store write only its own cmd/res: this store answers for a
            # command it was never sent. Never let it settle another store's command.
            problem = (f"command {answer.command_id} was for {row['store']}, answered on"
                       f" {answer.store}'s topic")
        elif row["state"] in FINAL_STATES:
            # A redelivery, or the store answering a replay: the first answer stands.
            return AnswerOutcome("duplicate", answer.command_id)
        else:
            # From sent, and also from expired/unsent: a late answer is what really happened.
            conn.execute(
                "UPDATE commands SET state = ?, result = ?, reason = ?, answered_at = ?,"
                " answered_by = ? WHERE id = ?",
                (answer.status, answer.body, answer.reason, received_at, worker,
                 answer.command_id))
            return AnswerOutcome(answer.status, answer.command_id, answer.reason or "")
    db.park(topic, payload, problem, worker, received_at)
    return AnswerOutcome("parked", answer.command_id, problem)


def expire_overdue(db: Database, now: float, grace_s: float) -> int:
    """Mark commands still unanswered at expires_at + grace as expired; how many."""
    with db.transaction() as conn:
        cur = conn.execute(
            "UPDATE commands SET state = 'expired', reason = 'no answer before expiry'"
            " WHERE state = 'sent' AND expires_at + ? < ?", (grace_s, now))
        return cur.rowcount


# ---------------------------------------------------------------- reading

COMMAND_FIELDS = ("id", "store", "action", "params", "key_id", "issued_at", "expires_at",
                  "issued_by", "state", "published_at", "result", "reason", "answered_at",
                  "answered_by")


def get_command(db: Database, command_id: str) -> dict[str, Any] | None:
    row = db.conn.execute(f"SELECT {', '.join(COMMAND_FIELDS)} FROM commands WHERE id = ?",
                          (command_id,)).fetchone()
    return None if row is None else _command_dict(row)


def list_commands(db: Database, store: str, *, state: str | None = None,
                  limit: int = 100) -> list[dict[str, Any]]:
    """A store's commands, newest first."""
    sql = f"SELECT {', '.join(COMMAND_FIELDS)} FROM commands WHERE store = ?"
    params: list[Any] = [store]
    if state is not None:
        sql += " AND state = ?"
        params.append(state)
    # Same-second commands newest first by insertion order: SQLite's rowid; PostgreSQL has
    # none, its schema adds an identity column for this (db.schema.PG_EXTRA_DDL).
    order = "issue_order" if db.postgres else "rowid"
    sql += f" ORDER BY issued_at DESC, {order} DESC LIMIT ?"
    params.append(limit)
    return [_command_dict(r) for r in db.conn.execute(sql, params)]


def _command_dict(row: Any) -> dict[str, Any]:
    d = {k: row[k] for k in COMMAND_FIELDS}
    d["params"] = json.loads(d["params"])
    d["result"] = None if d["result"] is None else json.loads(d["result"])
    return d


def wait_settled(db_path: Path | str, command_id: str, timeout: float, *,
                 poll_s: float = 0.2) -> dict[str, Any] | None:
    """Poll until the command leaves `sent` (or the timeout); its row, None if unknown."""
    deadline = time.monotonic() + timeout
    with Database.open_readonly(db_path) as db:
        while True:
            cmd = get_command(db, command_id)
            if cmd is None or cmd["state"] != "sent" or time.monotonic() >= deadline:
                return cmd
            time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))


def default_publisher_id(worker_id: str) -> str:
    return f"{worker_id}-cmd"


def downlink_publisher_id(worker_id: str) -> str:
    return f"{worker_id}-down"


def cli_publisher_id(worker_id: str) -> str:
    # Its own id (and certificate, <worker_id>-cli.crt): the broker makes the client id the
    # certificate's CN, and taking `<worker_id>-cmd` would cut off a running worker's
    # publisher. Two CLI commands at once for the same worker would take turns cutting
    # each other off: run them one after the other.
    return f"{worker_id}-cli"


def parse_cli_params(action: str, pairs: list[str]) -> dict[str, Scalar]:
    """`KEY=VALUE` words typed by the action's definition (`minutes=20` is an int there, so
    a device named `7` stays a string); ValueError naming the word otherwise."""
    spec = ACTIONS.get(action)
    if spec is None:
        raise ValueError(f"unknown action {action!r} (known: {', '.join(ACTIONS)})")
    out: dict[str, Scalar] = {}
    for word in pairs:
        name, sep, raw = word.partition("=")
        if not sep or not name:
            raise ValueError(f"{word!r}: expected KEY=VALUE")
        if name in out:
            raise ValueError(f"{name}: given twice")
        p = spec.get(name)
        if p is None:
            raise ValueError(f"{name}: not a parameter of {action} (known: {', '.join(spec)})")
        if p.kind is bool:
            if raw not in ("true", "false"):
                raise ValueError(f"{name}: expected true or false, got {raw!r}")
            out[name] = raw == "true"
        elif p.kind is int:
            if not re.fullmatch(r"-?[0-9]+", raw):
                raise ValueError(f"{name}: expected a whole number, got {raw!r}")
            out[name] = int(raw)
        else:
            out[name] = raw
    return out
