"""A firmware update under cuts, with the device's update code inside the real micropython
binary (and CPython): a power cut (SIGKILL) or a pulled cable at every 1 KiB of the transfer
and at random offsets, a power cut before each change to the flash during the install; the
device always boots one complete image, never a mix, and every transfer completes."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import codec, fwimage, fwmsg
from firmware_bridge.fwpush import Pusher
from tests.firmware.fw_device import (
    BRIDGE,
    DRIVER,
    FW_DIR,
    INTERPRETERS,
    MICROPYTHON,
    Device,
    file_hashes,
    make_image,
    provision,
)


def transfer(exe: str, root: Path, image: bytes, cuts: list[tuple[int, str]],
             window: int = 4) -> Pusher:
    """Push `image`; at each (offset, kind) in `cuts`, once the device holds that many bytes,
    cut: "power" kills and restarts it, "cable" drops every frame both ways for a while."""
    dev = Device(exe, root)
    pusher = Pusher(image, fwimage.parse(image).manifest.version, fwimage.HARDWARE, window,
                    rto_s=0.15)
    decoder, seq, pending = codec.FrameDecoder(), 0, sorted(cuts)
    cable_until = 0.0

    def send(items: list[tuple[int, bytes, int]]) -> None:
        nonlocal seq
        for kind, payload, flags in items:
            if time.monotonic() >= cable_until:
                dev.write(codec.encode_frame(kind, seq, payload, flags))
            seq += 1

    send(pusher.start(time.monotonic()))
    deadline = time.monotonic() + 120
    while pusher.state not in ("restarting", "failed") and time.monotonic() < deadline:
        if pending and pusher.state == "installing":
            # The transfer is over (the device said `complete` at once after a cut): a cut
            # now would fall in the install, where this driver's device, which exits after
            # it instead of restarting with a HELLO, could lose its only answer for good.
            # Cuts during the install: test_power_cut_at_each_step_of_the_swap_... below.
            pending.clear()
        if pending and pusher.acked >= pending[0][0]:
            _, kind = pending.pop(0)
            if kind == "power":
                dev.kill()
                decoder = codec.FrameDecoder()
                dev.start()
            else:
                cable_until = time.monotonic() + 0.3
        data = dev.read()
        if time.monotonic() < cable_until:
            data = b""
        for frame in decoder.feed(data):
            send(pusher.on_frame(time.monotonic(), frame))
        send(pusher.tick(time.monotonic()))
    assert dev.proc is not None
    dev.close()
    assert dev.proc.returncode == 75  # it restarts after the install
    return pusher


def boot(exe: str, root: Path) -> dict[str, object]:
    run = subprocess.run([exe, str(DRIVER), "select", str(root), str(FW_DIR), str(BRIDGE)],
                         capture_output=True, text=True, timeout=30, check=True)
    return dict(json.loads(run.stdout))


@pytest.mark.parametrize("exe", INTERPRETERS)
def test_cut_at_every_kib_resumes_and_completes(exe: str, tmp_path: Path) -> None:
    image = make_image((1, 1, 0), 8 * 1024, seed=1)
    cuts = [(k, "power" if (k // 1024) % 2 else "cable") for k in range(1024, len(image), 1024)]
    pusher = transfer(exe, tmp_path, image, cuts)
    assert pusher.state == "restarting" and pusher.acked == len(image)
    # resumed, not restarted: at most a window per cut was sent twice
    sent = pusher.chunks_sent * fwmsg.CHUNK_DATA
    assert sent < len(image) + len(cuts) * 5 * fwmsg.CHUNK_DATA
    booted = boot(exe, tmp_path)
    assert booted == {"slot": "a", "trial": True, "files": file_hashes(image)}
    # never confirmed: the next boot rolls back to the factory image
    assert boot(exe, tmp_path)["slot"] == ""


@settings(max_examples=6, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 12 * 1024), st.sampled_from(["power", "cable"])),
                max_size=3), st.integers(1, 8))
def test_random_cuts_and_windows_under_micropython(cuts: list[tuple[int, str]],
                                                   window: int) -> None:
    if MICROPYTHON is None:
        pytest.skip("no micropython binary")
    root = Path(os.environ.get("TMPDIR", "/tmp")) / f"fwcut-{os.getpid()}-{random.random()}"
    root.mkdir()
    try:
        image = make_image((1, 1, 0), 12 * 1024, seed=len(cuts) + window)
        pusher = transfer(MICROPYTHON, root, image, cuts, window)
        assert pusher.acked == len(image)
        assert boot(MICROPYTHON, root)["files"] == file_hashes(image)
    finally:
        shutil.rmtree(root)


def stage(root: Path, image: bytes, version: tuple[int, int, int] | None = None) -> None:
    """fw/stage as a complete transfer leaves it (offered as `version`: default the
    manifest's)."""
    provision(root)
    d = root / "fw" / "stage"
    d.mkdir(parents=True, exist_ok=True)
    offered = version or fwimage.parse(image).manifest.version
    (d / "offer.json").write_text(json.dumps({
        "sha256": hashlib.sha256(image).hexdigest(), "size": len(image),
        "version": list(offered), "hardware": fwimage.HARDWARE}))
    (d / "image.part").write_bytes(image)


def install(exe: str, root: Path, cut_at: int | None) -> str:
    """Install what fw/stage holds; with cut_at, SIGKILL just before that flash change.
    Returns the result, or "cut"."""
    args = [exe, str(DRIVER), "install", str(root), str(FW_DIR), str(BRIDGE)]
    with subprocess.Popen(args + ([str(cut_at)] if cut_at else []), stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() == "CUT":
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return "cut"
        proc.wait(timeout=30)
    assert line, "the driver printed nothing"
    return str(json.loads(line)["result"])


@pytest.mark.parametrize("exe", INTERPRETERS)
def test_power_cut_at_each_step_of_the_swap_boots_one_whole_image(exe: str,
                                                                    tmp_path: Path) -> None:
    old, new = make_image((1, 1, 0), 2048, seed=2), make_image((1, 2, 0), 2048, seed=3)
    steps_seen = 0
    for cut_at in range(1, 40):
        root = tmp_path / f"cut{cut_at}"
        root.mkdir()
        stage(root, old)  # 1.1.0 installed and confirmed in slot a
        assert install(exe, root, None) == "installed"
        assert boot(exe, root)["files"] == file_hashes(old)
        (root / "fw" / "boot.json").write_text(json.dumps({"active": "a"}))
        stage(root, new)
        outcome = install(exe, root, cut_at)
        first = boot(exe, root)
        if outcome == "cut":
            steps_seen += 1
            # the cut fell before the pointer moved, or after: one whole image either way
            assert first["files"] in (file_hashes(old), file_hashes(new)), cut_at
            if first["files"] == file_hashes(new):
                assert first["trial"] is True and boot(exe, root)["files"] == file_hashes(old)
            else:
                assert first == {"slot": "a", "trial": False, "files": file_hashes(old)}
        else:
            assert outcome == "installed"
            assert first == {"slot": "b", "trial": True, "files": file_hashes(new)}
            # no confirmation: the next boot is the old image again, whole
            assert boot(exe, root) == {"slot": "a", "trial": False, "files": file_hashes(old)}
            break
    assert steps_seen >= 6  # remove, mkdir, 4 file writes, pointer .tmp, rename at least


@pytest.mark.parametrize("exe", INTERPRETERS)
def test_damaged_images_are_refused_cleanly_on_the_device(exe: str, tmp_path: Path) -> None:
    """The device's own checks in each interpreter: seeded damage to the header and the
    manifest of a fully received image is a refusal with its reason, never a crash, and
    boot.json is never written."""
    rnd = random.Random(17)
    good = make_image((1, 1, 0), 1024, seed=4)
    mlen = int.from_bytes(good[5:7], "little")
    seen = set()
    for case in range(12):
        raw = bytearray(good)
        for _ in range(1 + case % 3):
            raw[rnd.randrange(0, 7 + mlen)] = rnd.randrange(256)
        root = tmp_path / f"case{case}"
        root.mkdir()
        stage(root, bytes(raw), (1, 1, 0))
        got = install(exe, root, None)
        seen.add(got)
        if got != "installed":  # a change that kept it consistent installs exactly it
            assert got in {"bad_hash", "bad_manifest", "wrong_hardware", "downgrade",
                           "device_bad_signature"}, got
            assert not (root / "fw" / "boot.json").exists()
    assert seen - {"installed"}  # the damage was seen
