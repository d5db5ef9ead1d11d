"""The terminal's own page: fridges, active alerts, and the buzzer, with or without network.

Served on loopback by the agent. It reads only a snapshot the agent's main thread publishes
(`Kiosk.update`), so the HTTP threads never touch SQLite or the MQTT client.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any


class Kiosk:
    def __init__(self, host: str, port: int) -> None:
        self._lock = threading.Lock()
        self._snapshot: dict[str, Any] = {"fridges": {}, "alerts": [], "uplink": {}}
        page = resources.files("edge").joinpath("static/kiosk.html").read_bytes()
        kiosk = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/":
                    self._send(200, "text/html; charset=utf-8", page)
                elif self.path == "/api/status":
                    self._send(200, "application/json", json.dumps(kiosk.snapshot()).encode())
                else:
                    self._send(404, "application/json", b'{"error": "no such path"}')

            def _send(self, status: int, ctype: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the terminal polls every second: not worth a log line each

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="kiosk",
                                       daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        if self.thread.is_alive():  # shutdown() waits for serve_forever, so only if it runs
            self.server.shutdown()
        self.server.server_close()

    def update(self, snapshot: dict[str, Any]) -> None:
        with self._lock:
            self._snapshot = snapshot

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self._snapshot
