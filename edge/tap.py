"""The agent's side of the tap (protocol: `firmware_bridge/tap.py`): every byte a port reader
reads or writes is copied, with its direction and time, to the sniffs and captures that
listen on the agent's own Unix socket, so none of them ever opens a port the agent holds.

`tee()` runs on the serial reader threads and must never slow them down: with nobody
listening it is one attribute test; with listeners it appends to each one's bounded buffer
and returns. A listener that does not keep up loses bytes (told to it as a LOST record),
the agent never waits for it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from firmware_bridge import tap as proto

log = logging.getLogger(__name__)

BUFFER_BYTES = 1 << 20  # per listener; more waiting than this is dropped for it
MAX_LISTENERS = 8
REQUEST_TIMEOUT_S = 2.0
SEND_TIMEOUT_S = 5.0  # a listener that takes nothing for this long is closed


class _Listener:
    """One connected sniff or capture: its devices and the bytes waiting for it."""

    def __init__(self, devices: frozenset[str] | None) -> None:
        self.devices = devices  # None: every device
        self.cond = threading.Condition()
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.lost = 0
        self.closed = False

    def offer(self, device: str, record: bytes, data_len: int) -> None:
        if self.devices is not None and device not in self.devices:
            return
        with self.cond:
            if self.size + len(record) > BUFFER_BYTES:
                self.lost += data_len
                return
            self.chunks.append(record)
            self.size += len(record)
            self.cond.notify()

    def take(self, timeout: float) -> tuple[list[bytes], int]:
        with self.cond:
            if not self.chunks and not self.lost:
                self.cond.wait(timeout)
            chunks, self.chunks, self.size = list(self.chunks), deque(), 0
            lost, self.lost = self.lost, 0
        return chunks, lost


class Tap:
    """The socket server plus `tee()`; `devices` describes each device for the listeners."""

    def __init__(
        self,
        path: Path,
        devices: Mapping[str, Mapping[str, Any]],
        *,
        wall_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.path = path
        self.devices = {d: dict(info) for d, info in devices.items()}
        self.wall_ns = wall_ns
        self._listeners: tuple[_Listener, ...] = ()  # replaced whole: tee reads it unlocked
        # More requests the agent answers on this socket: op name -> handler(conn, request)
        # (`firmware`: edge/firmware_push.py). The handler owns the connection until it returns.
        self.ops: dict[str, Callable[[socket.socket, dict[str, Any]], None]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ reader threads

    def describe(self, device: str, **info: Any) -> None:
        """More about a device for new listeners (its HELLO: a sniff that starts later
        still knows which firmware it listens to)."""
        self.devices = {**self.devices, device: {**self.devices.get(device, {}), **info}}

    def tee(self, device: str, direction: int, data: bytes) -> None:
        listeners = self._listeners
        if not listeners or not data:
            return
        t_ns = self.wall_ns()
        for i in range(0, len(data), proto.MAX_DATA):
            part = data[i : i + proto.MAX_DATA]
            record = proto.pack_record(direction, device, part, t_ns)
            for listener in listeners:
                listener.offer(device, record, len(part))

    # ------------------------------------------------------------ serving

    def start(self) -> bool:
        """Listen; False (logged) if another live agent already serves this path."""
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)  # only the agent's user may sniff the fridges
        if self.path.exists() or self.path.is_symlink():
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                log.error("tap: %s exists and is not a socket; no tap", self.path)
                return False
            try:
                proto.status(self.path, timeout=1.0)
                log.error("tap: another agent serves %s; no tap here", self.path)
                return False
            except proto.TapError:
                self.path.unlink()  # left by an agent that did not stop cleanly
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            server.bind(str(self.path))  # at most 107 bytes of path
            os.chmod(self.path, 0o600)
            server.listen(MAX_LISTENERS)
        except OSError as exc:
            server.close()
            log.error("tap: cannot listen on %s: %s; sniffs and captures will not work",
                      self.path, exc)
            return False
        server.settimeout(0.5)
        self._server = server
        self._thread = threading.Thread(target=self._accept, name="tap", daemon=True)
        self._thread.start()
        return True

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(OSError):
                self.path.unlink()
        for listener in self._listeners:
            with listener.cond:
                listener.closed = True
                listener.cond.notify()

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="tap-client",
                             daemon=True).start()

    def _answer(self, conn: socket.socket, answer: dict[str, Any]) -> None:
        conn.sendall(json.dumps(answer).encode() + b"\n")

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(REQUEST_TIMEOUT_S)
                request = json.loads(conn.makefile("rb").readline(4096))
                if not isinstance(request, dict):
                    raise ValueError("not an object")
            except (OSError, ValueError) as exc:
                with contextlib.suppress(OSError):
                    self._answer(conn, {"ok": False, "error": f"bad request: {exc}"})
                return
            base = {"ok": True, "pid": os.getpid(), "devices": self.devices}
            try:
                if request.get("op") == "status":
                    self._answer(conn, base)
                elif request.get("op") == "tap":
                    self._stream(conn, request, base)
                elif str(request.get("op")) in self.ops:
                    self.ops[str(request["op"])](conn, request)
                else:
                    self._answer(conn, {"ok": False, "error": "op: status or tap"})
            except OSError as exc:
                log.info("tap: listener gone: %s", exc)

    def _stream(self, conn: socket.socket, request: dict[str, Any], base: dict[str, Any]) -> None:
        wanted = request.get("devices") or []
        unknown = sorted(str(d) for d in wanted if d not in self.devices)
        if unknown:
            known = ", ".join(sorted(self.devices)) or "none"
            self._answer(conn, {"ok": False,
                                "error": f"unknown device {unknown[0]} (this agent: {known})"})
            return
        with self._lock:
            if len(self._listeners) >= MAX_LISTENERS:
                self._answer(conn, {"ok": False, "error": "too many sniffs and captures"})
                return
            listener = _Listener(frozenset(wanted) if wanted else None)
            self._listeners = (*self._listeners, listener)
        log.info("tap: listener for %s", ", ".join(wanted) or "every device")
        try:
            self._answer(conn, base)
            conn.settimeout(SEND_TIMEOUT_S)
            while not self._stop.is_set() and not listener.closed:
                chunks, lost = listener.take(0.5)
                if lost:
                    chunks.append(proto.pack_record(proto.LOST, "", lost.to_bytes(8, "big"),
                                                    self.wall_ns()))
                if chunks:
                    conn.sendall(b"".join(chunks))
                elif _peer_closed(conn):
                    return
        finally:
            with self._lock:
                self._listeners = tuple(x for x in self._listeners if x is not listener)
            log.info("tap: listener left")


def _peer_closed(conn: socket.socket) -> bool:
    """Whether the listener hung up (a sniff stopped with ^C) while nothing was sent."""
    try:
        conn.setblocking(False)
        try:
            return conn.recv(1, socket.MSG_PEEK) == b""
        finally:
            conn.setblocking(True)
            conn.settimeout(SEND_TIMEOUT_S)
    except BlockingIOError:
        return False
    except OSError:
        return True
