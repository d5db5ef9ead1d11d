"""The simulated controller, driven without a pty: bytes in, frames out, decoded with the codec."""

from __future__ import annotations

from typing import Any

from firmware_bridge import codec
from hw_sim.controller import ControllerConfig, FridgeController, OutFrame
from hw_sim.fridge import SimFridge
from hw_sim.hardware import ScriptedDoor
from hw_sim.scenario import FridgeSpec

# After HELLO the controller reports its current state (REPLY-flagged).
STATE_REPORT = ["door", "compressor", "defrost"]


def get_hello(seq: int = 5) -> bytes:
    return codec.encode_frame(codec.GET_HELLO, seq, codec.pack_get_hello(), codec.ACK_REQUESTED)


def decode_all(frames: list[OutFrame]) -> tuple[list[codec.Frame], dict[str, int]]:
    decoder = codec.FrameDecoder()
    decoded = decoder.feed(b"".join(f.data for f in frames))
    return decoded, decoder.stats()


def as_truth(frame: codec.Frame) -> dict[str, Any]:
    """What the host makes of a frame, in ground-truth shape (tuples become lists in JSON)."""
    msg = codec.decode_message(frame.type, frame.payload)
    assert msg is not None
    kind = msg.pop("type")
    if kind == "temp":
        msg["probes"] = [list(p) for p in msg["probes"]]
    return {"kind": kind, "fseq": frame.seq, **msg}


class Host:
    """A host that decodes what the fridge sends and receipts every record at once."""

    def __init__(self, fridge: SimFridge) -> None:
        self.fridge = fridge
        self.decoder = codec.FrameDecoder()
        self.frames: list[codec.Frame] = []

    def take(self, out: list[OutFrame]) -> list[OutFrame]:
        decoded = self.decoder.feed(b"".join(f.data for f in out))
        self.frames += decoded
        seqs = [d.seq for d in decoded if d.type in codec.LOGGED_TYPES]
        for i in range(0, len(seqs), codec.MAX_RECEIPT_SEQS):
            chunk = seqs[i : i + codec.MAX_RECEIPT_SEQS]
            receipt = codec.encode_frame(codec.RECEIPT, 0, codec.pack_receipt(1, chunk))
            assert self.fridge.receive(receipt) == []
        return out

    def run(self, seconds: int) -> list[OutFrame]:
        out: list[OutFrame] = []
        for _ in range(seconds):
            out += self.take(self.fridge.step(1.0))
        return out


def _retransmitted(frames: list[OutFrame]) -> list[OutFrame]:
    return [f for f in frames if codec.FrameDecoder().feed(f.data)[0].flags & codec.RETRANSMISSION]


def test_silent_until_get_hello_then_ack_hello_state_and_the_logged_records() -> None:
    f = SimFridge(FridgeSpec(id="fridge-9"), seed=7)
    for _ in range(60):
        assert f.step(1.0) == []  # no host has asked: nothing on the wire
    replies = f.receive(get_hello(seq=41))
    # Readings taken while nobody listened were logged and follow the state report.
    assert [r.kind for r in replies] == ["ack", "hello", *STATE_REPORT, *["temp"] * 6]
    ack, hello, *_state = (as_truth(fr) for fr in decode_all(replies[:2])[0])
    # The six readings logged meanwhile took sequence numbers 0-5.
    assert ack == {"kind": "ack", "fseq": 6, "acked_seq": 41, "status": "ok"}
    assert hello["device_id"] == "fridge-9" and hello["dev_ms"] == 60_000
    assert [r.fields["dev_ms"] for r in replies[5:]] == list(range(10_000, 60_001, 10_000))
    assert len(_retransmitted(replies)) == 6
    host = Host(f)
    host.take(replies)
    frames = host.run(60)
    assert [fr.kind for fr in frames if fr.kind == "temp"] == ["temp"] * 6
    assert _retransmitted(frames) == []  # all receipted: nothing is sent twice


