"""`xiaodian serial decode|sniff|capture`: the terminal's serial tools.

Sniffs and captures of a port the agent serves go through the agent's tap (`edge/tap.py`):
opening the port a second time would take bytes from the agent (it then counts CRC errors
and lost frames, drops the link and raises false alerts). Without a running agent, `sniff`
reads the port itself, and only if no other process has it open.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from edge import config as edge_config
from edge.errors import EdgeError

CONFIG_ENV = "XIAODIAN_EDGE_CONFIG"


def register(sub: Any) -> None:
    serial = sub.add_parser("serial", help="fridge serial protocol tools: decode, sniff, capture")
    cmds = serial.add_subparsers(dest="serial_command", required=True, metavar="SUBCOMMAND")

    decode = cmds.add_parser("decode", help="decode a captured byte stream into JSON lines",
                             description='Print one JSON line per frame, then {"counters": ...}.')
    decode.add_argument("file", metavar="FILE", help="raw byte stream, or - for standard input")
    decode.set_defaults(func=_decode)

    sniff = cmds.add_parser(
        "sniff", help="show a fridge's frames live, with line counters",
        description="With --config (or $XIAODIAN_EDGE_CONFIG) and the agent running: both "
        "directions through the agent, which keeps its port. Otherwise PORT is opened "
        "read-only, and only if no other process has it open. One line per frame, the "
        "counters every 10 s and at the end. Exit status 2: the port is held by another "
        "process or the device is not configured.")
    sniff.add_argument("target", metavar="DEVICE|PORT",
                       help="a device id of the edge config, or a serial port path")
    _config_arg(sniff)
    sniff.add_argument("--baud", type=int, default=115200, help="default 115200 (no agent)")
    sniff.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds")
    sniff.add_argument("--hello", action="store_true",
                       help="send GET_HELLO after opening (no agent only)")
    sniff.add_argument("--json", action="store_true", help="JSON lines instead of text")
    sniff.set_defaults(func=_sniff)

    capture = cmds.add_parser(
        "capture", help="record devices' frames through the agent into a pcapng file",
        description="Bounded in time and size; open the file with Wireshark or tshark and "
        "the dissector firmware_bridge/wireshark/xiaodian_serial.lua (docs/protocol.md, "
        "§9). Needs the running agent.")
    capture.add_argument("devices", metavar="DEVICE", nargs="*",
                         help="device ids (default: every device)")
    _config_arg(capture)
    capture.add_argument("--out", required=True, type=Path, metavar="FILE.pcapng")
    capture.add_argument("--seconds", type=float, default=60.0, help="default 60, at most 3600")
    capture.add_argument("--max-bytes", type=int, default=4 * 1024 * 1024,
                         help="stop when the file reaches this size (default 4 MiB)")
    capture.set_defaults(func=_capture)


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=os.environ.get(CONFIG_ENV) or None,
                   help=f"edge TOML file (default ${CONFIG_ENV})")


def _say(message: str) -> None:
    print(f"xiaodian serial: {message}", file=sys.stderr)


def _decode(args: argparse.Namespace) -> int:
    from firmware_bridge.cli import decode_command

    return decode_command(args)


def resolve_device(cfg: edge_config.EdgeConfig, target: str) -> str | None:
    """The configured device named `target`, or whose port is `target` (same file)."""
    ports = {f.id: f.port for f in cfg.fridges} | {s.id: s.port for s in cfg.scanners}
    if target in ports:
        return target
    real = os.path.realpath(target)
    for device, port in ports.items():
        if os.path.realpath(port) == real:
            return device
    return None


def _sniff(args: argparse.Namespace) -> int:
    from firmware_bridge import sniff as sniffing
    from firmware_bridge.tap import TapError, tap_path

    port = args.target
    if args.config is not None:
        cfg = edge_config.load(args.config)
        device = resolve_device(cfg, args.target)
        if device is None:
            _say(f"{args.target} is neither a device nor a port of {args.config}"
                 f" (devices: {', '.join(cfg.device_ids) or 'none'})")
            return 2
        try:
            with contextlib.suppress(KeyboardInterrupt):
                sniffing.sniff_agent(tap_path(cfg.edge.data_dir), device, sys.stdout,
                                     args.seconds, args.json)
            return 0
        except TapError as exc:
            ports = {f.id: f.port for f in cfg.fridges} | {s.id: s.port for s in cfg.scanners}
            port = str(ports[device])
            _say(f"{exc}; reading {port} directly")
    try:
        with contextlib.suppress(KeyboardInterrupt):
            sniffing.sniff(port, sys.stdout, args.baud, args.seconds, args.hello, args.json)
    except sniffing.PortBusy as exc:
        _say(f"refusing to open it: {exc}. A second reader takes bytes from the first. If "
             "that is the edge agent, sniff through it: xiaodian serial sniff --config "
             "EDGE.toml DEVICE")
        return 2
    return 0


def _capture(args: argparse.Namespace) -> int:
    from firmware_bridge.capture import check_bounds
    from firmware_bridge.tap import TapError, open_tap, tap_path

    if args.config is None:
        _say(f"capture: --config (or ${CONFIG_ENV}) is needed: captures go through the agent")
        return 2
    try:
        check_bounds(args.seconds, args.max_bytes)
    except ValueError as exc:
        _say(f"capture: {exc}")
        return 2
    cfg = edge_config.load(args.config)
    unknown = [d for d in args.devices if d not in cfg.device_ids]
    if unknown:
        _say(f"capture: unknown device {unknown[0]} (devices: {', '.join(cfg.device_ids)})")
        return 2
    try:
        answer, records = open_tap(tap_path(cfg.edge.data_dir), args.devices, args.seconds)
    except TapError as exc:
        _say(f"capture: {exc}")
        return 1
    kinds = {d: str(info.get("kind", "fridge")) for d, info in answer["devices"].items()}
    try:
        summary = write_capture(args.out, kinds, args.max_bytes, records)
    except (OSError, EdgeError) as exc:
        _say(f"capture: cannot write {args.out}: {exc}")
        return 1
    s = summary.as_dict()
    print(f"{args.out}: {s['packets']} frames, {s['bytes']} bytes"
          + (", stopped at the size limit" if s["truncated"] else "")
          + (f", {s['lost_bytes']} bytes lost (the capture fell behind)" if s["lost_bytes"]
             else ""))
    return 0


def write_capture(out: Path, kinds: dict[str, str], max_bytes: int, records: Any) -> Any:
    """Write the records to `out` (0600: a capture shows what the fridges did) as pcapng."""
    from firmware_bridge.capture import Capture

    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f, contextlib.suppress(KeyboardInterrupt):
        capture = Capture(f, kinds, max_bytes)
        try:
            capture.add_all(records)
        finally:
            summary = capture.close()
    return summary
