"""LANES and LOCK (docs/protocol.md §4.7a, §4.7b): load cells and the door lock reported by
both controllers, the simulated shelf and door they watch, and the edge's events."""

from __future__ import annotations

from typing import Any

import pytest

from edge import interpret
from edge.store import NewEvent
from firmware_bridge import codec
from hw_sim.controller import OutFrame
from hw_sim.fridge import SimFridge
from hw_sim.scenario import FridgeSpec


def _frame(msg_type: int, seq: int, payload: bytes, flags: int = 0) -> codec.Frame:
    [frame] = codec.FrameDecoder().feed(codec.encode_frame(msg_type, seq, payload, flags))
    return frame


def test_the_edge_turns_lanes_and_lock_into_events_of_exactly_this_shape() -> None:
    lanes = _frame(codec.LANES, 9, codec.pack_lanes(5_000, [(1234, True), (-2, False)]))
    items, msg = interpret.from_frame("fridge-1", lanes, 1.5e9, True, dev_boot=3)
    assert msg is not None
    assert items == [
        NewEvent(
            "fridge-1",
            "lanes",
            9,
            5_000,
            1.5e9,
            True,
            {
                "lanes": [
                    {"lane": 0, "grams": 1234, "stable": True},
                    {"lane": 1, "grams": -2, "stable": False},
                ]
            },
            3,
        )
    ]
    for reason in codec.LOCK_REASON_NAMES:
        lock = _frame(codec.LOCK, 10, codec.pack_lock(6_000, reason != "command", reason))
        (event,), _ = interpret.from_frame("fridge-1", lock, 1.5e9, True, dev_boot=3)
        assert isinstance(event, NewEvent) and (event.type, event.dev_ms) == ("lock", 6_000)
        assert event.data == {"locked": reason != "command", "reason": reason}
    # Flagged REPLY it is the state report sent on attaching, marked as such (not a change).
    lock = _frame(codec.LOCK, 11, codec.pack_lock(7_000, True, "boot"), codec.REPLY)
    (event,), _ = interpret.from_frame("fridge-1", lock, 1.5e9, True, dev_boot=3)
    assert isinstance(event, NewEvent)
    assert event.data == {"locked": True, "reason": "boot", "state_report": True}
    # Too short for its type: reported as malformed, never raised.
    assert interpret.from_frame("fridge-1", _frame(codec.LANES, 12, b"\x01"), 1.0, True) == (
        [],
        None,
    )


class Shop:
    """A SimFridge with two lanes and a lock, attached to a host that keeps every record once."""

    def __init__(self, controller: str) -> None:
        spec = FridgeSpec(
            id="fridge-1",
            controller=controller,  # type: ignore[arg-type]
            door_openings_per_hour=0,
            defrost_every_h=0,
            lanes=(1200.0, 800.0),
            lock=True,
        )
        self.f = SimFridge(spec, seed=1)
        self.records: dict[int, OutFrame] = {}
        self.acks: list[str] = []
        self.seq = 0
        self._take(self.f.receive(self._cmd(codec.GET_HELLO, b"")))

    def _cmd(self, msg_type: int, payload: bytes) -> bytes:
        self.seq += 1
        return codec.encode_frame(msg_type, self.seq, payload, codec.ACK_REQUESTED)

    def _take(self, frames: list[OutFrame]) -> None:
        for fr in frames:
            if fr.logged:
                self.records.setdefault(fr.seq, fr)
            elif fr.kind == "ack":
                self.acks.append(fr.fields["status"])

    def command(self, msg_type: int, payload: bytes) -> None:
        self._take(self.f.receive(self._cmd(msg_type, payload)))

    def run(self, seconds: int) -> None:
        for _ in range(seconds):
            self._take(self.f.step(1.0))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [fr.fields for _, fr in sorted(self.records.items()) if fr.kind == kind]


