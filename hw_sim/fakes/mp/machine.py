# Fake `machine` for the firmware inside a real micropython process (fidelity mode).
import select
import sys

import simio

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5


class Pin:
    IN = 0
    OUT = 1
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.mode = mode
        if value is not None:
            simio.pin_out(id, value)

    def value(self, v=None):
        if v is None:
            return simio.pin_in(self.id)
        simio.pin_out(self.id, 1 if v else 0)
        return 0


class UART:
    # stdin/stdout are the wire; reads never block (poll first, then one byte at a time).
    def __init__(self, id, baudrate=115200, **kw):
        self._poll = select.poll()
        self._poll.register(sys.stdin, select.POLLIN)
        self._in = sys.stdin.buffer
        self._out = sys.stdout.buffer

    def any(self):
        simio.check_wdt()
        return 1 if self._poll.poll(0) else 0

    def read(self, n=None):
        buf = bytearray()
        while (n is None or len(buf) < n) and len(buf) < 512 and self._poll.poll(0):
            b = self._in.read(1)
            if not b:
                raise SystemExit(0)  # the simulator closed the line: power off
            buf += b
        return bytes(buf) if buf else None

    def write(self, data):
        self._out.write(data)
        return len(data)


class ADC:
    def __init__(self, pin, **kw):
        pass

    def read_u16(self):
        mv = simio.state().get("backup_mv", 4100)
        return min(65535, mv * 65535 // 6600)


class WDT:
    # Once started it cannot be stopped, as on the chips; an unfed one resets the board
    # (simio.check_wdt) and the next boot's reset_cause() is WDT_RESET.
    def __init__(self, id=0, timeout=5000):
        simio.event(f"WDT {timeout}")
        simio.wdt_start(timeout)

    def feed(self):
        simio.wdt_feed()


def reset_cause():
    return int(simio.state().get("reset_cause", PWRON_RESET))


def unique_id():
    return b"\x00\x00\x00\x00\x00\x01"


def reset():
    simio.reset(simio.SOFT_EXIT)
