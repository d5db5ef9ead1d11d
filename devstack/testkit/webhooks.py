"""A loopback webhook receiver checking the cloud's signatures, the [alerts] TOML making it
a store owner's only channel, and fault windows from the simulator's ground truth: for the
alert tests and `bench.alert_latency`."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Received:
    at: float  # time.time() when the request arrived
    delivery: int  # X-Xiaodian-Delivery
    body: dict[str, Any]


class WebhookReceiver:
    """A loopback HTTP server taking signed webhook POSTs (verified on its own, not with
    the sender's code); a bad or missing signature is refused with 401 and counted."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.received: list[Received] = []
        self.refused = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                at = time.time()
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                ok = receiver._verify(raw, self.headers.get("X-Xiaodian-Signature"))
                body: dict[str, Any] = json.loads(raw) if ok else {}
                ok = ok and str(body.get("sent_at")) == self.headers.get("X-Xiaodian-Timestamp")
                with receiver._lock:
                    if ok:
                        delivery = int(self.headers.get("X-Xiaodian-Delivery", "0"))
                        receiver.received.append(Received(at, delivery, body))
                    else:
                        receiver.refused += 1
                self.send_response(204 if ok else 401)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _verify(self, raw: bytes, header: str | None) -> bool:
        want = "sha256=" + hmac.new(self.secret, raw, hashlib.sha256).hexdigest()
        return header is not None and hmac.compare_digest(want, header)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def wait(self, done: Callable[[list[Received]], bool], timeout: float) -> list[Received]:
        """Poll until `done(received so far)` or the timeout; returns what arrived."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.snapshot()
            if done(got) or time.monotonic() >= deadline:
                return got
            time.sleep(0.05)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def alerts_toml(secrets_dir: Path, store: str, webhook_url: str, secret: bytes) -> str:
    """An [alerts] table making `webhook_url` the store owner's only channel (secrets are
    written to `secrets_dir`, mode 0600). The escalation tick runs every 0.5 s; a batch that
    changes an alert ticks at once anyway."""
    secrets_dir.mkdir(parents=True, exist_ok=True)
    files = {"ack-link": os.urandom(24).hex().encode(), "owner-webhook": secret}
    for name, value in files.items():
        path = secrets_dir / name
        path.write_bytes(value)
        path.chmod(0o600)
    return (
        f"[alerts]\nlink_secret_file = {json.dumps(str(secrets_dir / 'ack-link'))}\n"
        "tick_interval_s = 0.5\nretry_initial_s = 0.5\nretry_max_s = 2.0\n"
        f"[[alerts.stores]]\nstore = {json.dumps(store)}\n"
        f'[[alerts.stores.contacts]]\nname = "owner"\nrole = "owner"\n'
        f"webhook_url = {json.dumps(webhook_url)}\n"
        f"webhook_secret_file = {json.dumps(str(secrets_dir / 'owner-webhook'))}\n"
    )


def truth_faults(truth: Path, fault: str) -> dict[str, list[tuple[float, float | None]]]:
    """Per device, the (start wall, end wall or None) of each window of `fault`, in order."""
    out: dict[str, list[tuple[float, float | None]]] = {}
    if not truth.exists():
        return out
    for line in truth.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # the simulator may be half-way through a line
        if rec.get("kind") != "fault" or rec.get("fault") != fault:
            continue
        windows = out.setdefault(rec["device"], [])
        if rec["state"] == "start":
            windows.append((float(rec["wall"]), None))
        elif rec["state"] == "end" and windows and windows[-1][1] is None:
            windows[-1] = (windows[-1][0], float(rec["wall"]))
    return out
