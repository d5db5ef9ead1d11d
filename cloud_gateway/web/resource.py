"""The HTTP edge of every route: request limits, body framing, and the handler's thread.

`route(path, get=..., post=..., put=...)` makes a Starlette route whose endpoint is a
`Resource`; Starlette matches the path and method (404, 405), the Resource reads the body
within its limit, runs the synchronous handler on a worker thread and turns what it raises
into an answer. `Limits` guards the whole app before routing: target length, and no body on
a read. Connection framing is h11's (through uvicorn): a body left unread by a refusal is
skipped, never taken for the next request on the connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from xiaodian import http_limits

from .. import retail as retail_store
from .. import sql
from .context import Api
from .core import (
    MAX_BODY_BYTES,
    MAX_TARGET_BYTES,
    REQUEST_TIMEOUT_S,
    Call,
    HttpError,
    Reply,
    error,
    json_reply,
    to_response,
)

log = logging.getLogger(__name__)

Handler = Callable[[Call], Reply]
CLOSE = (("Connection", "close"),)  # after a refusal whose body we will not read


class Resource:
    """One path's handlers by method (HEAD is GET without the body)."""

    def __init__(self, handlers: dict[str, Handler], body_limit: int) -> None:
        self.handlers = handlers
        self.body_limit = body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        method = "GET" if request.method == "HEAD" else request.method
        handler = self.handlers[method]  # the route lets only these methods through
        body = b""
        if method != "GET":
            got = await _read_body(request, self.body_limit)
            if got is None:
                return  # the client went away mid-body: nobody to answer
            if isinstance(got, Reply):
                await to_response(got)(scope, receive, send)
                return
            body = got
        client = request.client.host if request.client else ""
        raw_path = cast(bytes, scope.get("raw_path") or scope["path"].encode()).decode("ascii")
        query = request.url.query
        call = Call(api=cast(Api, request.app.state.api), path=scope["path"],
                    target=raw_path + (f"?{query}" if query else ""),
                    path_params=dict(request.path_params), query_string=query,
                    headers=request.headers, client=client, body=body)
        reply = await run_in_threadpool(answer, handler, call, f"{request.method} {call.path}")
        await to_response(reply)(scope, receive, send)


# The one place a retail refusal becomes an HTTP status.
REFUSAL_STATUS = {
    retail_store.Refusal.INVALID: HTTPStatus.BAD_REQUEST,
    retail_store.Refusal.NOT_FOUND: HTTPStatus.NOT_FOUND,
    retail_store.Refusal.CONFLICT: HTTPStatus.CONFLICT,
    retail_store.Refusal.TOO_LARGE: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    retail_store.Refusal.UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
}


def answer(handler: Handler, call: Call, what: str) -> Reply:
    """The handler's reply, or the answer to what it raised (an unexpected error: a 500)."""
    try:
        return handler(call)
    except HttpError as exc:
        return error(exc.status, exc.message, exc.headers)
    except retail_store.RetailError as exc:
        status = REFUSAL_STATUS[exc.reason]
        body: dict[str, Any] = {"error": exc.message, "status": status}
        if exc.detail is not None:
            body |= exc.detail
        return json_reply(status, body)
    except sql.ERRORS as exc:
        log.warning("database error serving %s: %s", what, exc)
        return error(HTTPStatus.SERVICE_UNAVAILABLE, f"database unavailable: {exc}")
    except Exception:
        log.exception("error serving %s", what)
        return error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error (see the log)")


async def _read_body(request: Request, limit: int) -> bytes | Reply | None:
    """The body within `limit` bytes, a refusal, or None if the client went away."""
    try:
        http_limits.body_length(request.headers.get("transfer-encoding"),
                                request.headers.get("content-length"), limit)
    except http_limits.Refused as exc:
        return error(exc.status, exc.message, CLOSE)
    try:
        with anyio.fail_after(REQUEST_TIMEOUT_S):
            # h11 delivers exactly Content-Length bytes, so this stays within the limit.
            return b"".join([chunk async for chunk in request.stream()])
    except ClientDisconnect:
        return None
    except TimeoutError:
        return error(HTTPStatus.REQUEST_TIMEOUT, "request body too slow", CLOSE)


def route(path: str, *, get: Handler | None = None, post: Handler | None = None,
          put: Handler | None = None, body_limit: int = MAX_BODY_BYTES) -> Route:
    handlers = {m: h for m, h in (("GET", get), ("POST", post), ("PUT", put)) if h is not None}
    return Route(path, Resource(handlers, body_limit), methods=list(handlers))


class Limits:
    """Refuses before routing what no route takes: long targets and bodies on reads."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            await to_response(refusal)(scope, receive, send)

    @staticmethod
    def _refusal(scope: Scope) -> Reply | None:
        query = scope["query_string"]
        target = len(scope.get("raw_path") or b"") + (len(query) + 1 if query else 0)
        if target > MAX_TARGET_BYTES:
            return error(HTTPStatus.REQUEST_URI_TOO_LONG,
                         f"request target longer than {MAX_TARGET_BYTES} bytes")
        if scope["method"] in ("GET", "HEAD"):
            headers = dict(scope["headers"])
            length = headers.get(b"content-length", b"0").strip()
            if length != b"0" or b"transfer-encoding" in headers:
                # Nothing here reads a body on a read; refusing it avoids reading unbounded
                # input, and the connection closes rather than skip through it.
                return error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                             "request bodies are not accepted", CLOSE)
        return None
