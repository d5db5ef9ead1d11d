"""Entry point on the board: the controller's tasks as asyncio tasks.

`run()` takes the clock and the sleep as parameters so the simulator's MicroPython
launcher can run this file unchanged at a faster-than-real clock.
"""

import asyncio
import time

import board
import clock
from controller import Controller

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


async def _task(fn: "Callable[[int], int]", up: "clock.Uptime", sleep_ms: "Any") -> None:
    # An exception ends this task only; the supervisor notices it no longer checks in.
    while True:
        wait = fn(up.now()) - up.now()
        await sleep_ms(wait if wait > 0 else 0)


async def _main(ctl: "Controller", up: "clock.Uptime", sleep_ms: "Any") -> None:
    running = [asyncio.create_task(_task(t.fn, up, sleep_ms)) for t in ctl.tasks]
    while running:  # for ever: tasks that die are the supervisor's business
        await asyncio.sleep_ms(3_600_000)


def run(
    data_dir: str = "",
    ticks_ms: "Any" = None,
    ticks_diff: "Any" = None,
    sleep_ms: "Any" = None,
    trial: bool = False,
) -> None:
    hw = board.Board()
    up = clock.Uptime(ticks_ms or time.ticks_ms, ticks_diff or time.ticks_diff)
    ctl = Controller(hw, data_dir, up.now(), trial)
    asyncio.run(_main(ctl, up, sleep_ms or asyncio.sleep_ms))


if __name__ == "__main__":
    # The loader picks the slot (docs/firmware_update.md); the factory image is this file.
    import fwboot
    import machine

    fwboot.start("", run, watchdog=lambda: machine.WDT(timeout=8000), reset=machine.reset)
