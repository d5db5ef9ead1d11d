"""`python -m firmware_bridge.cli serial ...`: the stand-alone serial tools (a bench, a
controller on a laptop); on a terminal `xiaodian serial` (edge/serial_cli.py) adds sniffs
and captures through the running agent.

`serial decode FILE` turns a capture of the raw byte stream (for instance
`cat /dev/ttyUSB0 > capture.bin`) into one JSON line per accepted frame and a final
line with the decoder's counters, so a technician can read what a fridge said.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from typing import IO, Any

from firmware_bridge import codec, fwmsg

CHUNK = 4096


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serial = subparsers.add_parser("serial", help="fridge serial protocol tools")
    commands = serial.add_subparsers(dest="serial_command", required=True, metavar="SUBCOMMAND")
    decode = commands.add_parser(
        "decode",
        help="decode a captured byte stream into JSON lines",
        description='Print one JSON line per frame, then {"counters": {...}}.',
    )
    decode.add_argument("file", metavar="FILE", help="capture file, or - for standard input")
    decode.set_defaults(func=decode_command)
    sniff = commands.add_parser(
        "sniff",
        help="show a fridge's frames live, with line counters",
        description="Open PORT (only if no other process has it open) read-only and print "
        "one line per decoded frame (time, seq, "
        "type, key fields), the counters every 10 s and at the end. Reopens the port if it "
        "vanishes. Sends GET_HELLO only with --hello (a device that waits for a host).",
    )
    sniff.add_argument("port", metavar="PORT", help="serial port, e.g. /dev/ttyUSB0")
    sniff.add_argument("--baud", type=int, default=115200, help="default 115200")
    sniff.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds")
    sniff.add_argument("--hello", action="store_true", help="send GET_HELLO after opening")
    sniff.add_argument("--json", action="store_true", help="JSON lines instead of text")
    sniff.set_defaults(func=sniff_command)


def frame_record(frame: codec.Frame) -> dict[str, Any]:
    """The JSON-ready description of one frame."""
    name = codec.TYPE_NAMES.get(frame.type) or fwmsg.TYPE_NAMES.get(frame.type)
    record: dict[str, Any] = {
        "seq": frame.seq,
        "type": name or f"0x{frame.type:02x}",
        "version": f"{frame.version >> 4}.{frame.version & 0x0F}",
        "flags": codec.flag_names(frame.flags),
    }
    fields = codec.decode_message(frame.type, frame.payload)
    if fields is None and frame.type in fwmsg.TYPE_NAMES:
        fields = fwmsg.decode(frame.type, frame.payload)  # a firmware update (§4.10)
    if fields is None:
        record["payload_hex"] = frame.payload.hex()
    else:
        # bytes (an image hash, a chunk's data) as hex, so the record stays JSON
        fields = {k: v.hex() if isinstance(v, bytes) else v for k, v in fields.items()}
        del fields["type"]  # already in the record
        record["fields"] = fields
    return record


def decode_stream(source: IO[bytes], out: IO[str]) -> dict[str, int]:
    """Decode `source` to JSON lines on `out`; returns the decoder's counters."""
    decoder = codec.FrameDecoder()
    while True:
        chunk = source.read(CHUNK)
        if not chunk:
            break
        for frame in decoder.feed(chunk):
            out.write(json.dumps(frame_record(frame), ensure_ascii=False) + "\n")
    counters = decoder.stats()
    out.write(json.dumps({"counters": counters}) + "\n")
    out.flush()
    return counters


def decode_command(args: argparse.Namespace) -> int:
    if args.file == "-":
        decode_stream(sys.stdin.buffer, sys.stdout)
        return 0
    try:
        with open(args.file, "rb") as source:
            decode_stream(source, sys.stdout)
    except OSError as exc:
        print(f"xiaodian serial decode: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def sniff_command(args: argparse.Namespace) -> int:
    from firmware_bridge.sniff import PortBusy, sniff  # pyserial only when sniffing

    try:
        with contextlib.suppress(KeyboardInterrupt):
            sniff(args.port, sys.stdout, args.baud, args.seconds, args.hello, args.json)
    except PortBusy as exc:
        print(f"serial sniff: refusing to open it: {exc} (a second reader takes bytes from"
              " the first; with the edge agent running use `xiaodian serial sniff --config`)",
              file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (`python -m firmware_bridge.cli serial decode FILE`)."""
    parser = argparse.ArgumentParser(prog="firmware_bridge")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
