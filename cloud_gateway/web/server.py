"""`HttpServer`: the API served by uvicorn on a thread of the `cloud run` process.

The socket is bound here, before the thread starts, so a busy port is an OSError for the
caller and port 0's choice is known at once (`port`, `url`). uvicorn runs its own event
loop on the thread; it installs no signal handlers there (the process's own handlers stop
the worker), and `close()` asks it to exit and waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from . import core
from .app import create_app
from .context import Api

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 5  # requests still running at close() get this long
START_TIMEOUT_S = 10.0
MAX_HEAD_BYTES = 16 * 1024  # request line and headers; h11 answers 400 beyond


class HttpServer:
    """The API on `host:port` (port 0: a free one), served from a background thread."""

    def __init__(self, api: Api, host: str, port: int) -> None:
        app = create_app(api)  # first: a refusal to start (no chart library) leaks no socket
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.create_server((host, port), family=family)
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            app, http=_Protocol, loop="asyncio", ws="none", lifespan="off",
            log_config=None, access_log=False, server_header=False,
            headers=[("Server", "xiaodian-cloud")],
            # The client address is the peer's: no proxy in front is trusted to rename it
            # (commands and orders record it as who made them).
            proxy_headers=False,
            timeout_keep_alive=int(core.REQUEST_TIMEOUT_S),
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
            h11_max_incomplete_event_size=MAX_HEAD_BYTES)
        self._server = uvicorn.Server(config)
        # Its start and stop lines speak of a "server process" that is a thread of ours;
        # start() logs where it listens. Its warnings (a malformed request...) still show.
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        self._thread = threading.Thread(target=self._server.run, name="http-api",
                                        kwargs={"sockets": [self._sock]}, daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.close()
                raise OSError(f"HTTP server on {self.url} did not start (see the log)")
            time.sleep(0.005)
        log.info("HTTP API and dashboard on %s", self.url)

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join()
        self._sock.close()

    def __enter__(self) -> HttpServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 (h11) protocol with a deadline on each request head.

    uvicorn times out a keep-alive connection only while nothing arrives: a client sending
    half a request head, or trickling a body nobody reads, would keep its connection (and
    its slot) forever. From the connection's start, and from each answer, the next head
    must be complete within REQUEST_TIMEOUT_S; the handler's own time is not counted.
    """

    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        scope = self.scope
        super().data_received(data)
        if self.scope is not scope:  # a whole head arrived: a new request has begun
            self._disarm()

    def on_response_complete(self) -> None:
        scope = self.scope
        super().on_response_complete()
        if self.scope is scope:  # no pipelined request started: wait for the next one
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self._deadline = self.loop.call_later(core.REQUEST_TIMEOUT_S, self.transport.close)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
