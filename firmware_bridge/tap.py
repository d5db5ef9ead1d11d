"""The agent's tap: how a sniff or a capture reads a device's bytes through the running edge
agent instead of opening its serial port a second time.

A second reader on a serial port steals bytes from the first: each byte goes to whichever
`read()` comes first, so the agent sees broken frames (CRC errors, sequence gaps), drops the
link and raises false alerts. So the agent owns its ports (exclusively) and copies every
byte it reads and writes, with the direction, to whoever listens on a Unix socket it owns
(`DATA_DIR/tap/agent.sock`, in a 0700 directory). This module is the protocol of that
socket, shared by the agent (the server, `edge/tap.py`) and its clients:

- the client connects and sends one JSON line: `{"op": "status"}` or
  `{"op": "tap", "devices": ["fridge-1"]}` (an empty list: every device);
- the agent answers one JSON line: `{"ok": true, "pid": ..., "devices": {id: {"kind",
  "port", "baud"}}}` or `{"ok": false, "error": "..."}`; a status ends there;
- a tap then carries binary records until either side closes:
  `header(16) device data` with header = `>BBHIq`: direction, device-name length, 0,
  data length, wall time in nanoseconds.

Directions are the terminal's: IN came from the device, OUT went to it. LOST says that this
client fell behind and the agent dropped bytes for it (data: the count, u64): the agent never
waits for a listener, so a slow sniff loses its own copy, never the agent's link.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IN = 0
OUT = 1
LOST = 2
DIRECTION_NAMES = {IN: "in", OUT: "out", LOST: "lost"}
HEADER = struct.Struct(">BBHIq")
MAX_DATA = 1 << 16
MAX_ANSWER = 64 * 1024  # the agent's one-line answer
SOCKET_NAME = "agent.sock"


class TapError(Exception):
    """No agent to tap (not running, another data dir) or it refused the request."""


@dataclass(frozen=True)
class TapRecord:
    t_ns: int  # the terminal's wall clock when the bytes were read or written
    direction: int
    device: str
    data: bytes

    @property
    def lost(self) -> int:
        return int.from_bytes(self.data, "big") if self.direction == LOST else 0


def tap_path(data_dir: Path) -> Path:
    return data_dir / "tap" / SOCKET_NAME


def pack_record(direction: int, device: str, data: bytes, t_ns: int) -> bytes:
    name = device.encode()
    return HEADER.pack(direction, len(name), 0, len(data), t_ns) + name + data


class RecordReader:
    """Records from the byte stream, however it is cut (pure, incremental)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[TapRecord]:
        self._buf += data
        out: list[TapRecord] = []
        while len(self._buf) >= HEADER.size:
            direction, name_len, _, data_len, t_ns = HEADER.unpack_from(self._buf, 0)
            if data_len > MAX_DATA or direction not in DIRECTION_NAMES:
                raise TapError("the agent's tap stream is corrupt")
            end = HEADER.size + name_len + data_len
            if len(self._buf) < end:
                break
            name = bytes(self._buf[HEADER.size : HEADER.size + name_len]).decode()
            body = bytes(self._buf[HEADER.size + name_len : end])
            del self._buf[:end]
            out.append(TapRecord(t_ns, direction, name, body))
        return out


def _connect(
    path: Path, request: dict[str, Any], timeout: float
) -> tuple[socket.socket, dict[str, Any], bytes]:
    """Connect, send the request line, read the answer line; the socket, the answer and any
    bytes read past it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except FileNotFoundError:
        sock.close()
        raise TapError(f"no agent tap at {path} (is `xiaodian edge run` running?)") from None
    except ConnectionRefusedError:
        sock.close()
        raise TapError(f"the agent tap at {path} does not answer (agent stopped?)") from None
    except PermissionError:
        sock.close()
        raise TapError(f"no permission to use {path} (run as the agent's user)") from None
    try:
        sock.sendall(json.dumps(request).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                raise TapError("the agent closed the tap without answering")
            buf += chunk
            if len(buf) > MAX_ANSWER:
                raise TapError("the agent's answer is too long")
    except OSError as exc:
        sock.close()
        raise TapError(f"the agent tap at {path}: {exc}") from None
    except TapError:
        sock.close()
        raise
    line, rest = buf.split(b"\n", 1)
    answer = json.loads(line)
    if not answer.get("ok"):
        sock.close()
        raise TapError(str(answer.get("error", "refused")))
    return sock, answer, rest


def status(path: Path, timeout: float = 2.0) -> dict[str, Any]:
    """The agent's answer to a status request: its pid and devices."""
    sock, answer, _ = _connect(path, {"op": "status"}, timeout)
    sock.close()
    return answer


def open_tap(
    path: Path,
    devices: Sequence[str],
    seconds: float | None,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[dict[str, Any], Iterator[TapRecord]]:
    """The agent's answer (its devices) and the records of `devices` until `seconds` pass
    (or forever), or the agent goes away."""
    sock, answer, rest = _connect(path, {"op": "tap", "devices": list(devices)}, 5.0)
    deadline = None if seconds is None else clock() + seconds

    def records() -> Iterator[TapRecord]:
        reader = RecordReader()
        try:
            yield from reader.feed(rest)
            while deadline is None or clock() < deadline:
                left = 0.5 if deadline is None else max(0.01, min(0.5, deadline - clock()))
                sock.settimeout(left)
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    return  # the agent stopped
                yield from reader.feed(chunk)
        finally:
            sock.close()

    return answer, records()


def firmware_progress(path: Path, device: str, image: Path,
                      deadline_s: float | None = None) -> Iterator[dict[str, Any]]:
    """Ask the agent to update `device` with the signed image at `image` (a path the agent
    can read); yield its progress lines, the last with "done": true. TapError on refusal.
    `deadline_s`: the agent gives up (result "timeout") after this (at most its own 900 s)."""
    request: dict[str, Any] = {"op": "firmware", "device": device, "image": str(image.resolve())}
    if deadline_s is not None:
        request["deadline_s"] = deadline_s
    sock, answer, rest = _connect(path, request, 30.0)
    try:
        yield answer
        buf = rest
        sock.settimeout(30.0)  # a line every 0.5 s while it runs
        while True:
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                item = json.loads(line)
                yield item
                if item.get("done"):
                    return
            chunk = sock.recv(4096)
            if not chunk:
                raise TapError("the agent closed the connection before the update ended")
            buf += chunk
    finally:
        sock.close()
