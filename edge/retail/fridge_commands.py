"""Lane doors unlocked for a handover, through the fridges' command channel.

Retail only needs to queue a command and later read its outcome, so it depends on these
protocols rather than on the serial reader (edge.serial_link.FridgeReader and its
DeviceCommand satisfy them; tests pass fakes). The frame itself comes from the codec.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from edge.retail.handover import Handover
from firmware_bridge import codec

UNLOCK_S = 60  # the lane door stays unlocked this long for the clerk to take the items


class CommandStatus(Protocol):
    """A queued command: `done` is set once `outcome` is final."""

    @property
    def done(self) -> threading.Event: ...

    @property
    def outcome(self) -> str: ...

    @property
    def executed(self) -> bool: ...


class FridgeCommands(Protocol):
    """The one thing retail asks of a fridge's link: queue a command (any thread)."""

    def send_command(self, msg_type: int, payload: bytes) -> CommandStatus: ...


@dataclass
class _Unlock:
    fridge: str
    command: CommandStatus


class Unlocks:
    """UNLOCK commands sent for the handover, until each has its answer."""

    def __init__(self, fridges: Mapping[str, FridgeCommands]) -> None:
        self.fridges = fridges
        self.pending: list[_Unlock] = []

    def send(self, h: Handover, fridge: str) -> None:
        reader = self.fridges.get(fridge)
        if reader is None:
            h.unlocked(fridge, False, f"{fridge} is not connected to this terminal")
            return
        h.unlocking(fridge)
        self.pending.append(_Unlock(fridge, reader.send_command(
            codec.UNLOCK, codec.pack_unlock(UNLOCK_S))))

    def answered(self, h: Handover | None) -> int:
        """Apply the answers that came in to the handover (if still of its fridges);
        returns how many changed it."""
        changed = 0
        for u in list(self.pending):
            if not u.command.done.is_set():
                continue
            self.pending.remove(u)
            if h is not None and u.fridge in h.fridges:
                h.unlocked(u.fridge, u.command.executed,
                           f"{u.fridge} did not unlock ({u.command.outcome})")
                changed += 1
        return changed
