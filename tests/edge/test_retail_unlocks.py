"""The UNLOCK commands of a handover, through the FridgeCommands protocol (fakes only:
no serial reader is needed, which is the point of the protocol)."""

from __future__ import annotations

import threading

from edge.retail.fridge_commands import UNLOCK_S, FridgeCommands, Unlocks
from edge.retail.handover import Handover, PickLine
from firmware_bridge import codec
from xiaodian.wire.retail import Location


class Command:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.outcome = ""

    @property
    def executed(self) -> bool:
        return self.outcome in ("ok", "duplicate")

    def finish(self, outcome: str) -> None:
        self.outcome = outcome
        self.done.set()


class Fridge:
    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes, Command]] = []

    def send_command(self, msg_type: int, payload: bytes) -> Command:
        command = Command()
        self.sent.append((msg_type, payload, command))
        return command


def handover() -> Handover:
    return Handover(7, "Wang L.", [
        PickLine("milk", "Milk", 1, Location("fridge-1", 0, 250)),
        PickLine("juice", "Juice", 1, Location("fridge-2", 1, 300))], {})


def test_unlock_answers_are_applied_once_they_arrive() -> None:
    f1, f2 = Fridge(), Fridge()
    fridges: dict[str, FridgeCommands] = {"fridge-1": f1, "fridge-2": f2}
    unlocks, h = Unlocks(fridges), handover()
    for fridge in sorted(h.fridges):
        unlocks.send(h, fridge)
    assert [(t, p) for t, p, _ in f1.sent] == [(codec.UNLOCK, codec.pack_unlock(UNLOCK_S))]
    assert h.fridges["fridge-1"].phase == h.fridges["fridge-2"].phase == "unlocking"
    assert unlocks.answered(h) == 0  # no answer yet: still waiting
    f1.sent[0][2].finish("ok")
    f2.sent[0][2].finish("timeout")
    assert unlocks.answered(h) == 2 and unlocks.pending == []
    assert h.fridges["fridge-1"].phase == "unlocked"
    assert (h.fridges["fridge-2"].phase, h.fridges["fridge-2"].note) == (
        "failed", "fridge-2 did not unlock (timeout)")


def test_a_fridge_not_connected_fails_at_once_and_a_late_answer_is_dropped() -> None:
    f1 = Fridge()
    unlocks, h = Unlocks({"fridge-1": f1}), handover()
    unlocks.send(h, "fridge-2")
    assert (h.fridges["fridge-2"].phase, h.fridges["fridge-2"].note) == (
        "failed", "fridge-2 is not connected to this terminal")
    unlocks.send(h, "fridge-1")
    f1.sent[0][2].finish("ok")
    assert unlocks.answered(None) == 0 and unlocks.pending == []  # the handover ended
