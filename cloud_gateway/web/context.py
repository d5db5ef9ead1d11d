"""`Api`: what the routes need from the process (database, worker, signer, keys) and the
one bearer-token check every write goes through.

Writes need `Authorization: Bearer <token>` (the `[commands] api_token_file`): issuing a
command, putting a store's catalogue, creating or cancelling an order, acknowledging an
alert. Reads stay open, like the dashboard; they never show a pickup code (only the order's
creator gets it).
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

from xiaodian.pki import PkiError, load_pickup_key
from xiaodian.wire.pickup import PickupCodec

from .. import retail as retail_store
from .. import sql
from ..alerts import web as alert_web
from ..commands import Commander
from ..db import Database
from ..downlink import DownlinkSender
from .core import HttpError, error

log = logging.getLogger(__name__)

CHALLENGE = (("WWW-Authenticate", 'Bearer realm="xiaodian"'),)


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
    ) -> None:
        if commander is not None and not api_token:
            raise ValueError("api_token: required when commands can be issued")
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
        # Alerts (cloud_gateway/alerts/web.py): list, ack by bearer token or by signed link.
        self.alert_web = alert_web.AlertWeb(db_path, link_secret=alert_link_secret,
                                            authorise=self._authorise_alerts)

    def read(self) -> Database:
        return Database.open_readonly(self.db_path)

    def authorise(self, authorization: str | None) -> None:
        """Return if `authorization` carries the API token; raise the refusal if not:
        503 without a configured token, 401 without a well-formed one, 403 if wrong."""
        if self._token_digest is None:
            raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE,
                            "no API token configured ([commands] api_token_file)")
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        # A configured token is printable ASCII (commands.load_api_token): anything else is
        # not a token at all, and answering it must not depend on how it would encode.
        if scheme.lower() != "bearer" or not token or not (token.isascii()
                                                           and token.isprintable()):
            raise HttpError(HTTPStatus.UNAUTHORIZED, "Authorization: Bearer <token> required",
                            CHALLENGE)
        given = hashlib.sha256(token.encode("ascii")).digest()
        if not hmac.compare_digest(given, self._token_digest):
            raise HttpError(HTTPStatus.FORBIDDEN, "wrong token")

    def _authorise_alerts(self, authorization: str | None) -> alert_web.WebResult | None:
        try:
            self.authorise(authorization)
        except HttpError as exc:
            r = error(exc.status, exc.message, exc.headers)
            return alert_web.WebResult(r.status, r.body, r.content_type, r.headers)
        return None

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
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    "pickup orders need pickup codes: no [pickup] keys_dir configured")
            return None
        path = self.pickup_keys_dir / f"{store}.key"
        try:
            key = load_pickup_key(path)
        except FileNotFoundError:
            if required:
                raise retail_store.RetailError(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    f"no pickup key for {store} (xiaodian pki pickup-key {store})") from None
            return None
        except (OSError, PkiError) as exc:
            log.error("pickup key of %s unusable: %s", store, exc)  # names the file only
            raise retail_store.RetailError(HTTPStatus.SERVICE_UNAVAILABLE,
                                           f"pickup key of {store} unusable") from None
        return PickupCodec(store, key, key_id=self.pickup_key_id)
