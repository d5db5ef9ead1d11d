"""HTTP API and dashboard: JSON over the standard library's threading HTTP server.

`Api.handle()` (GET) and `Api.handle_post()` are the whole behaviour (route, authorise,
validate, query, render) and return a `Response`; the request handler around them only does
the socket work and the limits. Each request opens its own database connection: WAL lets it
read while a worker commits, and the ThreadingHTTPServer runs every request on a fresh
thread anyway.

Writes need `Authorization: Bearer <token>` (the `[commands] api_token_file`): issuing a
command, putting a store's catalogue, creating or cancelling an order. Reads stay open, like
the dashboard; they never show a pickup code (only the order's creator gets it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from xiaodian.pki import PkiError, load_pickup_key
from xiaodian.wire.commands import ACTIONS, CommandError
from xiaodian.wire.payloads import EVENT_TYPES, ID_PATTERN
from xiaodian.wire.pickup import PickupCodec

from . import commands, haccp, sql
from . import retail as retail_store
from .alerts import web as alert_web
from .commands import Commander
from .db import Database, DeadLetter
from .downlink import DownlinkSender

log = logging.getLogger(__name__)

MAX_TARGET_BYTES = 2048  # longest request target (path + query) we accept
MAX_QUERY_FIELDS = 8
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
DEAD_LETTER_PREVIEW = 2000  # characters of a parked payload shown by the API
REQUEST_TIMEOUT_S = 10.0  # a client that stalls mid-request loses its connection
# A command request is {"action", "params"} with at most 16 short scalars: 4 KiB is ample.
MAX_BODY_BYTES = 4096
# An order of 100 lines is ~5 KiB; a catalogue message is at most 256 KiB (retail.py).
MAX_ORDER_BODY_BYTES = 64 * 1024
# ASCII digits only (str.isdigit also takes "²" and other digits int() refuses), and short
# enough for a BIGINT: a bad id, limit or length is a 4xx, never a 500.
DIGITS = re.compile(r"[0-9]{1,18}\Z")
MAX_CATALOGUE_BODY_BYTES = 1024 * 1024  # the message itself is capped at 256 KiB compact
DEFAULT_COMMAND_LIMIT = 100

# The dashboard is self-contained: inline script and style, data only from this origin.
DASHBOARD_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                 "connect-src 'self'; img-src 'self' data:")


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


class BadRequest(Exception):
    pass


def json_response(status: int, obj: Any) -> Response:
    return Response(status, json.dumps(obj, separators=(",", ":")).encode() + b"\n")


def error(status: HTTPStatus, message: str,
          headers: tuple[tuple[str, str], ...] = ()) -> Response:
    body = json.dumps({"error": message, "status": int(status)}, separators=(",", ":"))
    return Response(status, body.encode() + b"\n", headers=headers)


def owner_html() -> bytes:
    return resources.files("cloud_gateway").joinpath("static/owner.html").read_bytes()


def dashboard_html() -> bytes:
    return resources.files("cloud_gateway").joinpath("static/dashboard.html").read_bytes()


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
        self._now = now
        # Compared as digests: equal length, so compare_digest leaks nothing, not even that.
        self._token_digest = hashlib.sha256(api_token).digest() if api_token else None
        # Alerts (cloud_gateway/alerts/web.py): list, ack by bearer token or by signed link.
        self.alert_web = alert_web.AlertWeb(db_path, link_secret=alert_link_secret,
                                            authorise=self._authorise_alerts)

    def handle(self, target: str) -> Response:
        """Answer a GET for `target` (path and query string)."""
        if alert_web.accepts_get(target):
            return _from_web(self.alert_web.get(target))
        parts = urlsplit(target)
        segments = [unquote(s) for s in parts.path.split("/")[1:]]
        try:
            query = _query(parts.query)
            if segments in ([""], ["index.html"]):
                _no_params(query)
                return Response(HTTPStatus.OK, dashboard_html(), "text/html; charset=utf-8")
            if segments[0] == "owner" and len(segments) <= 2:  # /owner, /owner/{s}
                _no_params(query)
                return Response(HTTPStatus.OK, owner_html(), "text/html; charset=utf-8")
            if segments[0] == "haccp" and len(segments) in (2, 3):  # /haccp/{s}[/{f}]
                return self._haccp_page(segments[1:], query)
            if segments == ["healthz"]:
                _no_params(query)
                return self._healthz()
            if segments == ["api", "ingest"]:
                _no_params(query)
                if self.ingest_status is None:
                    return error(HTTPStatus.NOT_FOUND, "no ingest worker in this process")
                return json_response(HTTPStatus.OK, dict(self.ingest_status()))
            if segments[:1] != ["api"]:
                return error(HTTPStatus.NOT_FOUND, f"no such path: {parts.path}")
            return self._with_db(segments[1:], query)
        except BadRequest as exc:
            return error(HTTPStatus.BAD_REQUEST, str(exc))

    def _healthz(self) -> Response:
        body: dict[str, Any] = {"status": "ok", "db": True}
        try:
            with Database.open_readonly(self.db_path) as db:
                db.ping()
        except sql.ERRORS as exc:
            body.update(status="error", db=False, error=f"database: {exc}")
        if self.ingest_status is not None:
            status = self.ingest_status()
            body["ingest"] = {"subscribed": status.get("subscribed")}
        code = HTTPStatus.OK if body["db"] else HTTPStatus.SERVICE_UNAVAILABLE
        return json_response(code, body)

    def _with_db(self, route: list[str], query: dict[str, str]) -> Response:
        try:
            with Database.open_readonly(self.db_path) as db:
                return self._route(db, route, query)
        except sql.ERRORS as exc:
            log.warning("database error serving /api/%s: %s", "/".join(route), exc)
            return error(HTTPStatus.SERVICE_UNAVAILABLE, f"database unavailable: {exc}")

    def _route(self, db: Database, route: list[str], query: dict[str, str]) -> Response:
        match route:
            case ["stores"]:
                _no_params(query)
                return json_response(HTTPStatus.OK, {"stores": db.stores()})
            case ["stores", store, "fridges"] if ID_PATTERN.match(store):
                _no_params(query)
                fridges = db.fridges(store)
                if not fridges and store not in {s["store"] for s in db.stores()}:
                    return error(HTTPStatus.NOT_FOUND, f"unknown store {store!r}")
                return json_response(HTTPStatus.OK, {"store": store, "fridges": fridges})
            case ["stores", store, "fridges", device, "readings"] if (
                ID_PATTERN.match(store) and ID_PATTERN.match(device)
            ):
                return self._readings(db, store, device, query)
            case ["stores", store, "gaps"] if ID_PATTERN.match(store):
                return self._gaps(db, store, query)
            case ["stores", store, "clock"] if ID_PATTERN.match(store):
                _only(query, "limit")
                limit = _int_param(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
                history = db.clock_history(store, limit=limit)
                current = db.clock(store)
                if current is None and store not in {s["store"] for s in db.stores()}:
                    return error(HTTPStatus.NOT_FOUND, f"unknown store {store!r}")
                return json_response(HTTPStatus.OK, {"store": store, "current": current,
                                                     "history": history})
            case ["stores", store, "commands"] if ID_PATTERN.match(store):
                _only(query, "state", "limit")
                state = query.get("state")
                if state is not None and state not in commands.STATES:
                    raise BadRequest(f"state: expected one of {', '.join(commands.STATES)}")
                limit = _int_param(query, "limit", DEFAULT_COMMAND_LIMIT, 1, MAX_LIMIT)
                rows = commands.list_commands(db, store, state=state, limit=limit)
                return json_response(HTTPStatus.OK, {"store": store, "commands": rows})
            case ["commands", command_id] if ID_PATTERN.match(command_id):
                _no_params(query)
                cmd = commands.get_command(db, command_id)
                if cmd is None:
                    return error(HTTPStatus.NOT_FOUND, f"unknown command {command_id!r}")
                return json_response(HTTPStatus.OK, cmd)
            case ["stores", store, "catalogue"] if ID_PATTERN.match(store):
                _no_params(query)
                cat = retail_store.catalogue(db.conn, store)
                if cat is None:
                    return error(HTTPStatus.NOT_FOUND, f"{store} has no catalogue")
                return json_response(HTTPStatus.OK, cat)
            case ["stores", store, "orders"] if ID_PATTERN.match(store):
                _only(query, "state", "limit")
                state = query.get("state")
                if state is not None and state not in retail_store.CLOUD_STATES:
                    raise BadRequest(
                        f"state: expected one of {', '.join(retail_store.CLOUD_STATES)}")
                limit = _int_param(query, "limit", DEFAULT_COMMAND_LIMIT, 1, MAX_LIMIT)
                orders = retail_store.list_orders(db.conn, store, state=state, limit=limit)
                return json_response(HTTPStatus.OK, {"store": store, "orders": orders})
            case ["stores", store, "orders", oid] if (ID_PATTERN.match(store)
                                                       and DIGITS.match(oid)):
                _no_params(query)
                order = retail_store.get_order(db.conn, store, int(oid))
                if order is None:
                    return error(HTTPStatus.NOT_FOUND, f"{store} has no order {oid}")
                return json_response(HTTPStatus.OK, order)
            case ["stores", store, "events"] if ID_PATTERN.match(store):
                _only(query, "type", "limit")
                type_ = query.get("type", "")
                # Scans stay out of this unauthenticated read: an old agent's scan events
                # may hold pickup codes, which are bearer tokens for someone's order.
                if type_ not in EVENT_TYPES or type_ == "scan":
                    raise BadRequest("type: one of "
                                     + ", ".join(sorted(EVENT_TYPES - {"scan"})))
                limit = _int_param(query, "limit", DEFAULT_COMMAND_LIMIT, 1, MAX_LIMIT)
                return json_response(HTTPStatus.OK, {
                    "store": store, "type": type_,
                    "events": retail_store.recent_events(db.conn, store, type_, limit)})
            case ["stores", store, "stock"] if ID_PATTERN.match(store):
                _no_params(query)
                return json_response(HTTPStatus.OK,
                                     retail_store.stock_view(db.conn, store, self._now()))
            case ["stores", store, "owner"] if ID_PATTERN.match(store):
                _no_params(query)
                return json_response(HTTPStatus.OK, haccp.owner_view(db.conn, store))
            case ["stores", store, "fridges", device, "history"] if (
                ID_PATTERN.match(store) and ID_PATTERN.match(device)
            ):
                _only(query, "hours")
                hours = _int_param(query, "hours", 24, 1, 168)
                return json_response(HTTPStatus.OK,
                                     haccp.history(db.conn, store, device, hours))
            case ["dead-letters"]:
                _only(query, "limit")
                limit = _int_param(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
                letters = [_dead_letter_dict(d) for d in db.dead_letters(limit=limit)]
                return json_response(HTTPStatus.OK, {"dead_letters": letters})
        return error(HTTPStatus.NOT_FOUND, f"no such path: /api/{'/'.join(route)}")

    def _gaps(self, db: Database, store: str, query: dict[str, str]) -> Response:
        _only(query, "state", "limit")
        state = query.get("state", "all")
        if state not in ("open", "filled", "all"):
            raise BadRequest("state: expected open, filled or all")
        limit = _int_param(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        streams = db.streams(store)
        if not streams and store not in {s["store"] for s in db.stores()}:
            return error(HTTPStatus.NOT_FOUND, f"unknown store {store!r}")
        devices: dict[str, dict[str, Any]] = {}
        for st in streams:
            entry = devices.setdefault(st["device"], {"device": st["device"], "open": [],
                                                       "filled": [], "streams": []})
            entry["streams"].append({k: v for k, v in st.items() if k != "device"})
        rows = db.gaps(store, state=state, limit=limit)
        for g in rows:
            entry = devices.setdefault(g["device"], {"device": g["device"], "open": [],
                                                      "filled": [], "streams": []})
            entry[g["state"]].append({k: v for k, v in g.items()
                                      if k not in ("store", "device", "state")})
        open_gaps, missing = db.open_gap_totals(store)
        body = {
            "store": store,
            "open_gaps": open_gaps,  # totals, whatever the state filter and limit
            "missing_records": missing,
            "truncated": len(rows) == limit,
            "devices": [devices[k] for k in sorted(devices)],
        }
        return json_response(HTTPStatus.OK, body)

    def _readings(self, db: Database, store: str, device: str,
                  query: dict[str, str]) -> Response:
        _only(query, "limit", "after_boot", "after_seq")
        limit = _int_param(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        after: tuple[int, int] | None = None
        if "after_seq" in query or "after_boot" in query:
            # seq restarts with every agent boot: a position needs both numbers.
            if not ("after_seq" in query and "after_boot" in query):
                raise BadRequest("after_seq and after_boot go together (seq restarts each boot)")
            after = (_int_param(query, "after_boot", 0, 0, 2**63 - 1),
                     _int_param(query, "after_seq", 0, 0, 2**63 - 1))
        rows = list(db.readings(store, device, after=after, limit=limit))
        if not rows and after is None and not db.fridges(store):
            return error(HTTPStatus.NOT_FOUND, f"no readings for {store}/{device}")
        # Where to continue: the last row returned (or the request's own cursor if none).
        last = (rows[-1]["boot"], rows[-1]["seq"]) if rows else after
        body = {
            "store": store,
            "device": device,
            "readings": rows,
            "next": {"after_boot": last[0], "after_seq": last[1]} if last else None,
        }
        return json_response(HTTPStatus.OK, body)

    # ------------------------------------------------------------ HACCP record (HTML)

    def _haccp_page(self, route: list[str], query: dict[str, str]) -> Response:
        """`/haccp/{s}[/{f}]?day=YYYY-MM-DD&tz=Area/City`: the printable day record."""
        _only(query, "day", "tz")
        if not all(ID_PATTERN.match(x) for x in route):
            raise BadRequest("store and fridge must be ids")
        store, fridge = route[0], (route[1] if len(route) > 1 else None)
        try:
            tz = haccp.parse_tz(query.get("tz", "UTC"))
            day = haccp.parse_day(query["day"]) if "day" in query else None
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        try:
            with Database.open_readonly(self.db_path) as db:
                known = haccp.fridge_ids(db.conn, store)
                if not known or (fridge is not None and fridge not in known):
                    return error(HTTPStatus.NOT_FOUND, f"no readings for {'/'.join(route)}")
                day = day or haccp.latest_day(db.conn, store, tz)
                assert day is not None  # the store has readings
                page = haccp.report_html(db.conn, haccp.report(db.conn, store, day, tz, fridge))
        except sql.ERRORS as exc:
            return error(HTTPStatus.SERVICE_UNAVAILABLE, f"database unavailable: {exc}")
        return Response(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")

    # ------------------------------------------------------------ commands (POST)

    @staticmethod
    def accepts_post(target: str) -> bool:
        if alert_web.accepts_post(target):
            return True
        segments = urlsplit(target).path.split("/")[1:]
        if segments[:2] != ["api", "stores"]:
            return False
        return (len(segments) == 4 and segments[3] in ("commands", "orders")) or (
            len(segments) == 6 and segments[3] == "orders" and segments[5] == "cancel")

    @staticmethod
    def accepts_put(target: str) -> bool:
        segments = urlsplit(target).path.split("/")[1:]
        return len(segments) == 4 and segments[:2] == ["api", "stores"] and (
            segments[3] == "catalogue")

    @staticmethod
    def body_limit(target: str) -> int:
        segments = urlsplit(target).path.split("/")[1:]
        if segments[:2] != ["api", "stores"]:
            return MAX_BODY_BYTES
        if segments[3:4] == ["catalogue"]:
            return MAX_CATALOGUE_BODY_BYTES
        if segments[3:4] == ["orders"]:
            return MAX_ORDER_BODY_BYTES
        return MAX_BODY_BYTES

    def handle_post(self, target: str, *, authorization: str | None,
                    content_type: str | None, body: bytes, client: str) -> Response:
        """Issue a command: `POST /api/stores/{s}/commands` {"action": A, "params": {...}}."""
        if alert_web.accepts_post(target):
            return _from_web(self.alert_web.post(target, authorization=authorization,
                                                 content_type=content_type, body=body,
                                                 client=client))
        parts = urlsplit(target)
        segments = [unquote(s) for s in parts.path.split("/")[1:]]
        if not self.accepts_post(target) or parts.query:
            return error(HTTPStatus.NOT_FOUND, f"no such path: {parts.path}")
        if segments[3] == "orders":
            return self.handle_retail("POST", target, authorization=authorization,
                                      content_type=content_type, body=body, client=client)
        if self.commander is None or self._token_digest is None:
            return error(HTTPStatus.SERVICE_UNAVAILABLE,
                         "this worker does not issue commands (no [commands] in its config)")
        # Authenticate before looking at anything the caller sent.
        denied = self._authorise(authorization)
        if denied is not None:
            return denied
        store = segments[2]
        mime = (content_type or "").split(";")[0].strip().lower()
        if mime != "application/json":
            # Also keeps browsers' cross-site "simple" form posts out.
            return error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json")
        try:
            action, params = _command_request(body)
            if not ID_PATTERN.match(store):
                raise BadRequest(f"{store!r} is not a store id")
            with Database.open_readonly(self.db_path) as db:
                known = db.has_store(store)
            if not known:
                # A typo would otherwise sit unread at the broker until it expires.
                return error(HTTPStatus.NOT_FOUND, f"unknown store {store!r} (never seen)")
            command_id = self.commander.issue(store, action, params,
                                              issued_by=f"http:{client}")
        except BadRequest as exc:
            return error(HTTPStatus.BAD_REQUEST, str(exc))
        except CommandError as exc:  # what the store would refuse: bad params, store id
            return error(HTTPStatus.BAD_REQUEST, str(exc))
        except sql.ERRORS as exc:
            log.warning("database error issuing a command to %s: %s", store, exc)
            return error(HTTPStatus.SERVICE_UNAVAILABLE, f"database unavailable: {exc}")
        with Database.open_readonly(self.db_path) as db:
            cmd = commands.get_command(db, command_id)
        assert cmd is not None  # committed before issue() returned
        location = (("Location", f"/api/commands/{command_id}"),)
        if cmd["state"] == "unsent":
            body_out = {"error": f"command not sent: {cmd['reason']}", "status": 503,
                        "id": command_id, "command": cmd}
            return Response(HTTPStatus.SERVICE_UNAVAILABLE,
                            json.dumps(body_out, separators=(",", ":")).encode() + b"\n",
                            headers=location)
        out = json.dumps({"id": command_id, "command": cmd}, separators=(",", ":")).encode()
        return Response(HTTPStatus.ACCEPTED, out + b"\n", headers=location)

    # ------------------------------------------------------------ retail (PUT, POST)

    def handle_retail(self, method: str, target: str, *, authorization: str | None,
                      content_type: str | None, body: bytes, client: str) -> Response:
        """PUT a catalogue, POST an order or a cancellation (bearer token, JSON body)."""
        parts = urlsplit(target)
        segments = [unquote(s) for s in parts.path.split("/")[1:]]
        if parts.query:
            return error(HTTPStatus.NOT_FOUND, f"no such path: {parts.path}")
        if self._token_digest is None:
            return error(HTTPStatus.SERVICE_UNAVAILABLE,
                         "no API token configured ([commands] api_token_file)")
        denied = self._authorise(authorization)  # before looking at anything sent
        if denied is not None:
            return denied
        if (content_type or "").split(";")[0].strip().lower() != "application/json":
            return error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json")
        store, by = segments[2], f"http:{client}"
        try:
            if not ID_PATTERN.match(store):
                raise BadRequest(f"{store!r} is not a store id")
            obj = _json_object(body)
            if method == "PUT":
                return self._put_catalogue(store, obj, by)
            if len(segments) == 6:
                if not DIGITS.match(segments[4]):
                    raise BadRequest(f"{segments[4]!r} is not an order id")
                return self._cancel(store, int(segments[4]), obj, by)
            return self._create_order(store, obj, by)
        except BadRequest as exc:
            return error(HTTPStatus.BAD_REQUEST, str(exc))
        except retail_store.RetailError as exc:
            body_out: dict[str, Any] = {"error": exc.message, "status": exc.status}
            if exc.detail is not None:
                body_out |= exc.detail
            return json_response(exc.status, body_out)
        except sql.ERRORS as exc:
            log.warning("database error on %s %s: %s", method, parts.path, exc)
            return error(HTTPStatus.SERVICE_UNAVAILABLE, f"database unavailable: {exc}")

    def _put_catalogue(self, store: str, obj: dict[str, Any], by: str) -> Response:
        unknown = sorted(set(obj) - {"items"})
        if unknown:
            raise BadRequest(f"{unknown[0]}: unknown field (known: items)")
        items = retail_store.parse_catalogue_items(store, obj.get("items"))
        with Database.open(self.db_path) as db, db.transaction() as conn:
            cat = retail_store.put_catalogue(conn, store, items, self._now(), by)
        self._send_downlink()
        with Database.open_readonly(self.db_path) as db:
            current = retail_store.catalogue(db.conn, store)
        assert current is not None
        log.info("catalogue v%d of %s (%d items) by %s", cat.version, store, len(items), by)
        return json_response(HTTPStatus.OK, {"store": store, "version": cat.version,
                                             "items": len(items),
                                             "published_at": current["published_at"]})

    def _create_order(self, store: str, obj: dict[str, Any], by: str) -> Response:
        req = retail_store.parse_order_request(obj)
        issuer = self._pickup_codec(store, required=req.mode == "pickup")
        with Database.open(self.db_path) as db, db.transaction() as conn:
            order = retail_store.create_order(conn, store, req, self._now(), by)
        # Only a pickup order gets a code: the counter refuses a delivery order's code anyway
        # ("not for pickup"), so issuing one would hand out a token that opens nothing.
        code = (issuer.issue(order.id, order.expires)
                if issuer is not None and order.mode == "pickup" else None)
        self._send_downlink()
        with Database.open_readonly(self.db_path) as db:
            stored = retail_store.get_order(db.conn, store, order.id)
        assert stored is not None
        log.info("order %d for %s (%s, %d lines) by %s", order.id, store, order.mode,
                 len(order.lines), by)  # never the code
        return Response(HTTPStatus.CREATED, json.dumps(
            {"id": order.id, "pickup_code": code, "order": stored},
            separators=(",", ":")).encode() + b"\n",
            headers=(("Location", f"/api/stores/{store}/orders/{order.id}"),))

    def _cancel(self, store: str, order_id: int, obj: dict[str, Any], by: str) -> Response:
        unknown = sorted(set(obj) - {"reason"})
        if unknown:
            raise BadRequest(f"{unknown[0]}: unknown field (known: reason)")
        reason = obj.get("reason", "cancelled")
        if not isinstance(reason, str):
            raise BadRequest("reason: a string")
        with Database.open(self.db_path) as db, db.transaction() as conn:
            retail_store.cancel_order(conn, store, order_id, reason, self._now(), by)
        self._send_downlink()
        with Database.open_readonly(self.db_path) as db:
            order = retail_store.get_order(db.conn, store, order_id)
        return json_response(HTTPStatus.OK, order)

    def _send_downlink(self) -> None:
        # At once, so the caller learns whether the broker took it (published_at); if not,
        # the sender's own thread keeps trying.
        if self.downlink is not None:
            try:
                self.downlink.send_pending()
            except sql.ERRORS as exc:
                log.warning("downlink: %s (retried later)", exc)

    def _pickup_codec(self, store: str, *, required: bool) -> PickupCodec | None:
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

    def _authorise_alerts(self, authorization: str | None) -> alert_web.WebResult | None:
        if self._token_digest is None:
            return alert_web.WebResult(HTTPStatus.SERVICE_UNAVAILABLE, b'{"error":'
                                       b'"no API token configured ([commands])","status":503}')
        denied = self._authorise(authorization)
        return None if denied is None else alert_web.WebResult(*vars(denied).values())

    def _authorise(self, authorization: str | None) -> Response | None:
        challenge = (("WWW-Authenticate", 'Bearer realm="xiaodian"'),)
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return error(HTTPStatus.UNAUTHORIZED, "Authorization: Bearer <token> required",
                         challenge)
        given = hashlib.sha256(token.strip().encode("utf-8", "surrogateescape")).digest()
        assert self._token_digest is not None
        if not hmac.compare_digest(given, self._token_digest):
            return error(HTTPStatus.FORBIDDEN, "wrong token")
        return None


def _from_web(r: alert_web.WebResult) -> Response:
    return Response(r.status, r.body, r.content_type, r.headers)


def _command_request(body: bytes) -> tuple[str, dict[str, str | int | bool]]:
    """Strict parse of {"action": str, "params": {name: scalar}}; BadRequest says why."""
    obj = _json_object(body)
    unknown = sorted(set(obj) - {"action", "params"})
    if unknown:
        raise BadRequest(f"{unknown[0]}: unknown field (known: action, params)")
    action = obj.get("action")
    if not isinstance(action, str):
        raise BadRequest("action: required, a string")
    if action not in ACTIONS:
        raise BadRequest(f"action: unknown action {action[:64]!r} (known: {', '.join(ACTIONS)})")
    params = obj.get("params", {})
    if not isinstance(params, dict) or not all(
        isinstance(v, str | int) for v in params.values()  # bool is an int
    ):
        raise BadRequest("params: must be an object of strings, integers and booleans")
    return action, params


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(body.decode("utf-8"), object_pairs_hook=_unique_keys,
                         parse_float=_no_floats, parse_constant=_no_floats)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest(f"body is not a JSON object: {exc}") from None
    if not isinstance(obj, dict):
        raise BadRequest("body must be a JSON object")
    return obj


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out


def _no_floats(text: str) -> None:
    raise ValueError(f"{text}: only whole numbers (e.g. tenths_c: -5 for -0.5 °C)")


def _query(qs: str) -> dict[str, str]:
    try:
        parsed = parse_qs(qs, keep_blank_values=True, strict_parsing=bool(qs),
                          max_num_fields=MAX_QUERY_FIELDS)
    except ValueError as exc:
        raise BadRequest(f"bad query string: {exc}") from None
    out = {}
    for key, values in parsed.items():
        if len(values) != 1:
            raise BadRequest(f"{key}: given more than once")
        out[key] = values[0]
    return out


def _no_params(query: dict[str, str]) -> None:
    _only(query)


def _only(query: dict[str, str], *allowed: str) -> None:
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        known = ", ".join(allowed) if allowed else "none"
        raise BadRequest(f"{unknown[0]}: unknown query parameter (known: {known})")


def _int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not DIGITS.match(raw):  # ASCII digits only: no signs, spaces or "1e3"
        raise BadRequest(f"{name}: expected a whole number, got {raw!r}")
    value = int(raw)
    if not low <= value <= high:
        raise BadRequest(f"{name}: must be between {low} and {high}")
    return value


def _dead_letter_dict(d: DeadLetter) -> dict[str, Any]:
    text = d.payload.decode("utf-8", "replace")
    return {
        "id": d.id,
        "topic": d.topic,
        "reason": d.reason,
        "worker": d.worker,
        "received_at": d.received_at,
        "size": len(d.payload),
        "payload": text[:DEAD_LETTER_PREVIEW],
        "payload_truncated": len(text) > DEAD_LETTER_PREVIEW,
    }


# ---------------------------------------------------------------- the HTTP edge


class _Handler(BaseHTTPRequestHandler):
    api: Api  # set on the subclass made per server
    server_version = "xiaodian-cloud"
    timeout = REQUEST_TIMEOUT_S
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _refuse_method(self) -> None:
        if self.api.accepts_post(self.path):
            allow, what = "GET, HEAD, POST", "GET, HEAD and POST"
        elif self.api.accepts_put(self.path):
            allow, what = "GET, HEAD, PUT", "GET, HEAD and PUT"
        else:
            allow, what = "GET, HEAD", "GET and HEAD"
        self._send(error(HTTPStatus.METHOD_NOT_ALLOWED, f"only {what} are supported here"),
                   head=False, extra={"Allow": allow})

    do_DELETE = do_PATCH = do_OPTIONS = _refuse_method

    def do_PUT(self) -> None:
        self._write("PUT", self.api.accepts_put,
                    lambda path, **kw: self.api.handle_retail("PUT", path, **kw))

    def do_POST(self) -> None:
        self._write("POST", self.api.accepts_post, self.api.handle_post)

    def _write(self, method: str, accepts: Callable[[str], bool],
               handle: Callable[..., Response]) -> None:
        """A request with a body: refused unless the path takes `method`, then the body
        within its limit, then `handle`; an unexpected error is a logged 500."""
        if not accepts(self.path):
            self._refuse_method()
            return
        body = self._read_body()
        if body is None:
            return
        try:
            response = handle(
                self.path, authorization=self.headers.get("Authorization"),
                content_type=self.headers.get("Content-Type"), body=body,
                client=self.client_address[0])
        except Exception:
            log.exception("error serving %s %s", method, self.path)
            response = error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error (see the log)")
        self._send(response, head=False)

    def _read_body(self) -> bytes | None:
        """The request body within MAX_BODY_BYTES, or None after answering with an error."""
        if "Transfer-Encoding" in self.headers:
            # No chunked bodies: with a length up front, the limit is checked before reading.
            self.close_connection = True
            self._send(error(HTTPStatus.LENGTH_REQUIRED, "send Content-Length, not chunks"),
                       head=False)
            return None
        raw = self.headers.get("Content-Length")
        if raw is None or not DIGITS.match(raw.strip()):
            self.close_connection = True
            self._send(error(HTTPStatus.LENGTH_REQUIRED, "Content-Length required"), head=False)
            return None
        length = int(raw)
        limit = self.api.body_limit(self.path)
        if length > limit:
            self.close_connection = True  # unread bytes would be taken for the next request
            self._send(error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                             f"request body over {limit} bytes"), head=False)
            return None
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            return None  # the client went away mid-body
        return body

    def _serve(self, *, head: bool) -> None:
        if len(self.path.encode()) > MAX_TARGET_BYTES:
            self._send(error(HTTPStatus.REQUEST_URI_TOO_LONG,
                             f"request target longer than {MAX_TARGET_BYTES} bytes"), head=head)
            return
        length = self.headers.get("Content-Length", "0")
        if length.strip() != "0" or "Transfer-Encoding" in self.headers:
            # Nothing here takes a body; refusing it avoids reading unbounded input.
            self.close_connection = True
            self._send(error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                             "request bodies are not accepted"), head=head)
            return
        try:
            response = self.api.handle(self.path)
        except Exception:
            log.exception("error serving %s", self.path)
            response = error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error (see the log)")
        self._send(response, head=head)

    def _send(self, response: Response, *, head: bool,
              extra: Mapping[str, str] | None = None) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if response.content_type.startswith("text/html"):
            self.send_header("Content-Security-Policy", DASHBOARD_CSP)
        for k, v in (*response.headers, *(extra or {}).items()):
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class HttpServer:
    """The API on `host:port` (port 0: a free one), served from a background thread."""

    def __init__(self, api: Api, host: str, port: int) -> None:
        handler = type("Handler", (_Handler,), {"api": api})
        server_cls = _Server6 if ":" in host else _Server
        self._server = server_cls((host, port), handler)
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-api",
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        self._thread.start()
        log.info("HTTP API and dashboard on %s", self.url)

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> HttpServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
