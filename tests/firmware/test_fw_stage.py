"""The device's stager and slots in-process (CPython, the firmware's own modules): a late
install after a rollback installs nothing, the rolled-back image is refused, another one is
taken; a confirm counts only after the trial is healthy; refusals at the offer."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge import fwimage, fwmsg
from hw_sim.firmware_host import load_firmware

FW = load_firmware()
fwslots: Any = __import__("fwslots")
fwstage: Any = __import__("fwstage")
RUNNING = (1, 0, 0)
KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def image(version: tuple[int, int, int], fill: bytes) -> bytes:
    return fwimage.sign(fwimage.pack({"main.mpy": fill * 300, "codec.mpy": fill * 200},
                                     version, fwimage.HARDWARE, "0.1.0"), KEY)


def stager(root: str, running: tuple[int, int, int] = RUNNING, trial: bool = False) -> Any:
    """The device's stager on a flash provisioned (fwkeys.json) to trust KEY."""
    fwimage.write_device_keys(Path(root), [KEY.public_key()])
    return fwstage.Stager(root, running, trial)


def result(replies: list[tuple[int, bytes]]) -> str:
    return str(fwmsg.decode(*replies[0])["result"])  # type: ignore[index]


def send(st: Any, raw: bytes, version: tuple[int, int, int] | None = None
         ) -> list[tuple[int, bytes]]:
    """Offer, every chunk, install; `version` as offered (default: the manifest's)."""
    sha = hashlib.sha256(raw).digest()
    offered = version or fwimage.parse(raw).manifest.version
    out = st.handle(0, fwmsg.FW_OFFER, fwmsg.pack_offer(sha, len(raw), offered,
                                                        fwimage.HARDWARE))
    if result(out) != "accepted":
        return list(out)
    for at in range(0, len(raw), 240):
        st.handle(0, fwmsg.FW_CHUNK, fwmsg.pack_chunk(at, sha, raw[at : at + 240]))
    return list(st.handle(0, fwmsg.FW_COMMIT, fwmsg.pack_commit(sha, "install")))


def test_a_late_install_after_a_rollback_installs_nothing(tmp_path: Path) -> None:
    root = str(tmp_path)
    bad, good = image((1, 1, 0), b"\x01"), image((1, 1, 1), b"\x02")
    st = stager(root)
    assert result(send(st, bad)) == "installed"
    assert fwslots.select(root) == ("a", True)  # the trial boots ...
    assert fwslots.select(root) == ("", False)  # ... and never gets confirmed: rolled back
    st = stager(root)
    sha = hashlib.sha256(bad).digest()
    # the host's retry of the install, sent before it heard "installed"
    late = st.handle(0, fwmsg.FW_COMMIT, fwmsg.pack_commit(sha, "install"))
    assert result(late) == "unknown_image"
    assert json.loads((tmp_path / "fw" / "boot.json").read_text())["active"] == ""
    assert [result(r) for r in [st.boot_report(0)]] == ["rolled_back"]
    assert result(send(st, bad)) == "rolled_back"  # that one failed here
    assert result(send(st, good)) == "installed"  # another one is taken
    assert fwslots.select(root) == ("a", True)


def test_confirm_only_after_health_and_refusals_at_the_offer(tmp_path: Path) -> None:
    root = str(tmp_path)
    raw = image((1, 1, 0), b"\x03")
    sha = hashlib.sha256(raw).digest()
    st = stager(root)
    for hw, version, size, why in [("xd-fridge-9", (1, 1, 0), 10, "wrong_hardware"),
                                   (fwimage.HARDWARE, (1, 0, 0), 10, "downgrade"),
                                   (fwimage.HARDWARE, (0, 9, 9), 10, "downgrade"),
                                   (fwimage.HARDWARE, (1, 1, 0), fwstage.MAX_IMAGE + 1,
                                    "too_large")]:
        out = st.handle(0, fwmsg.FW_OFFER, fwmsg.pack_offer(sha, size, version, hw))
        assert result(out) == why
        assert not (tmp_path / "fw" / "stage" / "offer.json").exists()  # nothing changed
    assert result(send(st, raw)) == "installed"
    assert fwslots.select(root) == ("a", True)
    trial = stager(root, (1, 1, 0), True)
    confirm = fwmsg.pack_commit(sha, "confirm")
    assert result(trial.handle(0, fwmsg.FW_COMMIT, confirm)) == "busy"  # not healthy yet
    trial.healthy = True
    assert result(trial.handle(0, fwmsg.FW_COMMIT, confirm)) == "confirmed"
    assert fwslots.select(root) == ("a", False)  # for good
    assert fwslots.select(root) == ("a", False)


REFUSALS = {"bad_hash", "bad_manifest", "wrong_hardware", "downgrade", "device_bad_signature"}


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzzed_images_are_refused_before_any_switch(tmp_path_factory: Any,
                                                     data: st.DataObject) -> None:
    """The device's own checks on an image whose transfer hash matches (a terminal that
    does not check signatures, a bad build): any damage is a refusal with its reason and
    boot.json untouched, or (a change that leaves it consistent) an install of exactly it."""
    root = tmp_path_factory.mktemp("fuzz")
    raw = bytearray(image((1, 1, 0), b"\x05"))
    mlen = int.from_bytes(raw[5:7], "little")
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, 7 + mlen + 40))  # header, manifest, some body
        raw[at] = data.draw(st.integers(0, 255))
    st_ = stager(str(root))
    out = send(st_, bytes(raw), (1, 1, 0))
    got = result(out)
    pointer = root / "fw" / "boot.json"
    if got == "installed":  # consistent: the slot holds exactly the files it names
        mlen = int.from_bytes(raw[5:7], "little")  # as the device read it
        meta = json.loads(bytes(raw[7 : 7 + mlen]))
        files, at = {}, 7 + mlen
        for name, size in meta["files"]:
            files[name] = bytes(raw[at : at + size])
            at += size
        slot = root / "fw" / "a"
        assert {p.name: p.read_bytes() for p in slot.iterdir()} == files
    else:
        assert got in REFUSALS, got
        assert not pointer.exists()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 2**32), st.integers(0, 30), st.integers(0, 20), st.integers(0, 20),
       st.integers(1, 8))
