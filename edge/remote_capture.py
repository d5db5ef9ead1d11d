"""A capture the cloud asked for with a signed `capture` command.

It reads through the agent's own tap like any local capture (never the port), in a thread
of its own so the agent's loop only polls it. Bounded in time by the command (at most
`xiaodian.wire.commands` allows) and in size so that its answer, the pcapng in base64 inside
the JSON result, stays under the cloud's limit for a command result. The file is also kept
on the terminal (DATA_DIR/captures, 0700; the newest KEEP files) for a technician on site.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import logging
import os
import threading
from pathlib import Path
from typing import Any

from firmware_bridge.capture import Capture
from firmware_bridge.tap import TapError, open_tap, tap_path
from xiaodian.wire.commands import MAX_RESULT_BYTES

log = logging.getLogger(__name__)

# base64 grows by 4/3 and the result has a few hundred bytes of its own.
MAX_CAPTURE_BYTES = (MAX_RESULT_BYTES - 1024) * 3 // 4
KEEP = 10


class RemoteCapture(threading.Thread):
    def __init__(self, data_dir: Path, command_id: str, devices: list[str],
                 seconds: float) -> None:
        super().__init__(name=f"capture-{command_id[:8]}", daemon=True)
        self.data_dir = data_dir
        self.command_id = command_id
        self.devices = devices
        self.seconds = seconds
        self.done = threading.Event()
        self.outcome = ""  # ok | no_tap | failed
        self.result: dict[str, Any] = {}

    def run(self) -> None:
        try:
            self.result = self._capture()
            self.outcome = "ok"
        except TapError as exc:
            self.outcome, self.result = "no_tap", {"detail": str(exc)}
        except Exception as exc:  # an answer is owed whatever happened
            log.exception("capture %s failed", self.command_id)
            self.outcome, self.result = "failed", {"detail": f"{type(exc).__name__}: {exc}"}
        finally:
            self.done.set()

    def _capture(self) -> dict[str, Any]:
        answer, records = open_tap(tap_path(self.data_dir), self.devices, self.seconds)
        kinds = {d: str(info.get("kind", "fridge")) for d, info in answer["devices"].items()}
        buf = io.BytesIO()
        capture = Capture(buf, kinds, MAX_CAPTURE_BYTES)
        try:
            capture.add_all(records)
        finally:
            summary = capture.close()
        data = buf.getvalue()
        name = f"{self.command_id}.pcapng"
        self._keep(name, data)
        return {"capture": {
            **summary.as_dict(), "seconds": self.seconds, "file": name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "pcapng_b64": base64.b64encode(data).decode("ascii")}}

    def _keep(self, name: str, data: bytes) -> None:
        directory = self.data_dir / "captures"
        directory.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        old = sorted(directory.glob("*.pcapng"), key=lambda p: p.stat().st_mtime)[:-KEEP]
        for path in old:
            with contextlib.suppress(OSError):
                path.unlink()
