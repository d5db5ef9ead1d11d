# MicroPython side of fidelity mode: the side channel to the simulator.
# Inputs: a JSON file the simulator rewrites atomically (re-read at most every 50 ms of real
# time). Outputs: lines on stderr ("PIN 3 1", "RESET"), which the simulator parses; the
# firmware's UART is this process's stdin/stdout.
import json
import os
import sys
import time

_path = os.getenv("XD_SENSORS") or "sensors.json"
_state = {}
_read_at = [0]
_pins = {}


def state():
    now = time.ticks_ms()
    if not _state or time.ticks_diff(now, _read_at[0]) >= 50:
        _read_at[0] = now
        try:
            with open(_path) as f:
                _state.update(json.load(f))
        except (OSError, ValueError):
            pass  # mid-rename or not written yet: keep the last values
    return _state


def pin_in(pin):
    return int(state().get("pins", {}).get(str(pin), 0))


def pin_out(pin, value):
    if _pins.get(pin) != value:
        _pins[pin] = value
        sys.stderr.write(f"PIN {pin} {value}\n")


def event(line):
    sys.stderr.write(line + "\n")