def test_lost_duplicated_and_reordered_frames_are_harmless(
    tmp_path_factory: Any, seed: int, drop_pct: int, dup_pct: int, late_pct: int, window: int
) -> None:
    """The pusher and the stager over a channel that drops, duplicates and delays frames
    (both ways, each frame by chance): the device ends with exactly the image."""
    import random

    rnd = random.Random(seed)
    from firmware_bridge import codec
    from firmware_bridge.fwpush import Pusher

    root = tmp_path_factory.mktemp("chan")
    raw = fwimage.pack({"main.mpy": bytes(range(256)) * 20}, (1, 1, 0), fwimage.HARDWARE,
                       "0.1.0")  # 22 chunks
    dev = stager(str(root))
    pusher = Pusher(raw, (1, 1, 0), fwimage.HARDWARE, window, rto_s=1.0)
    now = 0.0
    to_dev: list[tuple[int, bytes]] = []
    to_host: list[tuple[int, bytes]] = []
    late: list[tuple[str, tuple[int, bytes]]] = []

    def carry(queue: list[tuple[int, bytes]], item: tuple[int, bytes], way: str) -> None:
        roll = rnd.randrange(100)
        f = ("drop" if roll < drop_pct else "dup" if roll < drop_pct + dup_pct
             else "late" if roll < drop_pct + dup_pct + late_pct else "ok")
        if f == "drop":
            return
        if f == "late":  # overtaken by what follows
            late.append((way, item))
            return
        queue.append(item)
        if f == "dup":
            queue.append(item)

    for kind, payload, _ in pusher.start(now):
        carry(to_dev, (kind, payload), "dev")
    for _ in range(20_000):
        if pusher.state not in ("offering", "sending"):
            break
        now += 0.01
        if not to_dev and not to_host and late:
            way, item = late.pop(0)
            (to_dev if way == "dev" else to_host).append(item)
        while to_dev:
            kind, payload = to_dev.pop(0)
            for reply in dev.handle(int(now * 1000), kind, payload):
                carry(to_host, reply, "host")
        while to_host:
            kind, payload = to_host.pop(0)
            frame = codec.Frame(codec.VERSION, kind, codec.REPLY, 0, payload)
            for k, p, _ in pusher.on_frame(now, frame):
                carry(to_dev, (k, p), "dev")
        for k, p, _ in pusher.tick(now):
            carry(to_dev, (k, p), "dev")
    assert pusher.state == "installing", (pusher.state, pusher.acked, len(raw))
    assert (root / "fw" / "stage" / "image.part").read_bytes() == raw


def test_a_push_taken_up_after_the_install_only_confirms(tmp_path: Path) -> None:
    """An agent restarted after the install (edge/update_jobs.py) sees the image's version in
    HELLO: its pusher only confirms. On trial, not healthy: busy, then confirmed once
    healthy; already confirmed before the restart: the device answers unknown_image (no
    trial) and the pusher knows that means confirmed."""
    from firmware_bridge import codec
    from firmware_bridge.fwpush import Pusher

    def deliver(dev: Any, pusher: Pusher, out: list[tuple[int, bytes, int]]) -> None:
        for kind, payload, _ in out:
            assert kind == fwmsg.FW_COMMIT  # nothing offered or sent again
            for reply in dev.handle(0, kind, payload):
                pusher.on_frame(0.0, codec.Frame(codec.VERSION, reply[0], codec.REPLY, 0,
                                                 reply[1]))

    root = str(tmp_path)
    raw = image((1, 1, 0), b"\x07")
    assert result(send(stager(root), raw)) == "installed"
    assert fwslots.select(root) == ("a", True)
    trial = stager(root, (1, 1, 0), True)
    pusher = Pusher(raw, (1, 1, 0), fwimage.HARDWARE, installed=True)
    deliver(trial, pusher, pusher.start(0.0))
    assert pusher.state == "trial" and not pusher.finished  # busy: not healthy yet
    trial.healthy = True
    deliver(trial, pusher, pusher.tick(5.0))
    assert (pusher.state, pusher.result) == ("done", "confirmed")
    # the confirm went through before the restart: the device runs it as its active image
    confirmed = stager(root, (1, 1, 0), False)
    again = Pusher(raw, (1, 1, 0), fwimage.HARDWARE, installed=True)
    deliver(confirmed, again, again.start(0.0))
    assert (again.state, again.result) == ("done", "confirmed")
    # a pusher not taken up after an install treats the same answer as a failure
    plain = Pusher(raw, (1, 1, 0), fwimage.HARDWARE)
    plain.state = "restarting"
    deliver(confirmed, plain, plain.tick(5.0))
    assert (plain.state, plain.result) == ("failed", "unknown_image")
