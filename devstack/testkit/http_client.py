"""The one small HTTP client of the tests: GET/POST/PUT with a JSON body and an optional
bearer token, answering status, headers and body whatever the status (no exception for a
4xx or 5xx: the tests assert on those).

    r = get(f"{base}/api/stores")                 # r.status, r.headers, r.body, r.json()
    r = post(url, {"items": [...]}, token=TOKEN)  # JSON body, Content-Type set
    r = request(url, "POST", data=b"raw", headers={"Content-Type": "text/plain"})

Tests of the HTTP framing itself (keep-alive, headers sent byte for byte) still drive
`http.client` directly.
"""

from __future__ import annotations

import http.client
import json as jsonlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

_NOTHING: Any = object()


@dataclass(frozen=True)
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        """The body as JSON; None for an empty body."""
        return jsonlib.loads(self.body) if self.body else None


def request(
    url: str,
    method: str = "GET",
    json: Any = _NOTHING,
    *,
    data: bytes | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> Response:
    """One request on a connection of its own. `json` (any JSON value) is sent as the body
    with `Content-Type: application/json`; `data` is sent as it is."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        raise ValueError(f"not an http:// URL: {url}")
    sent = dict(headers or {})
    if json is not _NOTHING:
        data = jsonlib.dumps(json).encode()
        sent.setdefault("Content-Type", "application/json")
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        conn.request(method, target, body=data, headers=sent)
        resp = conn.getresponse()
        return Response(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def get(url: str, **kw: Any) -> Response:
    return request(url, "GET", **kw)


def post(url: str, json: Any = _NOTHING, **kw: Any) -> Response:
    return request(url, "POST", json, **kw)


def put(url: str, json: Any = _NOTHING, **kw: Any) -> Response:
    return request(url, "PUT", json, **kw)


def local(port: int, path: str = "/") -> str:
    """`http://127.0.0.1:PORT/path`: a server of the test's own on loopback."""
    return f"http://127.0.0.1:{port}{path}"
