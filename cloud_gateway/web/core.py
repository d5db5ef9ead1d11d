"""What every route shares: the reply type, errors, and strict readers of queries and bodies.

A handler is plain synchronous code (`Call` in, `Reply` out) run on a worker thread, so the
database calls it makes never block the event loop; it signals a refusal by raising
`HttpError`, which `resource.py` turns into the JSON error body every client expects.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.datastructures import Headers
from starlette.responses import Response

from xiaodian.wire import ids, jsonio

from ..errors import CloudError

if TYPE_CHECKING:
    from .context import Api

MAX_TARGET_BYTES = 2048  # longest request target (path + query) we accept
MAX_QUERY_FIELDS = 8
REQUEST_TIMEOUT_S = 10.0  # a client that stalls mid-request loses its connection
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
DEFAULT_COMMAND_LIMIT = 100
# A command request is {"action", "params"} with at most 16 short scalars: 4 KiB is ample.
MAX_BODY_BYTES = 4096
# An order of 100 lines is ~5 KiB; a catalogue message is at most 256 KiB (retail.py).
MAX_ORDER_BODY_BYTES = 64 * 1024
MAX_CATALOGUE_BODY_BYTES = 1024 * 1024  # the message itself is capped at 256 KiB compact
# ASCII digits only (str.isdigit also takes "²" and other digits int() refuses), and short
# enough for a BIGINT: a bad id, limit or length is a 4xx, never a 500.
DIGITS = re.compile(r"[0-9]{1,18}\Z")
# Which id rule a path parameter follows (the contract's, xiaodian/wire/ids.py).
_ID_CHECKS = {"store": ids.is_store_id, "command_id": ids.is_command_id}

HTML = "text/html; charset=utf-8"
# The dashboard is self-contained: inline script and style, data only from this origin.
DASHBOARD_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                 "connect-src 'self'; img-src 'self' data:")


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


class HttpError(CloudError):
    """Refuse the request with `status` and a JSON `{"error", "status"}` body."""

    def __init__(self, status: int, message: str,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class BadRequest(HttpError):
    def __init__(self, message: str) -> None:
        super().__init__(HTTPStatus.BAD_REQUEST, message)


def json_reply(status: int, obj: Any, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, json.dumps(obj, separators=(",", ":")).encode() + b"\n",
                 headers=headers)


def error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return json_reply(status, {"error": message, "status": int(status)}, headers)


def to_response(reply: Reply) -> Response:
    """The reply with the headers every answer carries (no caching, no sniffing, a CSP)."""
    resp = Response(reply.body, reply.status, media_type=reply.content_type)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    own = {k.lower() for k, _ in reply.headers}
    if reply.content_type.startswith("text/html") and "content-security-policy" not in own:
        resp.headers["Content-Security-Policy"] = DASHBOARD_CSP
    for k, v in reply.headers:
        resp.headers.append(k, v)
    return resp


@dataclass(frozen=True)
class Call:
    """One request as a handler sees it: already framed, its body read within its limit."""

    api: Api
    path: str  # percent-decoded, for messages
    target: str  # raw path and query, as sent
    path_params: dict[str, str]
    query_string: str
    headers: Headers
    client: str
    body: bytes = b""

    def id(self, name: str, *, what: str = "") -> str:
        """Path parameter `name` if it is an id; if not, 404 (or 400 naming `what`)."""
        value = self.path_params[name]
        check = _ID_CHECKS.get(name, ids.is_device_id)
        if not check(value):
            if what:
                raise BadRequest(f"{value!r} is not a {what} id")
            raise HttpError(HTTPStatus.NOT_FOUND, f"no such path: {self.path}")
        return value

    def query(self, *allowed: str) -> dict[str, str]:
        """The query's fields, each given once and all of them in `allowed`."""
        query = parse_query(self.query_string)
        unknown = sorted(set(query) - set(allowed))
        if unknown:
            known = ", ".join(allowed) if allowed else "none"
            raise BadRequest(f"{unknown[0]}: unknown query parameter (known: {known})")
        return query

    def no_query(self) -> None:
        """Writes take no query string: one there means another path was meant."""
        if self.query_string:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no such path: {self.path}")

    def json_body(self) -> dict[str, Any]:
        """The body as a JSON object, refused with 415 unless sent as application/json."""
        mime = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if mime != "application/json":
            # Also keeps browsers' cross-site "simple" form posts out.
            raise HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                            "Content-Type must be application/json")
        return json_object(self.body)


def parse_query(qs: str) -> dict[str, str]:
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


def int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not DIGITS.match(raw):  # ASCII digits only: no signs, spaces or "1e3"
        raise BadRequest(f"{name}: expected a whole number, got {raw!r}")
    value = int(raw)
    if not low <= value <= high:
        raise BadRequest(f"{name}: must be between {low} and {high}")
    return value


def json_object(body: bytes) -> dict[str, Any]:
    """A body as a JSON object, read by the contract's strict reader (xiaodian.wire.jsonio):
    no duplicate keys, and no fractions or NaN (the API takes whole numbers only)."""
    try:
        return jsonio.decode(body, dict[str, Any], root="body", whole_numbers=True)
    except jsonio.JsonError as exc:
        if exc.reason == "invalid":
            raise BadRequest("body must be a JSON object") from None
        hint = ("; only whole numbers (e.g. tenths_c: -5 for -0.5 °C)"
                if exc.reason in ("not_whole", "not_a_number") else "")
        raise BadRequest(f"body is not a JSON object: {exc.message}{hint}") from None
