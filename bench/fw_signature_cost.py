"""What checking a firmware image's Ed25519 signature on the fridge controller would cost,
measured in the real `micropython` binary (docs/firmware_update.md, "Where the signature is
checked").

The board's MicroPython has `hashlib.sha256` (native) but neither SHA-512 nor Ed25519, so
the verifier is firmware_bridge/edverify.py, pure Python: the one the firmware checks
images with (fwstage.py). The same run measures, in the same
`micropython` process:

- baseline: the native SHA-256 of the image, which the device computes today before the
  switch;
- pure-Python SHA-512 of the image (Ed25519 hashes R || A || message: the whole image as
  signed today);
- a whole verify of the image's signature as `xiaodian firmware sign` makes it;
- a verify of the XSG2 signature the device checks (fwsig.statement: the image's SHA-256
  and manifest fields, one SHA-512 block), as fwimage.sign makes it;
- the same with the heap of a small board (`-X heapsize`, 192 KiB as on an RP2040).

    .venv/bin/python -m bench.fw_signature_cost [--size 61440] [--heap 192K]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from firmware_bridge import fwsig
from hw_sim.micropython_host import micropython_binary

from .common import BenchError, check_figures

BRIDGE = Path(fwsig.__file__).parent  # edverify.py and fwsig.py, flat as on the board

# Runs inside micropython: argv = dir with pub, image, sig, presig; one JSON line per figure.
DRIVER = """
import sys, time, hashlib, gc
sys.path.insert(0, sys.argv[1])
import edverify as e
import fwsig
d = sys.argv[2]
def rd(n):
    with open(d + "/" + n, "rb") as f:
        return f.read()
pub, image, sig, presig = rd("pub"), rd("image"), rd("sig"), rd("presig")
signed = image[:len(image) - 76]
def timed(name, fn):
    gc.collect()
    t = time.ticks_us()
    try:
        out = fn()
    except MemoryError:
        print('{"name": "%s", "ms": null, "out": "MemoryError"}' % name)
        return
    ms = time.ticks_diff(time.ticks_us(), t) / 1000
    print('{"name": "%s", "ms": %.3f, "out": "%s"}' % (name, ms, out))
timed("sha256_native", lambda: hashlib.sha256(image).digest().hex())
timed("sha512_pure", lambda: e.sha512(image).hex())
timed("verify_image", lambda: e.verify(pub, signed, sig))
def statement():
    return fwsig.statement(hashlib.sha256(signed).digest(), (1, 1, 0), "xd-fridge-1",
                           len(signed))
timed("verify_statement", lambda: e.verify(pub, statement(), presig))
bad = presig[:32] + bytes([presig[32] ^ 1]) + presig[33:]  # S off by one: the full check
timed("verify_statement_bad", lambda: e.verify(pub, statement(), bad))
"""


def run(size: int, heap: str | None) -> list[dict[str, object]]:
    binary = micropython_binary()
    if binary is None:
        raise BenchError("no micropython binary")
    key = ed25519.Ed25519PrivateKey.generate()
    pub = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    # The signed part as fwimage makes it, then a 76-byte trailer's place (XSIG, key id, sig).
    signed = os.urandom(size)
    image = signed + b"XSIG" + bytes(8) + key.sign(signed)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "pub").write_bytes(pub)
        (d / "image").write_bytes(image)
        (d / "sig").write_bytes(key.sign(signed))
        said = fwsig.statement(hashlib.sha256(signed).digest(), (1, 1, 0), "xd-fridge-1",
                               len(signed))
        (d / "presig").write_bytes(key.sign(said))
        (d / "driver.py").write_text(DRIVER)
        cmd = [binary, *(["-X", f"heapsize={heap}"] if heap else []), str(d / "driver.py"),
               str(BRIDGE), str(d)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise BenchError(f"micropython failed: {done.stderr.strip()[-400:]}")
    rows: list[dict[str, object]] = [json.loads(line) for line in done.stdout.splitlines()]
    want = {"sha256_native": hashlib.sha256(image).hexdigest(),
            "sha512_pure": hashlib.sha512(image).hexdigest(),
            "verify_image": "True", "verify_statement": "True", "verify_statement_bad": "False"}
    for row in rows:
        if row["out"] != "MemoryError" and row["out"] != want[str(row["name"])]:
            raise BenchError(f"{row['name']}: wrong answer {row['out']!r}")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=61440, help="signed bytes (the issue's 60 kB)")
    ap.add_argument("--heap", default="192K", help="heap of the small-board run")
    ap.add_argument("--smoke", action="store_true", help="an 8 kB image, one run")
    args = ap.parse_args(argv)
    size = 8192 if args.smoke else args.size
    key = ed25519.Ed25519PrivateKey.generate()
    data = os.urandom(size)
    sig = key.sign(data)
    t = time.perf_counter()
    key.public_key().verify(sig, data)
    native_ms = (time.perf_counter() - t) * 1000
    print(f"image {size} bytes; CPython + OpenSSL verify on the terminal: {native_ms:.2f} ms")
    runs = [("default heap", None)] if args.smoke else [("default heap", None),
                                                         (f"heap {args.heap}", args.heap)]
    figures: list[tuple[str, float | None]] = []
    for label, heap in runs:
        rows = run(size, heap)
        if heap is None:
            by_name = {str(r["name"]): r["ms"] for r in rows}
            figures += [(f"{n} ms", None if by_name[n] is None else float(str(by_name[n])))
                        for n in ("sha256_native", "sha512_pure", "verify_image",
                                  "verify_statement")]
        base = next(r["ms"] for r in rows if r["name"] == "sha256_native")
        print(f"micropython, {label}:")
        for r in rows:
            ms = r["ms"]
            if ms is None:
                print(f"  {r['name']:<20} MemoryError")
                continue
            ratio = f"{float(str(ms)) / float(str(base)):8.0f}x baseline" if base else ""
            print(f"  {r['name']:<20} {float(str(ms)):10.3f} ms  {ratio}")
    return check_figures(figures)


if __name__ == "__main__":
    raise SystemExit(main())
