"""The inbox on loopback HTTP: the cloud posts notices to it, a phone-sized page shows them.

    POST /hook           the cloud's signed webhook (`devstack.inbox.Inbox.receive` judges it)
    GET  /               the page: newest notice first, each with its acknowledgement link
    GET  /api/notices    the notices as JSON (for scripts and tests): {"count", "notices"}

Chinese unless `?lang=en` (remembered in the `lang` cookie), like every page of the project.
It runs in a thread of the process that starts it (`xiaodian demo`, `StoreStack`), on
127.0.0.1 only: it stands in for the owner's phone, which nobody else should read.
"""

from __future__ import annotations

import json
import secrets
import threading
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from xiaodian.i18n import DEFAULT_TZ, negotiate, translator
from xiaodian.i18n.templates import render

from .inbox import DELIVERY_HEADER, MAX_BODY_BYTES, SIGNATURE_HEADER, TIMESTAMP_HEADER, Inbox
from .inbox_page import page_context


def _csp(nonce: str) -> str:
    return (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline';"
            " connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'")


class InboxServer:
    """`Inbox` behind a loopback HTTP server; use as a context manager or start()/stop()."""

    def __init__(self, secret: bytes, *, tz: str = DEFAULT_TZ, port: int = 0) -> None:
        self.inbox = Inbox(secret)
        self.tz = tz
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="inbox",
                                        daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The page, as a person opens it."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def hook_url(self) -> str:
        """Where the cloud posts (the contact's webhook_url)."""
        return self.url + "hook"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> InboxServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def page(self, lang: str | None, remembered: str | None) -> tuple[str, str]:
        """(HTML, the script's nonce) for a reader asking `lang`, who chose `remembered`."""
        t = translator(negotiate(lang, remembered))
        nonce = secrets.token_urlsafe(12)
        html = render("devstack", "templates", "inbox.html", t, nonce=nonce,
                      **page_context(self.inbox.notices(), t, self.tz))
        return html, nonce

    def notices_json(self) -> dict[str, Any]:
        notices = self.inbox.notices()
        return {"count": len(notices), "notices": [
            {"delivery": n.delivery, "received_at": n.received_at, "body": n.body}
            for n in notices]}


def _handler(server: InboxServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "xiaodian-inbox/1"

        def _foreign_host(self) -> bool:
            """A Host other than loopback: a web page's DNS-rebinding trick to read the
            notices (their links acknowledge) from the owner's own browser. Refused."""
            port = server.port
            if self.headers.get("Host") in {f"127.0.0.1:{port}", f"localhost:{port}"}:
                return False
            self._send(HTTPStatus.MISDIRECTED_REQUEST, b"use http://127.0.0.1\n", "text/plain")
            return True

        def do_POST(self) -> None:
            if self._foreign_host():
                return
            if urlsplit(self.path).path != "/hook":
                return self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
            mime = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if mime != "application/json":
                return self._send(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                                  b"Content-Type must be application/json\n", "text/plain")
            length = self.headers.get("Content-Length", "")
            if not length.isascii() or not length.isdigit() or int(length) > MAX_BODY_BYTES:
                return self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                  b"Content-Length required, at most 256 KiB\n", "text/plain")
            raw = self.rfile.read(int(length))
            verdict = server.inbox.receive(raw, self.headers.get(SIGNATURE_HEADER),
                                           self.headers.get(TIMESTAMP_HEADER),
                                           self.headers.get(DELIVERY_HEADER))
            body = json.dumps({"status": verdict.status, "reason": verdict.reason}).encode()
            if verdict.status == HTTPStatus.NO_CONTENT:
                return self._send(verdict.status, b"", "text/plain")
            self._send(verdict.status, body + b"\n", "application/json")

        def do_GET(self) -> None:
            if self._foreign_host():
                return
            parts = urlsplit(self.path)
            if parts.path == "/api/notices":
                body = json.dumps(server.notices_json(), ensure_ascii=False).encode()
                return self._send(HTTPStatus.OK, body, "application/json; charset=utf-8")
            if parts.path != "/":
                return self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
            asked = parse_qs(parts.query).get("lang", [None])[-1]
            html, nonce = server.page(asked, self._cookie("lang"))
            headers = [("Content-Security-Policy", _csp(nonce)),
                       # The links carry a one-day token: it is not sent on as a Referer.
                       ("Referrer-Policy", "no-referrer"), ("Cache-Control", "no-store")]
            if asked:
                lang = negotiate(asked).replace("_", "-")
                headers.append(("Set-Cookie", f"lang={lang}; Path=/; SameSite=Lax"))
            self._send(HTTPStatus.OK, html.encode(), "text/html; charset=utf-8", headers)

        def _cookie(self, name: str) -> str | None:
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(self.headers.get("Cookie") or "")
            except CookieError:
                return None
            morsel = jar.get(name)
            return morsel.value if morsel is not None else None

        def _send(self, status: int, body: bytes, content_type: str,
                  headers: list[tuple[str, str]] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            for name, value in headers or []:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the demo's terminal is for the live view; refusals are counted instead

    return Handler