@pytest.mark.parametrize("controller", ["python", "firmware"])
def test_lanes_and_lock_records_follow_the_shelf_and_the_door(controller: str) -> None:
    shop = Shop(controller)
    f = shop.f
    shop.run(5)
    assert [(x["locked"], x["reason"]) for x in shop.of("lock")] == [(True, "boot")]
    boot = shop.of("lanes")
    assert [x["lanes"] for x in boot] == [
        [{"lane": 0, "grams": 1200, "stable": True}, {"lane": 1, "grams": 800, "stable": True}]
    ]
    assert f.locked and not f.open_door() and not f.door_open  # the lock holds the door

    shop.command(codec.UNLOCK, codec.pack_unlock(30))
    assert shop.acks[-1] == "ok" and not f.locked
    assert [(x["locked"], x["reason"]) for x in shop.of("lock")][-1] == (False, "command")
    assert f.open_door()
    shop.run(2)
    assert f.take(0, 300) == 300 and f.lane_grams(0) == 900
    shop.run(3)
    lanes = [x["lanes"] for x in shop.of("lanes")]
    # Settling (not stable), then the new stable weight; lane 1 untouched throughout.
    assert [ln[0]["stable"] for ln in lanes[1:]] == [False, True]
    assert lanes[-1] == [
        {"lane": 0, "grams": 900, "stable": True},
        {"lane": 1, "grams": 800, "stable": True},
    ]
    # A change inside the deadband (and the stability band) is not worth a record.
    f.put(1, 1.0)
    shop.run(3)
    assert len(shop.of("lanes")) == len(lanes)
    f.close_door()
    shop.run(3)
    assert f.locked
    shop.command(codec.UNLOCK, codec.pack_unlock(5))
    shop.run(8)  # nobody opens it
    assert f.locked and not f.open_door()
    assert [(x["locked"], x["reason"]) for x in shop.of("lock")] == [
        (True, "boot"),
        (False, "command"),
        (True, "door_closed"),
        (False, "command"),
        (True, "timeout"),
    ]
    # Nothing at a fixed rate: a quiet shelf sends no more LANES however long it stands.
    before = len(shop.of("lanes"))
    shop.run(60)
    assert len(shop.of("lanes")) == before


def test_a_fridge_without_lock_or_lanes_sends_neither() -> None:
    spec = FridgeSpec(id="f", controller="firmware", door_openings_per_hour=0, defrost_every_h=0)
    f = SimFridge(spec, seed=1)
    out = f.receive(codec.encode_frame(codec.GET_HELLO, 1, b"", codec.ACK_REQUESTED))
    for _ in range(10):
        out += f.step(1.0)
    assert not {"lanes", "lock"} & {fr.kind for fr in out}
    assert not f.locked and f.open_door()  # no lock fitted: the door just opens


@pytest.mark.parametrize("controller", ["python", "firmware"])
def test_the_state_report_after_get_hello_carries_the_lock_and_the_lanes(controller: str) -> None:
    shop = Shop(controller)
    f = shop.f

    def attach() -> dict[str, dict[str, Any]]:
        """A host (re)attaches: the state report that follows its ACK and HELLO, by kind."""
        out = f.receive(shop._cmd(codec.GET_HELLO, b""))
        assert [fr.kind for fr in out[:2]] == ["ack", "hello"]
        report = [fr for fr in out[2:] if fr.state_report]
        assert [fr.kind for fr in report] == ["door", "compressor", "defrost", "lock", "lanes"]
        for fr in report:  # flagged REPLY, not records: nothing new in the log
            assert not fr.logged and codec.FrameDecoder().feed(fr.data)[0].flags & codec.REPLY
            assert fr.seq not in f.controller.log
        return {fr.kind: fr.fields for fr in report}

    shop.run(5)
    now = attach()
    assert (now["lock"]["locked"], now["lock"]["reason"]) == (True, "boot")
    assert now["lanes"]["lanes"] == [
        {"lane": 0, "grams": 1200, "stable": True},
        {"lane": 1, "grams": 800, "stable": True},
    ]
    shop.command(codec.UNLOCK, codec.pack_unlock(30))
    assert f.open_door()
    shop.run(2)
    f.take(0, 300)
    shop.run(3)
    records = len(shop.records)
    now = attach()
    assert (now["lock"]["locked"], now["lock"]["reason"]) == (False, "command")
    assert now["door"]["open"] is True
    assert now["lanes"]["lanes"][0] == {"lane": 0, "grams": 900, "stable": True}
    f.take(1, 100)
    shop._take(f.step(0.2))  # the present, not the last record: lane 1 is settling
    assert attach()["lanes"]["lanes"][1]["stable"] is False
    f.close_door()
    shop.run(5)
    now = attach()
    assert (now["lock"]["locked"], now["lock"]["reason"]) == (True, "door_closed")
    assert now["lanes"]["lanes"][1] == {"lane": 1, "grams": 700, "stable": True}
    assert len(shop.records) > records  # the real changes were records, as before
