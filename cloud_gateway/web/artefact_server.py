"""The cloud's artefact store over HTTPS: stores fetch the images an update command names.

A signed command is at most 4 KiB, so it carries the image's URL, size and SHA-256, never
the image (docs/firmware_update.md, "From the cloud"). The image is served here by its
SHA-256 (`GET /artefacts/<64 hex>`), content-addressed and immutable, over TLS with a
client certificate from the project's CA: only a store's (or a service's) certificate gets
a byte, and the CN is logged. Never plaintext: the server has no other socket. `Range:
bytes=N-` resumes a cut download (206).

The bytes are not trusted because of the channel: the terminal checks the SHA-256 the
signed command named, then the image's own Ed25519 signature, as for any image.
"""

from __future__ import annotations

import logging
import re
import ssl
import threading
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ..rollouts import artefact_path

log = logging.getLogger(__name__)

_PATH = re.compile(r"/artefacts/([0-9a-f]{64})")
_RANGE = re.compile(r"bytes=(\d+)-")
_BLOCK = 64 * 1024
FETCHES_KEPT = 1000


def server_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """TLS 1.2+, the server's certificate, client certificates required and checked
    against the project's CA (no system store)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class ArtefactServer:
    """A threaded HTTPS server on (host, port); port 0 picks a free one (`.port`)."""

    def __init__(self, directory: Path, ctx: ssl.SSLContext, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.directory = directory
        # (client CN, sha256, status), the newest FETCHES_KEPT: what the log says, to look at
        self.fetches: deque[tuple[str, str, int]] = deque(maxlen=FETCHES_KEPT)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                log.debug("artefacts: " + format, *args)

            def do_GET(self) -> None:
                server._get(self)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def url(self, sha256_hex: str) -> str:
        return f"https://{self.host}:{self.port}/artefacts/{sha256_hex}"

    def start(self) -> ArtefactServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="artefacts",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> ArtefactServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _get(self, h: BaseHTTPRequestHandler) -> None:
        cn = _common_name(h.connection)
        match = _PATH.fullmatch(h.path)
        path = artefact_path(self.directory, match.group(1)) if match else None
        if path is None or not path.is_file():
            self._note(cn, match.group(1) if match else h.path[:80], 404)
            h.send_error(HTTPStatus.NOT_FOUND)
            return
        size = path.stat().st_size
        start = 0
        ranged = _RANGE.fullmatch(h.headers.get("Range", ""))
        if ranged:
            start = int(ranged.group(1))
            if start >= size:
                self._note(cn, path.stem, 416)
                h.send_error(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                return
        status = 206 if ranged else 200
        h.send_response(status)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(size - start))
        if ranged:
            h.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        h.end_headers()
        with path.open("rb") as f:
            f.seek(start)
            while block := f.read(_BLOCK):
                h.wfile.write(block)
        self._note(cn, path.stem, status)

    def _note(self, cn: str, what: str, status: int) -> None:
        log.info("artefact %s for %s: %d", what, cn or "?", status)
        with self._lock:
            self.fetches.append((cn, what, status))


def _common_name(conn: object) -> str:
    """The client certificate's CN (the store id), "" if none."""
    peer = conn.getpeercert() if isinstance(conn, ssl.SSLSocket) else None
    for rdn in (peer or {}).get("subject", ()):
        for pair in rdn:
            if isinstance(pair, tuple) and pair[0] == "commonName":
                return str(pair[1])
    return ""
