"""A/B firmware slots on the controller's flash and the one pointer that picks between them.

    fw/boot.json   {"active": SLOT, "trial": SLOT, "tries": 0|1, "rolled_back": SLOT, ...}
    fw/a/, fw/b/   the two slots: an image's files, complete before boot.json names them
    fw/stage/      the image being received (fwstage.py)

SLOT is "a", "b" or "" (the factory image: the flat files beside main.py). The only step
that changes which code boots is `write_pointer`: the new state goes to boot.json.tmp, then
one rename puts it in place. On LittleFS (the default on rp2 and esp32) a rename is an
atomic metadata commit: after a power cut the file is the old one or the new one. On the
unix port (the simulator) it is POSIX rename(2). FAT's rename refuses an existing target,
so there it is remove-then-rename; `read_pointer` then falls back to boot.json.tmp, which is
complete by then (written and closed before the remove), so no cut point loses the pointer.

Trial: after an install, boot.json says trial = new slot, tries = 0. `select` at boot
turns that into tries = 1 (written before the trial's first line runs) and boots the new
slot; finding tries = 1 means the trial booted before and was never confirmed (it crashed,
hung until the watchdog fired, or missed its deadline), so `select` points back at the old
slot and notes "rolled_back". Only `confirm` (the host acknowledged the trial's health)
makes the new slot the active one.
"""

import json
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DIR = "fw"
POINTER = "boot.json"


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def fw_dir(root: str) -> str:
    return _join(root, DIR)


def slot_dir(root: str, slot: str) -> str:
    """Where a slot's files are; the factory slot "" is the root itself."""
    return _join(root, DIR, slot) if slot else (root or ".")


def ensure_dir(path: str) -> None:
    try:  # noqa: SIM105 - MicroPython has no contextlib
        os.mkdir(path)
    except OSError:
        pass  # exists


def read_pointer(root: str) -> "dict[str, Any]":
    base = _join(fw_dir(root), POINTER)
    for path in (base, base + ".tmp"):
        try:
            with open(path) as f:
                state = json.load(f)
            if isinstance(state, dict):
                return state
        except (OSError, ValueError):
            continue
    return {"active": ""}


def write_pointer(root: str, state: "dict[str, Any]") -> None:
    ensure_dir(fw_dir(root))
    base = _join(fw_dir(root), POINTER)
    with open(base + ".tmp", "w") as f:
        json.dump(state, f)
    try:
        os.rename(base + ".tmp", base)  # the atomic step
    except OSError:
        os.remove(base)  # FAT: read_pointer reads the .tmp until the rename below
        os.rename(base + ".tmp", base)


def other(slot: str) -> str:
    return "b" if slot == "a" else "a"


def select(root: str) -> "tuple[str, bool]":
    """The slot to boot now, and whether it boots on trial. Writes boot.json as it decides."""
    state = read_pointer(root)
    active = str(state.get("active", ""))
    trial = str(state.get("trial", ""))
    if not trial:
        return active, False
    if int(state.get("tries", 0)) == 0:
        state["tries"] = 1
        write_pointer(root, state)
        return trial, True
    write_pointer(root, {"active": active, "rolled_back": trial,
                         "rolled_back_sha256": state.get("sha256", "")})
    return active, False


def confirm(root: str) -> bool:
    """Keep the trial slot for good; False when nothing is on trial."""
    state = read_pointer(root)
    trial = str(state.get("trial", ""))
    if not trial:
        return False
    write_pointer(root, {"active": trial, "previous": state.get("active", ""),
                         "sha256": state.get("sha256", "")})
    return True


def list_files(path: str) -> "list[str]":
    try:
        return [n for n in os.listdir(path) if not n.startswith(".")]
    except OSError:
        return []


def clear_dir(path: str) -> None:
    ensure_dir(path)
    for name in list_files(path):
        os.remove(path + "/" + name)
