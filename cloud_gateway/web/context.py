"""`Api`: what the routes need from the process (database, worker, signer, keys) and the
one check every route goes through, `authorise()`: who is calling, and may they do this on
this store.

A caller is a person (cloud_gateway/accounts.py): logged in through /login (a session cookie)
or sending `Authorization: Bearer <token>` (a personal API token). Reads of a store need a
role covering that store; writes need the role's permission (docs/security.md). The
`[commands] api_token_file` token, if configured, still works as an operator credential
("service-token") for automation that predates accounts; prefer personal tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Any

from starlette.datastructures import Headers

from xiaodian.pki import PkiError, load_pickup_key
from xiaodian.wire.pickup import PickupCodec

from .. import accounts, shop, sql
from .. import retail as retail_store
from ..accounts import Principal
from ..commands import Commander
from ..db import Database
from ..downlink import DownlinkSender
from . import alert_routes as alert_web
from .core import HttpError

log = logging.getLogger(__name__)

CHALLENGE = (("WWW-Authenticate", 'Bearer realm="xiaodian"'),)
SESSION_COOKIE = "xd_session"
SERVICE = Principal("service-token", "operator", frozenset(), "service-token")


class Api:
    def __init__(
        self,
        db_path: Path | str,
        ingest_status: Callable[[], Mapping[str, Any]] | None = None,
        *,
        commander: Commander | None = None,
        api_token: bytes | None = None,
        alert_link_secret: bytes | None = None,
        downlink: DownlinkSender | None = None,
        pickup_keys_dir: Path | None = None,
        pickup_key_id: int = 0,
        now: Callable[[], float] = time.time,
        residents: shop.Services | None = None,
    ) -> None:
        self.db_path = db_path
        self.ingest_status = ingest_status
        self.commander = commander
        # Orders and catalogues: sent right after the commit (and retried by its thread).
        self.downlink = downlink
        self.pickup_keys_dir = pickup_keys_dir
        self.pickup_key_id = pickup_key_id
        self.now = now
        # Compared as digests: equal length, so compare_digest leaks nothing, not even that.
        self._token_digest = hashlib.sha256(api_token).digest() if api_token else None
        # Alerts (cloud_gateway/web/alert_routes.py): list, ack by bearer token or by signed link.
        self.login_throttle = accounts.LoginThrottle()
        self.alert_web = alert_web.AlertWeb(db_path, link_secret=alert_link_secret, now=now)
        # The resident pages (web/residents.py): code sender, payment, next delivery wave.
        self.residents = residents or shop.Services()

    def write(self) -> Database:
        return Database.open(self.db_path)

    def read(self) -> Database:
        return Database.open_readonly(self.db_path)

    def authenticate(self, headers: Headers) -> Principal:
        """Who sent the request: 401 without credentials, 403 for a bearer token that is
        wrong, revoked or expired (as before accounts), 401 for a stale session cookie."""
        authorization = headers.get("Authorization")
        if authorization is not None:
            return self._bearer(authorization)
        session = cookie_value(headers.get("Cookie") or "", SESSION_COOKIE)
        if session:
            with self.read() as db:
                who = accounts.session_principal(db.conn, session, self.now())
            if who is not None:
                return who
            raise HttpError(HTTPStatus.UNAUTHORIZED, "session expired: log in again (/login)",
                            CHALLENGE)
        raise HttpError(HTTPStatus.UNAUTHORIZED,
                        "log in (/login) or send Authorization: Bearer <token>", CHALLENGE)

    def authorise(self, headers: Headers, permission: str,
                  store: str | None = None) -> Principal:
        """The caller, if their role may do `permission` (on `store`); else 401 or 403."""
        who = self.authenticate(headers)
        if not who.may(permission, store):
            where = f" on {store}" if store is not None else ""
            raise HttpError(HTTPStatus.FORBIDDEN,
                            f"{who.name} ({who.role}) may not {permission}{where}")
        return who

    def _bearer(self, authorization: str) -> Principal:
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        # A token is printable ASCII: anything else is not a token at all, and answering it
        # must not depend on how it would encode.
        if scheme.lower() != "bearer" or not token or not (token.isascii()
                                                           and token.isprintable()):
            raise HttpError(HTTPStatus.UNAUTHORIZED, "Authorization: Bearer <token> required",
                            CHALLENGE)
        if self._token_digest is not None:
            # Compared as digests: equal length, so compare_digest leaks nothing.
            given = hashlib.sha256(token.encode("ascii")).digest()
            if hmac.compare_digest(given, self._token_digest):
                return SERVICE
        with self.read() as db:
            who = accounts.token_principal(db.conn, token, self.now())
        if who is None:
            raise HttpError(HTTPStatus.FORBIDDEN, "wrong token")  # unknown, revoked or expired
        return who

    def send_downlink(self) -> None:
        # At once, so the caller learns whether the broker took it (published_at); if not,
        # the sender's own thread keeps trying.
        if self.downlink is not None:
            try:
                self.downlink.send_pending()
            except sql.ERRORS as exc:
                log.warning("downlink: %s (retried later)", exc)

    def pickup_codec(self, store: str, *, required: bool) -> PickupCodec | None:
        """The store's pickup-code issuer, or None (delivery orders without a key)."""
        if self.pickup_keys_dir is None:
            if required:
                raise retail_store.RetailError(
                    retail_store.Refusal.UNAVAILABLE,
                    "pickup orders need pickup codes: no [pickup] keys_dir configured")
            return None
        path = self.pickup_keys_dir / f"{store}.key"
        try:
            key = load_pickup_key(path)
        except FileNotFoundError:
            if required:
                raise retail_store.RetailError(
                    retail_store.Refusal.UNAVAILABLE,
                    f"no pickup key for {store} (xiaodian pki pickup-key {store})") from None
            return None
        except (OSError, PkiError) as exc:
            log.error("pickup key of %s unusable: %s", store, exc)  # names the file only
            raise retail_store.RetailError(retail_store.Refusal.UNAVAILABLE,
                                           f"pickup key of {store} unusable") from None
        return PickupCodec(store, key, key_id=self.pickup_key_id)


def cookie_value(header: str, name: str) -> str:
    """One cookie's value from a Cookie header ("" if absent)."""
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value.strip()
    return ""
