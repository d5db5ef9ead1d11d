"""The agent updating a fridge's firmware over the link it already holds (docs/firmware_update.md).

The device's reader thread drives the update between its other work: every frame it reads
goes to the job when it is an update frame (and HELLOs too), and after every read it writes
what the job has to send, numbered in the reader's own host sequence. So the readings, the
receipts and the commands keep flowing on the same link while the chunks go out; the link
is shared frame by frame, never handed over.

A client asks through the agent's tap socket (`{"op": "firmware", "device", "image"}`,
`xiaodian firmware push`); the answer is one JSON line of progress every half second and a
last one with `"done": true` and the result.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.store_records import NewEvent
from firmware_bridge import codec, fwimage, fwmsg
from firmware_bridge.fwpush import Out, Pusher
from xiaodian import __version__ as AGENT_VERSION

if TYPE_CHECKING:
    from edge.serial_link import FridgeReader

PROGRESS_EVERY_S = 0.5
# FW_RESULTs worth an event (to the outbox, to the cloud); `accepted` and `busy` are chatter.
EVENT_RESULTS_SKIPPED = frozenset({"accepted", "busy"})
DEADLINE_S = 900.0  # a transfer at 115200 baud, the trial (two heartbeats) and the confirm


class FirmwareJob:
    """One update of one device. `on_frame` and `take` run on the reader's thread only."""

    def __init__(self, pusher: Pusher, monotonic: Callable[[], float] = time.monotonic,
                 deadline_s: float = DEADLINE_S) -> None:
        self.pusher = pusher
        self.monotonic = monotonic
        self.deadline_s = deadline_s
        self.started = monotonic()
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._pending: list[Out] = pusher.start(self.started)

    def on_frame(self, frame: codec.Frame) -> None:
        with self._lock:
            self._pending += self.pusher.on_frame(self.monotonic(), frame)
            self._check()

    def take(self) -> list[Out]:
        """Frames to write now (GET_HELLO left out: the reader asks for HELLO itself)."""
        with self._lock:
            now = self.monotonic()
            if now - self.started > self.deadline_s and not self.pusher.finished:
                self.pusher.state, self.pusher.result = "failed", "timeout"
            out = self._pending + self.pusher.tick(now)
            self._pending = []
            self._check()
        return [o for o in out if o[0] != codec.GET_HELLO]

    def link_lost(self) -> None:
        """The port went: the device keeps what it wrote; offer again when it is back."""
        with self._lock:
            if self.pusher.state == "sending":
                self.pusher.state = "offering"

    def _check(self) -> None:
        if self.pusher.finished:
            self.done.set()

    def progress(self) -> dict[str, Any]:
        with self._lock:
            p = self.pusher
            return {"state": p.state, "acked": p.acked, "size": p.size,
                    "percent": 100 * p.acked // max(1, p.size), "result": p.result,
                    "version": ".".join(map(str, p.version))}


def result_event(device: str, frame: codec.Frame, wall: float, synced: bool, dev_boot: int,
                 seen: set[tuple[int, str, str]]) -> NewEvent | None:
    """A `firmware` event for an FW_RESULT the cloud should know (a rollback above all), or
    None: chatter, malformed, or already reported in this device boot (the controller says
    `rolled_back` again after every attach)."""
    msg = fwmsg.decode(frame.type, frame.payload)
    if msg is None or msg["type"] != "fw_result" or msg["result"] in EVENT_RESULTS_SKIPPED:
        return None
    key = (dev_boot, str(msg["result"]), bytes(msg["sha256"]).hex())
    if key in seen:
        return None
    seen.add(key)
    return NewEvent(device, "firmware", frame.seq, int(msg["dev_ms"]), wall, synced,
                    {"result": key[1], "sha256": key[2]}, dev_boot)


def start(reader: FridgeReader, raw: bytes, trusted: list[Ed25519PublicKey],
          hardware: str = fwimage.HARDWARE, window: int = 8,
          deadline_s: float = DEADLINE_S, resumed: bool = False) -> FirmwareJob:
    """Judge the image (ImageRefused) and hand the job to the device's reader. `resumed`:
    the job of an agent that restarted mid-update (edge/update_jobs.py); if the fridge
    already runs the image's version, the install happened and only the confirm is left."""
    hello = reader.hello
    if hello is None:
        raise ValueError(f"{reader.device}: no HELLO yet; is the fridge connected?")
    running = tuple(int(v) for v in hello["firmware"])
    installed = resumed and fwimage.parse(raw).manifest.version == running
    # min_agent judged against this agent's release: refused before a byte is offered.
    image = fwimage.judge(raw, trusted, hardware,
                          None if installed else (running[0], running[1], running[2]),
                          agent=AGENT_VERSION)
    current = reader.fw_job
    if current is not None and not current.done.is_set():
        raise ValueError(f"{reader.device}: an update is already running")
    job = FirmwareJob(Pusher(image.raw, image.manifest.version, image.manifest.hardware, window,
                             installed=installed), deadline_s=deadline_s)
    reader.fw_job = job
    return job


def serve(conn: socket.socket, request: Mapping[str, Any],
          readers: Mapping[str, FridgeReader], trusted: list[Ed25519PublicKey]) -> None:
    """The tap socket's `firmware` op: start, then progress lines until done."""

    def say(answer: dict[str, Any]) -> None:
        conn.sendall(json.dumps(answer).encode() + b"\n")

    device = str(request.get("device", ""))
    reader = readers.get(device)
    if reader is None:
        say({"ok": False, "error": f"unknown fridge {device!r}"})
        return
    if not trusted:
        say({"ok": False, "error": "this terminal trusts no firmware key ([firmware] keys)"})
        return
    try:
        raw = Path(str(request.get("image", ""))).read_bytes()
        deadline = min(float(request.get("deadline_s", DEADLINE_S)), DEADLINE_S)
        job = start(reader, raw, trusted, deadline_s=deadline)
    except fwimage.ImageRefused as exc:
        say({"ok": False, "error": str(exc), "refused": exc.reason})
        return
    except (OSError, ValueError) as exc:
        say({"ok": False, "error": str(exc)})
        return
    conn.settimeout(10.0)
    say({"ok": True, **job.progress()})
    while not job.done.wait(PROGRESS_EVERY_S):
        say({"ok": True, **job.progress()})
    say({"ok": True, "done": True, **job.progress()})