def test_frames_decode_match_their_truth_and_are_contiguous() -> None:
    f = SimFridge(
        FridgeSpec(id="f", door_openings_per_hour=30, defrost_every_h=1, defrost_minutes=10),
        seed=11,
    )
    host = Host(f)
    frames = host.take(f.receive(get_hello()))
    frames += host.run(3 * 3600)
    decoded, stats = decode_all(frames)
    assert len(decoded) == len(frames)
    assert stats["frames_ok"] == len(frames)
    assert stats["seq_gaps"] == 0 and stats["bytes_discarded"] == 0
    assert [d.seq for d in decoded] == list(range(len(frames)))
    # What the host decodes is exactly what ground truth will record.
    assert [as_truth(d) for d in decoded] == [fr.truth() for fr in frames]
    kinds = {fr.kind for fr in frames}
    assert {"temp", "heartbeat", "door", "compressor", "defrost"} <= kinds
    assert f.controller.log == {}  # everything receipted

    temps = [fr.fields for fr in frames if fr.kind == "temp"]
    assert [t["dev_ms"] for t in temps] == list(range(10_000, 3 * 3600 * 1000 + 1, 10_000))
    for t in temps:
        (i0, s0, air), (i1, s1, product) = t["probes"]
        assert (i0, s0, i1, s1) == (0, "ok", 1, "ok")
        assert air * 16 == int(air * 16) and product * 16 == int(product * 16)
    beats = [fr.fields["dev_ms"] for fr in frames if fr.kind == "heartbeat"]
    assert beats == [t["dev_ms"] for t in temps]  # both every 10 s by default


def test_sequence_numbers_wrap_at_16_bits() -> None:
    f = SimFridge(
        FridgeSpec(
            id="f",
            sample_interval_s=1,
            heartbeat_interval_s=1,
            door_openings_per_hour=0,
            defrost_every_h=0,
        ),
        seed=1,
    )
    host = Host(f)
    frames = host.take(f.receive(get_hello()))
    while len(frames) < 70_000:
        frames += host.run(1)
    seqs = [fr.seq for fr in frames]
    assert seqs == [i & 0xFFFF for i in range(len(frames))]
    decoded, stats = decode_all(frames)
    assert stats["seq_gaps"] == 0 and len(decoded) == len(frames)


def test_hang_up_stops_streaming_and_get_hello_resends_what_was_not_receipted() -> None:
    f = SimFridge(FridgeSpec(id="f", door_openings_per_hour=0, defrost_every_h=0), seed=2)
    host = Host(f)
    first = host.take(f.receive(get_hello()))
    first += host.run(30)  # three readings, receipted
    f.controller.detach()
    for _ in range(30):
        assert f.step(1.0) == []  # three more readings, logged only
    second = f.receive(get_hello(seq=6))
    assert [fr.kind for fr in second] == ["ack", "hello", *STATE_REPORT, "temp", "temp", "temp"]
    assert [fr.fields["dev_ms"] for fr in second[5:]] == [40_000, 50_000, 60_000]
    assert second[0].seq > first[-1].seq  # same boot: the sequence carries on


def test_a_record_not_receipted_is_sent_again_until_it_is() -> None:
    f = SimFridge(FridgeSpec(id="f", door_openings_per_hour=0, defrost_every_h=0), seed=3)
    f.receive(get_hello())
    out = [fr for _ in range(10) for fr in f.step(1.0)]
    (reading,) = [fr for fr in out if fr.kind == "temp"]
    # No receipt: 30 s later (retransmit_after_s) it goes out again, flagged, same seq.
    later = [fr for _ in range(30) for fr in f.step(1.0)]
    again = [fr for fr in _retransmitted(later) if fr.seq == reading.seq]
    assert len(again) == 1 and again[0].fields == reading.fields
    Host(f).take(again)  # now receipted
    later = [fr for _ in range(120) for fr in f.step(1.0)]
    assert [fr for fr in _retransmitted(later) if fr.seq == reading.seq] == []


