"""Host decoder throughput against the wire: how many frames per second one core decodes
with `firmware_bridge.codec.FrameDecoder`, on a realistic mix, next to the most frames a
saturated 115200-baud line can carry.

The mix is what a fridge sends: mostly TEMP, with HEARTBEAT, DOOR, COMPRESSOR and some
line noise (spoilt frames and stray bytes the decoder must skip). Fed in 64-byte chunks,
as a serial read returns them. Bounded: about `--seconds` of decoding per chunking.

    .venv/bin/python -m bench.decode_rate [--seconds 2]
"""

from __future__ import annotations

import argparse
import random
import time

from firmware_bridge import codec

from .common import check_figures

BAUD = 115200
BYTES_PER_S = BAUD // 10  # 8N1: a start bit, 8 data bits, a stop bit per byte


def workload(frames: int, seed: int = 1) -> tuple[bytes, int]:
    """(stream, good frames in it): ~70 % TEMP, 15 % HEARTBEAT, 8 % DOOR, 7 % COMPRESSOR;
    1 % of frames spoilt by a flipped byte and, now and then, a few stray bytes."""
    rng = random.Random(seed)
    out = bytearray()
    good = 0
    for seq in range(frames):
        ms = seq * 1000
        pick = rng.random()
        if pick < 0.70:
            air, product = rng.randint(-32, 160) / 16, rng.randint(-32, 160) / 16
            frame = codec.encode_frame(
                codec.TEMP, seq, codec.pack_temp(ms, [(0, "ok", air), (1, "ok", product)])
            )
        elif pick < 0.85:
            frame = codec.encode_frame(
                codec.HEARTBEAT, seq, codec.pack_heartbeat(ms, 61440, 0, 0, 0)
            )
        elif pick < 0.93:
            door = codec.pack_door(ms, rng.random() < 0.5, rng.randint(0, 60000))
            frame = codec.encode_frame(codec.DOOR, seq, door)
        else:
            comp = codec.pack_compressor(ms, rng.random() < 0.5, "thermostat")
            frame = codec.encode_frame(codec.COMPRESSOR, seq, comp)
        if rng.random() < 0.01:
            spoilt = bytearray(frame)
            spoilt[rng.randrange(len(spoilt) - 1)] ^= 0x5A  # never the delimiter
            frame = bytes(spoilt)
        else:
            good += 1
        out += frame
        if rng.random() < 0.005:
            out += bytes(rng.randrange(1, 256) for _ in range(rng.randint(1, 8))) + b"\x00"
    return bytes(out), good


def measure(stream: bytes, chunk: int, seconds: float) -> tuple[float, int]:
    """(frames per second, frames per pass) over whole passes, for about `seconds`."""
    chunks = [stream[i : i + chunk] for i in range(0, len(stream), chunk)]
    per_pass = 0
    passes = 0
    t0 = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds or passes == 0:
        decoder = codec.FrameDecoder()
        n = 0
        for c in chunks:
            n += len(decoder.feed(c))
        per_pass = n
        passes += 1
        elapsed = time.perf_counter() - t0
    return per_pass * passes / elapsed, per_pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per chunk size (default 2)")
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--smoke", action="store_true",
                        help="quick check (~2 s): 4,000 frames, 0.3 s per chunk size; exits 1 "
                        "unless every chunk size gives a rate")
    args = parser.parse_args(argv)
    if args.smoke:
        args.frames, args.seconds = 4000, 0.3
    stream, good = workload(args.frames)
    avg = len(stream) / args.frames
    wire_fps = BYTES_PER_S / avg
    print(
        f"decode_rate: {args.frames} frames, {len(stream)} bytes (avg {avg:.1f} B/frame on "
        f"the wire, noise included), {good} intact; 115200 8N1 = {BYTES_PER_S} B/s = "
        f"{wire_fps:,.0f} frames/s at most"
    )
    print(f"{'chunk':>8} {'frames/s/core':>14} {'MB/s':>7} {'x wire limit':>13} {'decoded':>8}")
    figures: list[tuple[str, float | None]] = [("wire limit frames/s", wire_fps)]
    for chunk in (1, 64, 4096):
        fps, decoded = measure(stream, chunk, args.seconds if chunk > 1 else args.seconds / 2)
        mbps = fps * avg / 1e6
        print(f"{chunk:>8} {fps:>14,.0f} {mbps:>7.2f} {fps / wire_fps:>12.1f}x {decoded:>8}")
        # A decoder that loses (or invents) intact frames gives 0 and fails.
        figures.append((f"chunk {chunk} x wire limit", fps / wire_fps if decoded == good else 0.0))
    print("ratio > 1: one core keeps up with a saturated line by that factor")
    return check_figures(figures) if args.smoke else 0


if __name__ == "__main__":
    raise SystemExit(main())
