"""An SMS gateway stand-in on loopback for the resident notice tests: Apprise's json:// URL
posts each message here (test_supply_scheduler, test_supply_receiving_mqtt)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Gateway:
    """An SMS gateway stand-in: Apprise's json:// posts here; the first `fail` get 500."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.got: list[tuple[str, dict[str, Any]]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                failing = outer.fail > 0
                outer.fail -= 1
                if not failing:
                    outer.got.append((self.path, json.loads(body)))
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
