"""What systemd does with the agent's sd_notify messages, played by the test: a datagram
socket collecting them (the `listener` fixture is in conftest.py)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path


class Listener:
    """What systemd does: a datagram socket collecting sd_notify messages."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import time

        while not self.done.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            with self.lock:
                self.messages.append((time.monotonic(), data.decode()))

    def said(self, text: str) -> list[float]:
        with self.lock:
            return [t for t, m in self.messages if text in m.split("\n")]

    def close(self) -> None:
        self.done.set()
        self.thread.join(5)
        self.sock.close()
