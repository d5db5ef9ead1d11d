"""The firmware's update code on a simulated device, for the firmware tests: the driver in
`serve` mode behind pipes (kill() is a power cut), the factory's key, images signed with it.
Shared by test_fw_update_cuts.py and test_fw_device_signature.py."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from firmware_bridge import fwimage
from hw_sim.micropython_host import micropython_binary

HERE = Path(__file__).parent
DRIVER = HERE / "fw_device_driver.py"
BRIDGE = Path(fwimage.__file__).parent
FW_DIR = BRIDGE / "firmware"
MICROPYTHON = micropython_binary()
INTERPRETERS = [pytest.param(MICROPYTHON, id="micropython", marks=pytest.mark.skipif(
    MICROPYTHON is None, reason="no micropython binary")), pytest.param(sys.executable,
                                                                          id="cpython")]
KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def make_image(version: tuple[int, int, int], size: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    files = {f"m{i}.mpy": bytes(rnd.randrange(256) for _ in range(size // 4)) for i in range(4)}
    return fwimage.sign(fwimage.pack(files, version, fwimage.HARDWARE, "0.1.0"), KEY)


def provision(root: Path) -> None:
    """The factory's fwkeys.json: the device installs only what KEY signed."""
    fwimage.write_device_keys(root, [KEY.public_key()])


def file_hashes(image: bytes) -> dict[str, str]:
    return {n: hashlib.sha256(b).hexdigest() for n, b in fwimage.parse(image).files().items()}


class Device:
    """The driver in `serve` mode behind pipes; kill() is a power cut."""

    def __init__(self, exe: str, root: Path) -> None:
        self.exe, self.root = exe, root
        provision(root)
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.exe, str(DRIVER), "serve", str(self.root), str(FW_DIR), str(BRIDGE)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.close()

    def close(self) -> None:
        assert self.proc is not None
        self.proc.wait(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(BrokenPipeError):
                    pipe.close()

    def write(self, data: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    def read(self) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        if not select.select([fd], [], [], 0.005)[0]:
            return b""
        return os.read(fd, 4096)
