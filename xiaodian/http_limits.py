"""Request limits both HTTP servers apply the same way: the cloud's API (Starlette) and the
terminal's loopback pages (the standard library's server, lighter on a small terminal).

Pure functions on header values: each server turns `Refused` (or a False from
`same_origin`) into its own answer.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from http import HTTPStatus

_DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII only: no sign, space, "1e3" or other digits


class Refused(Exception):
    """A request refused before its body is read; the connection should then close, as
    the unread body must never be taken for the next request."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def body_length(transfer_encoding: str | None, content_length: str | None, limit: int) -> int:
    """The announced body length, checked against `limit` before anything is read."""
    if transfer_encoding is not None:
        # No chunked bodies: with a length up front, the limit is checked before reading.
        raise Refused(HTTPStatus.LENGTH_REQUIRED, "send Content-Length, not chunks")
    if content_length is None or not _DIGITS.fullmatch(content_length.strip()):
        raise Refused(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
    length = int(content_length)
    if length > limit:
        raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body over {limit} bytes")
    return length


def is_json(content_type: str | None) -> bool:
    """application/json, whatever its parameters (charset): a cross-site form or a
    text/plain fetch needs no CORS preflight, JSON does."""
    return (content_type or "").split(";")[0].strip().lower() == "application/json"


def same_origin(host: str | None, origin: str | None, *,
                hosts: Collection[str] | None = None,
                schemes: Collection[str] = ("http", "https")) -> bool:
    """Whether a request comes from a page of the site it is addressed to.

    `host` and `origin` are the Host and Origin headers. `hosts` are the lower-case
    `name:port` values this server answers to (the terminal's loopback addresses, against
    DNS rebinding), or None for a server reachable under names it cannot list (the cloud
    behind its proxy). An Origin, when the browser sends one, must be one of `schemes`
    followed by `://` and that same Host; "null" (a sandboxed or privacy-stripped page)
    never is. Comparison ignores case, as host names do.
    """
    name = (host or "").strip().lower()
    if hosts is not None and name not in hosts:
        return False
    if origin is None:
        return True
    return bool(name) and origin.strip().lower() in {f"{s}://{name}" for s in schemes}
