"""A loopback webhook endpoint for the cloud's alert tests: it checks each notice's
signature with the cloud's own `channels.verify` (devstack.testkit.webhooks has one that
checks it independently, for whole stores) and can answer 500 to the first few."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cloud_gateway.alerts import channels

SECRET = b"w" * 40  # every contact's webhook secret in these tests


class Receiver:
    """A webhook endpoint: checks the signature, answers 500 to the first `fail` requests."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.requests: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.cond = threading.Condition()
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = channels.verify(SECRET, body, self.headers.get(channels.SIGNATURE_HEADER))
                with outer.cond:
                    if not ok:
                        outer.bad_signatures += 1
                    failing = outer.fail > 0
                    outer.fail -= 1
                    if not failing:
                        doc = json.loads(body)
                        assert str(doc["sent_at"]) == self.headers[channels.TIMESTAMP_HEADER]
                        outer.requests.append(doc)
                    outer.cond.notify_all()
                self.send_response(500 if failing else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def wait(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.requests) >= n, timeout), self.requests
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
