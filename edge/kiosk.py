"""The terminal's own pages on loopback: fridges, alerts and the buzzer (`/`), and the
counter (`/counter`: scans, pickups, deliveries, expiring stock), with or without network.

Chinese first: every page and every answer is put in the reader's words per request
(zh-CN unless `?lang=en`, remembered in the `lang` cookie), with times in the store's
zone. The pages are Jinja templates (edge/templates) served by the standard library's
server, which is lighter on the terminal than an ASGI stack.

The HTTP threads never touch SQLite or the MQTT client. They read snapshots the agent's
main thread publishes (`update`, `update_counter`), and hand the counter's requests to that
thread through a bounded queue, waiting for its answer. Why not their own SQLite
connection: every counter action writes ledger rows *and* outbox events whose sequence
numbers the agent's store hands out in memory; a second writer would collide with it.
The work itself takes milliseconds; the loop picks it up within one pass (<= 50 ms).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from xiaodian import http_limits
from xiaodian.i18n import DEFAULT_TZ, N_, Translator, negotiate, translator
from xiaodian.i18n.templates import render

from .config import check_tz, is_loopback
from .words import alerts_view, localize

log = logging.getLogger(__name__)

MAX_BODY = 8192
ANSWER_S = 10.0  # a request the agent has not answered by then gets "busy" (503)
LONG_POLL_S = 15.0
ACTIONS = ("scan", "mode", "confirm", "abort", "delivery", "adjust", "waste", "receiving")


@dataclass
class CounterRequest:
    action: str
    body: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: dict[str, Any] | None = None

    def answer(self, result: dict[str, Any]) -> None:
        self.result = result
        self.done.set()


class Kiosk:
    def __init__(self, host: str, port: int, *, allow_remote: bool = False,
                 tz: str = DEFAULT_TZ) -> None:
        check_tz(tz)
        self.tz = tz
        if not is_loopback(host):
            if not allow_remote:
                raise ValueError(f"kiosk: {host!r} is not loopback and remote access is off")
            log.warning("kiosk: the terminal and counter pages listen on %s:%d, reachable from"
                        " the network without a login (kiosk_allow_remote = true)", host, port)
        self._lock = threading.Lock()
        self._snapshot: dict[str, Any] = {"fridges": {}, "alerts": [], "uplink": {}}
        self._cond = threading.Condition()
        self._counter: dict[str, Any] = {}
        self._counter_version = 0
        self._closing = False
        self.requests: queue.Queue[CounterRequest] = queue.Queue(maxsize=64)
        kiosk = self

        class Handler(BaseHTTPRequestHandler):
            def _foreign(self) -> bool:
                """Refuse what a web page from elsewhere could make the terminal's browser
                send: a Host that is not this server (DNS rebinding) or another Origin."""
                if not kiosk.same_origin(self.headers.get("Host"), self.headers.get("Origin")):
                    self._json(403, {"error": "not this terminal's page"})
                    return True
                return False

            def _reader(self, query: dict[str, list[str]]) -> tuple[Translator, str | None]:
                """The reader's translator, and the `lang` to remember when asked now."""
                asked = query.get("lang", [None])[0]
                remembered = None
                with contextlib.suppress(CookieError):
                    jar = SimpleCookie(self.headers.get("Cookie") or "")
                    if "lang" in jar:
                        remembered = jar["lang"].value
                locale = negotiate(asked, remembered)
                return translator(locale), (locale if asked else None)

            def do_GET(self) -> None:
                if self._foreign():
                    return
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                t, remember = self._reader(query)
                if url.path in ("/", "/counter"):
                    name = "kiosk.html" if url.path == "/" else "counter.html"
                    body = render("edge", "templates", name, t, tz=kiosk.tz).encode()
                    self._send(200, "text/html; charset=utf-8", body, remember)
                elif url.path == "/api/status":
                    self._json(200, kiosk.status_view(t))
                elif url.path == "/api/counter":
                    try:
                        since = int(query.get("since", ["-1"])[0])
                    except ValueError:
                        since = -1
                    version, snap = kiosk.counter_snapshot(since, LONG_POLL_S)
                    self._json(200, {"version": version, **kiosk.counter_view(snap, t)})
                else:
                    self._json(404, {"error": t.gettext(N_("No such page."))})

            def do_POST(self) -> None:
                if self._foreign():
                    return
                path = urlsplit(self.path).path
                action = path.removeprefix("/api/counter/")
                if not path.startswith("/api/counter/") or action not in ACTIONS:
                    self.close_connection = True  # its body stays unread
                    self._json(404, {"error": "no such path"})
                    return
                # JSON needs a CORS preflight, which this server never answers, so only its
                # own page can post.
                if not http_limits.is_json(self.headers.get("Content-Type")):
                    self.close_connection = True  # its body stays unread
                    self._json(415, {"error": "send application/json"})
                    return
                try:
                    length = http_limits.body_length(self.headers.get("Transfer-Encoding"),
                                                     self.headers.get("Content-Length"),
                                                     MAX_BODY)
                except http_limits.Refused as exc:
                    self.close_connection = True
                    self._json(exc.status, {"error": exc.message})
                    return
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except (UnicodeDecodeError, json.JSONDecodeError):
                    self._json(400, {"error": "body is not JSON"})
                    return
                if not isinstance(body, dict):
                    self._json(400, {"error": "body must be a JSON object"})
                    return
                t, _ = self._reader(parse_qs(urlsplit(self.path).query))
                req = CounterRequest(action, body)
                try:
                    kiosk.requests.put_nowait(req)
                except queue.Full:
                    self._json(503, {"error": t.gettext(N_("The terminal is busy: scan "
                                                           "again."))})
                    return
                if not req.done.wait(ANSWER_S) or req.result is None:
                    self._json(503, {"error": t.gettext(N_("The terminal did not answer: "
                                                           "scan again."))})
                    return
                self._json(200, localize(req.result, t, kiosk.tz))

            def _json(self, status: int, body: dict[str, Any]) -> None:
                self._send(status, "application/json", json.dumps(body).encode())

            def _send(self, status: int, ctype: str, body: bytes,
                      remember: str | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                if remember is not None:  # ?lang= asked: the terminal keeps to it
                    self.send_header("Set-Cookie", f"lang={remember}; Path=/; "
                                     "Max-Age=31536000; SameSite=Strict")
                self.end_headers()
                # The page may have gone (reloaded) while its long poll waited.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the terminal polls every second: not worth a log line each

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="kiosk",
                                       daemon=True)

    def same_origin(self, host: str | None, origin: str | None) -> bool:
        """Whether a request names this server: Host is its own address (or localhost on
        its port), and an Origin, when the browser sends one, is that same host."""
        port = self.server.server_address[1]
        bound = str(self.server.server_address[0])
        names = {f"{bound}:{port}", f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"}
        return http_limits.same_origin(host, origin, hosts=names, schemes=("http",))

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self.thread.is_alive():  # shutdown() waits for serve_forever, so only if it runs
            self.server.shutdown()
        self.server.server_close()

    def update(self, snapshot: dict[str, Any]) -> None:
        with self._lock:
            self._snapshot = snapshot

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self._snapshot

    def status_view(self, t: Translator) -> dict[str, Any]:
        """The terminal page's data in `t`'s words: alert texts, temperatures."""
        snap = self.snapshot()
        fridges = {}
        for fid, f in (snap.get("fridges") or {}).items():
            view = dict(f)
            for key in ("product_c", "air_c"):
                c = f.get(key)
                view[key + "_text"] = None if c is None else t.temperature(c)
            fridges[fid] = view
        return {**snap, "fridges": fridges, "alerts": alerts_view(snap.get("alerts"), t, self.tz)}

    def counter_view(self, snap: dict[str, Any], t: Translator) -> dict[str, Any]:
        """A counter snapshot in `t`'s words, times in the store's zone."""
        view: dict[str, Any] = localize(snap, t, self.tz)
        view["alerts"] = alerts_view(snap.get("alerts"), t, self.tz)
        return view

    # ------------------------------------------------------------ the counter

    def update_counter(self, snapshot: dict[str, Any]) -> None:
        """Publish the counter's state; pages waiting for a change get it at once."""
        with self._cond:
            if snapshot == self._counter:
                return
            self._counter = snapshot
            self._counter_version += 1
            self._cond.notify_all()

    def counter_snapshot(self, since: int, timeout: float) -> tuple[int, dict[str, Any]]:
        """The counter's state once its version differs from `since` (or after `timeout`)."""
        with self._cond:
            self._cond.wait_for(lambda: self._counter_version != since or self._closing,
                                timeout)
            return self._counter_version, self._counter

    def take_requests(self) -> list[CounterRequest]:
        taken = []
        while True:
            try:
                taken.append(self.requests.get_nowait())
            except queue.Empty:
                return taken
