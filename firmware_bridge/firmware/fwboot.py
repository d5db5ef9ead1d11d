"""The loader: pick the slot (fwslots.select), run that image's main alone, catch a crash.

The factory main.py calls `start(root, run)` as its first act (its own `run` is the factory
image's). For an A/B slot the loader takes the factory directory off sys.path and forgets
the factory modules already imported, so the new image never runs beside a module of the
old one; then it imports the slot's main and calls its run(root, ...).

A trial image is watched from its first line: the watchdog is started before its import
(a hang in an import resets the board too), and an exception out of its main resets the
board. Either way select() finds tries = 1 at the next boot and rolls back.
fwboot.py and fwslots.py are the loader: never part of an image (fwstage.LOADER_FILES).
"""

import sys

import fwslots

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

LOADER = ("fwboot", "fwslots")


def _factory_modules(path: str) -> "list[str]":
    out = []
    for name in fwslots.list_files(path):
        for ext in (".py", ".mpy"):
            if name.endswith(ext) and name[: -len(ext)] not in LOADER:
                out.append(name[: -len(ext)])
    return out


def start(root: str, factory_run: "Callable[..., Any]", args: "tuple[Any, ...]" = (),
          factory_dirs: "tuple[str, ...]" = (), watchdog: "Any" = None,
          reset: "Any" = None) -> None:
    """Boot the selected slot. `factory_dirs`: where the factory image's files are (the
    root by default); `watchdog()` starts the board's WDT, `reset()` resets the board."""
    slot, trial = fwslots.select(root)
    if not slot:
        factory_run(root, *args)
        return
    dirs = factory_dirs or (fwslots.slot_dir(root, ""),)
    for d in dirs:
        for name in _factory_modules(d):
            if name in sys.modules:
                del sys.modules[name]
    # The slot takes the place of the factory files on the path (after any that come
    # before them: the simulator's hardware fakes), and they leave it.
    at = len(sys.path)
    for p in ("", ".", root) + tuple(dirs):  # noqa: RUF005 - MicroPython: no * in a tuple
        while p in sys.path:
            at = min(at, sys.path.index(p))
            sys.path.remove(p)
    sys.path.insert(min(at, len(sys.path)), fwslots.slot_dir(root, slot))
    if trial and watchdog is not None:
        watchdog()
    try:
        main = __import__("main")
        main.run(root, *args, trial=trial)
    except Exception as exc:  # a crashing trial image of any kind is rolled back
        if not trial or reset is None:
            raise
        if hasattr(sys, "print_exception"):
            sys.print_exception(exc)
        reset()
