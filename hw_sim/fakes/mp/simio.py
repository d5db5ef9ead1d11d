# MicroPython side of fidelity mode: the side channel to the simulator, and the board's
# resets.
# Inputs: a JSON file the simulator rewrites atomically (re-read at most every 50 ms of real
# time). Outputs: lines on stderr ("PIN 3 1", "RESET", "WDT_RESET"), which the simulator
# parses; the firmware's UART is this process's stdin/stdout.
# Resets: the process ends with SOFT_EXIT (machine.reset(), or the simulator's "reset"
# input: a brown-out or crash) or WDT_EXIT (the watchdog was not fed in time); the simulator
# starts it again on the same flash directory and pty, with the matching reset cause.
import json
import os
import sys
import time

SOFT_EXIT = 75
WDT_EXIT = 76

_path = os.getenv("XD_SENSORS") or "sensors.json"
_state = {}
_read_at = [0]
_pins = {}
# The firmware's clock (simboot swaps in the scenario-speed one) and the watchdog:
# [timeout_ms, last feed] in that clock, timeout 0 = no watchdog started; and the last look
# at it: [firmware ms, real ms].
clock = [time.ticks_ms]
_wdt = [0, 0]
_looked = [0, 0]
PAUSED_MS = 100  # real ms between two looks: this process was not running, not hung


def state():
    now = time.ticks_ms()
    if not _state or time.ticks_diff(now, _read_at[0]) >= 50:
        _read_at[0] = now
        try:
            with open(_path) as f:
                _state.update(json.load(f))
        except (OSError, ValueError):
            pass  # mid-rename or not written yet: keep the last values
        if _state.get("reset"):
            reset(SOFT_EXIT)
    check_wdt()
    return _state


def pin_in(pin):
    return int(state().get("pins", {}).get(str(pin), 0))


def pin_out(pin, value):
    check_wdt()
    if _pins.get(pin) != value:
        _pins[pin] = value
        sys.stderr.write(f"PIN {pin} {value}\n")


def event(line):
    sys.stderr.write(line + "\n")


def reset(code):
    # Unwinds the firmware from wherever it is: SystemExit is no Exception, so neither the
    # firmware nor asyncio catches it, and simboot exits with `code`.
    event("WDT_RESET" if code == WDT_EXIT else "RESET")
    raise SystemExit(code)


def wdt_start(timeout_ms):
    _wdt[0] = timeout_ms
    _wdt[1] = _looked[0] = clock[0]()
    _looked[1] = time.ticks_ms()


def wdt_feed():
    _wdt[1] = clock[0]()


def check_wdt():
    # The hardware watchdog counts on its own; this fake looks at it whenever the firmware
    # touches the hardware (at least every 50 ms of firmware time while its loop runs, and
    # every 5 ms of real time while a driver call hangs), so a starved watchdog resets the
    # board at the next look after its timeout. A board never stops, but this process can
    # (descheduled on a busy machine): a long real gap between two looks is not counted.
    if not _wdt[0]:
        return
    now, real = clock[0](), time.ticks_ms()
    if time.ticks_diff(real, _looked[1]) > PAUSED_MS:
        _wdt[1] += now - _looked[0]
    _looked[0], _looked[1] = now, real
    if now - _wdt[1] > _wdt[0]:
        reset(WDT_EXIT)


def hang():
    # A driver call that never returns (a 1-Wire bus held low): only a reset ends it.
    while True:
        time.sleep_ms(5)
        state()
