# Fidelity-mode launcher: micropython simboot.py FAKES_DIR FIRMWARE_DIR CODEC_DIR SPEED
# The fakes come first on sys.path so they shadow the built-in `machine` and the
# firmware's own hx711 driver; the firmware's main.py then runs unchanged, on a clock
# `speed` times faster than real time.
import sys

fakes, firmware, codec_dir, speed = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
sys.path[:0] = [fakes, firmware, codec_dir]

import asyncio  # noqa: E402
import time  # noqa: E402

import main  # noqa: E402
import simio  # noqa: E402

_t0 = time.ticks_ms()


def ticks_ms():
    return int(time.ticks_diff(time.ticks_ms(), _t0) * speed)


simio.clock[0] = ticks_ms  # the fake watchdog counts in the firmware's time


def ticks_diff(a, b):
    return a - b


def sleep_ms(ms):
    return asyncio.sleep_ms(int(ms / speed))


# The loader boots an installed A/B slot in place of these files (docs/firmware_update.md).
import fwboot  # noqa: E402
import machine  # noqa: E402

fwboot.start("", main.run, (ticks_ms, ticks_diff, sleep_ms), factory_dirs=(firmware, codec_dir),
             watchdog=lambda: machine.WDT(timeout=8000), reset=machine.reset)
