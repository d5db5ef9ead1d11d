"""The terminal's own pages on loopback: fridges, alerts and the buzzer (`/`), and the
counter (`/counter`: scans, pickups, deliveries, expiring stock), with or without network.

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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from xiaodian import http_limits

from .config import is_loopback

log = logging.getLogger(__name__)

MAX_BODY = 8192
ANSWER_S = 10.0  # a request the agent has not answered by then gets "busy" (503)
LONG_POLL_S = 15.0
ACTIONS = ("scan", "mode", "confirm", "abort", "delivery", "adjust", "waste")


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
    def __init__(self, host: str, port: int, *, allow_remote: bool = False) -> None:
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
        static = resources.files("edge").joinpath("static")
        page = static.joinpath("kiosk.html").read_bytes()
        counter_page = static.joinpath("counter.html").read_bytes()
        kiosk = self

        class Handler(BaseHTTPRequestHandler):
            def _foreign(self) -> bool:
                """Refuse what a web page from elsewhere could make the terminal's browser
                send: a Host that is not this server (DNS rebinding) or another Origin."""
                if not kiosk.same_origin(self.headers.get("Host"), self.headers.get("Origin")):
                    self._json(403, {"error": "not this terminal's page"})
                    return True
                return False

            def do_GET(self) -> None:
                if self._foreign():
                    return
                url = urlsplit(self.path)
                if url.path == "/":
                    self._send(200, "text/html; charset=utf-8", page)
                elif url.path == "/counter":
                    self._send(200, "text/html; charset=utf-8", counter_page)
                elif url.path == "/api/status":
                    self._send(200, "application/json", json.dumps(kiosk.snapshot()).encode())
                elif url.path == "/api/counter":
                    try:
                        since = int(parse_qs(url.query).get("since", ["-1"])[0])
                    except ValueError:
                        since = -1
                    version, snap = kiosk.counter_snapshot(since, LONG_POLL_S)
                    self._json(200, {"version": version, **snap})
                else:
                    self._json(404, {"error": "no such path"})

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
                req = CounterRequest(action, body)
                try:
                    kiosk.requests.put_nowait(req)
                except queue.Full:
                    self._json(503, {"error": "the terminal is busy: scan again"})
                    return
                if not req.done.wait(ANSWER_S) or req.result is None:
                    self._json(503, {"error": "the terminal did not answer: scan again"})
                    return
                self._json(200, req.result)

            def _json(self, status: int, body: dict[str, Any]) -> None:
                self._send(status, "application/json", json.dumps(body).encode())

            def _send(self, status: int, ctype: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
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