def test_a_full_log_drops_the_oldest_record_and_says_so() -> None:
    spec = FridgeSpec(id="f", door_openings_per_hour=0, defrost_every_h=0)
    f = SimFridge(spec, seed=4)
    f.controller.config = ControllerConfig(log_capacity=5, defrost_every_s=0, lock=False)
    for _ in range(80):
        f.step(1.0)  # 8 readings, nobody listening
    new, lost = f.controller.take_new_records()
    assert [fr.fields["dev_ms"] for fr in new] == list(range(10_000, 80_001, 10_000))
    assert [fr.fields["dev_ms"] for fr in lost] == [10_000, 20_000, 30_000]
    assert f.controller.log_overflow == 3 and len(f.controller.log) == 5


def test_door_events_carry_the_duration_of_the_state_that_ended() -> None:
    f = SimFridge(FridgeSpec(id="f", door_openings_per_hour=0, defrost_every_h=0), seed=2)
    f.door = ScriptedDoor([(100.0, 45.0)])
    host = Host(f)
    frames = host.take(f.receive(get_hello()))
    report = [fr for fr in frames if fr.kind == "door"]
    # On attach the state is reported once, flagged REPLY: closed since boot.
    assert [fr.fields for fr in report] == [{"dev_ms": 0, "open": False, "duration_ms": 0}]
    frames = host.run(300)
    doors = [fr.fields for fr in frames if fr.kind == "door"]
    assert doors == [
        {"dev_ms": 100_000, "open": True, "duration_ms": 100_000},
        {"dev_ms": 145_000, "open": False, "duration_ms": 45_000},
    ]


def _tick_at(c: FridgeController, t_s: int, air_c: float) -> list[OutFrame]:
    raw = round(air_c * 16)
    return c.tick(t_s * 1000, raw, raw, False)


def test_thermostat_hysteresis_and_minimum_off_time() -> None:
    c = FridgeController("f", ControllerConfig(set_point_c=3.0, min_off_s=240, defrost_every_s=0))
    c.receive(get_hello())
    assert not c.compressor_on
    _tick_at(c, 1, 3.9)
    assert not c.compressor_on  # inside the band
    out = _tick_at(c, 2, 4.0)
    assert c.compressor_on and [fr.fields["reason"] for fr in out if fr.kind == "compressor"] == [
        "thermostat"
    ]
    _tick_at(c, 3, 2.1)
    assert c.compressor_on  # runs down to set − 1
    _tick_at(c, 4, 2.0)
    assert not c.compressor_on
    _tick_at(c, 5, 4.5)
    assert not c.compressor_on  # demand, but the compressor rests 240 s after stopping
    _tick_at(c, 243, 4.5)
    assert not c.compressor_on
    out = _tick_at(c, 244, 4.5)
    assert c.compressor_on
    assert [fr.fields["reason"] for fr in out if fr.kind == "compressor"] == ["min_off_time"]


def test_defrost_schedule_forces_the_compressor_off() -> None:
    c = FridgeController("f", ControllerConfig(defrost_every_s=3600, defrost_s=600))
    c.receive(get_hello())
    _tick_at(c, 3599, 5.0)
    assert c.compressor_on
    out = _tick_at(c, 3600, 5.0)
    assert [(fr.kind, fr.fields.get("reason")) for fr in out][:2] == [
        ("defrost", "schedule"),
        ("compressor", "defrost_start"),
    ]
    assert c.defrosting and not c.compressor_on
    _tick_at(c, 4199, 8.0)
    assert not c.compressor_on  # warm, but defrosting
    out = _tick_at(c, 4200, 8.0)
    assert [(fr.kind, fr.fields.get("active", fr.fields.get("on"))) for fr in out][:2] == [
        ("defrost", False),
        ("compressor", True),
    ]


def test_garbage_from_the_host_is_counted_not_fatal() -> None:
    f = SimFridge(FridgeSpec(id="f"), seed=2)
    assert f.receive(b"\x05\x01\x02\x03\x00garbage\x00") == []
    assert f.controller.rx_errors >= 1
    assert [fr.kind for fr in f.receive(get_hello())] == ["ack", "hello", *STATE_REPORT]
