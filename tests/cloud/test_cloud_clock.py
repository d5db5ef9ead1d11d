"""Terminal clock offsets: the pure estimator, the database, and a real broker with a worker
whose terminals are a day ahead or behind."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cloud_gateway.clock import ClockPolicy, ClockWindow, correct
from cloud_gateway.db import Database
from cloud_gateway.ingest import ingest
from devstack.testkit.edge import ingest_worker
from devstack.testkit.mqtt_clients import connected
from devstack.testkit.wait import wait
from xiaodian.mqtt import MqttSettings
from xiaodian.wire.payloads import batch_payload, event_record, reading_record, state_payload

DAY = 86400.0
T0 = 1_750_000_000.0  # "true" time of the first record in these tests
POLICY = ClockPolicy(window_s=600.0, threshold_s=2.0)
TELEMETRY = "xd/v1/store-001/telemetry"
STATE = "xd/v1/store-001/state"


def readings(seqs: range | list[int], wall_of: Callable[[int], float], synced: bool,
             boot: int = 1) -> bytes:
    records = [reading_record(s, s, 1000 * s, wall_of(s), synced, [(0, "ok", 3.0)])
               for s in seqs]
    return batch_payload("readings", "store-001", "fridge-1", boot, records)


@pytest.fixture
def db(db_target: Path | str) -> Iterator[Database]:
    """Each test runs on SQLite and on PostgreSQL (conftest.db_target)."""
    with Database.open(db_target) as d:
        yield d


# ---------------------------------------------------------------- the estimator


def test_the_minimum_ignores_delayed_samples() -> None:
    w = ClockWindow()
    w = w.add(100.0, 99.7, POLICY)  # 0.3 s delay
    w = w.add(160.0, 100.0, POLICY)  # a backlog message: 60 s delay
    w = w.add(161.0, 160.5, POLICY)  # 0.5 s
    assert w.offset == pytest.approx(0.3)


def test_a_forward_jump_shows_at_once_a_backward_one_after_the_window() -> None:
    w = ClockWindow().add(100.0, 99.8, POLICY)
    w = w.add(110.0, 110.0 + DAY - 0.2, POLICY)  # the terminal jumped a day ahead
    assert w.offset == pytest.approx(-DAY + 0.2)
    w = w.add(120.0, 120.0 - 0.2, POLICY)  # and back: the low sample still rules...
    assert w.offset == pytest.approx(-DAY + 0.2)
    w = w.add(120.0 + 600.0, 720.0 - 0.2, POLICY)  # ...until it leaves the window
    assert w.offset == pytest.approx(0.2)


def test_samples_may_arrive_out_of_order_and_the_window_stays_small() -> None:
    w = ClockWindow()
    for t in (5.0, 3.0, 4.0, 1.0, 2.0):  # two workers: receive times out of order
        w = w.add(t, t - 1.0 - t / 10, POLICY)
    assert w.offset == pytest.approx(1.1)  # t=1, the lowest, though it came fourth
    many = ClockWindow()
    for i in range(1000):
        many = many.add(float(i), float(i) - 0.1 - (i % 7) / 10, POLICY)
    assert len(many.samples) <= 7
    assert ClockWindow.loads(many.dumps()) == many


def test_correct_trusts_only_a_synced_clock_that_agrees() -> None:
    assert correct(1000.0, True, 0.4, POLICY) == (1000.0, "terminal")
    assert correct(1000.0, True, -DAY, POLICY) == (1000.0 - DAY, "offset")  # lying sync flag
    assert correct(1000.0, False, 0.4, POLICY) == (1000.4, "offset")
    assert correct(1000.0, False, None, POLICY) == (1000.0, "terminal")


# ---------------------------------------------------------------- in the database


@pytest.mark.parametrize("skew", [DAY, -DAY], ids=["day-ahead", "day-behind"])
@pytest.mark.parametrize("synced", [False, True], ids=["unsynced", "claims-synced"])
def test_a_skewed_terminal_is_corrected_and_its_wall_kept(db: Database, skew: float,
                                                         synced: bool) -> None:
    # Readings every 10 s of true time; the terminal stamps them skew seconds off. The first
    # batch reaches the cloud after 0.4 s, the second was held back 40 s (a backlog).
    ingest(db, TELEMETRY, readings(range(1, 6), lambda s: T0 + 10 * s + skew, synced),
           "w", T0 + 50 + 0.4, policy=POLICY)
    ingest(db, TELEMETRY, readings(range(6, 11), lambda s: T0 + 10 * s + skew, synced),
           "w", T0 + 100 + 40.0, policy=POLICY)
    rows = list(db.readings("store-001", "fridge-1"))
    for r in rows:
        assert r["wall"] == T0 + 10 * r["seq"] + skew  # never rewritten
        assert r["time_method"] == "offset"
        assert r["wall_corrected"] == pytest.approx(T0 + 10 * r["seq"] + 0.4)
    (store,) = db.stores()
    assert store["clock"] == {"boot": 1, "offset_s": pytest.approx(-skew + 0.4),
                              "synced": synced, "method": "offset",
                              "updated_at": T0 + 140.0}
    (entry,) = db.clock_history("store-001")  # the backlog sample moved nothing
    assert entry["offset_s"] == pytest.approx(-skew + 0.4) and entry["source"] == (
        "readings/fridge-1")


def test_a_synced_terminal_within_the_threshold_is_believed(db: Database) -> None:
    ingest(db, TELEMETRY, readings([1, 2], lambda s: T0 + s, True), "w", T0 + 2.3,
           policy=POLICY)
    for r in db.readings("store-001", "fridge-1"):
        assert (r["wall_corrected"], r["time_method"]) == (r["wall"], "terminal")
    assert db.stores()[0]["clock"]["method"] == "terminal"


def test_history_records_when_the_clock_went_wrong_and_back(db: Database) -> None:
    def at(t: float, skew: float, seq: int) -> None:
        ingest(db, TELEMETRY, readings([seq], lambda s: t - 0.2 + skew, skew == 0.0),
               "w", t, policy=POLICY)

    at(T0, 0.0, 1)
    at(T0 + 10, 0.0, 2)  # jitter: no new history entry
    at(T0 + 20, DAY, 3)  # jumped a day ahead (and lost sync)
    at(T0 + 1000, 0.0, 4)  # back, synced again, the old sample is out of the window
    history = [(h["at"], round(h["offset_s"], 3), h["synced"], h["method"])
               for h in reversed(db.clock_history("store-001"))]
    assert history == [(T0, 0.2, True, "terminal"), (T0 + 20, -DAY + 0.2, False, "offset"),
                       (T0 + 1000, 0.2, True, "terminal")]
    corrected = {r["seq"]: r["wall_corrected"] for r in db.readings("store-001", "fridge-1")}
    assert corrected[3] == pytest.approx(T0 + 20)


def test_state_messages_live_births_count_wills_and_retained_copies_do_not(
        db: Database) -> None:
    def state(online: bool, wall: float) -> bytes:
        return state_payload("store-001", online, 1, wall, "0.1.0", ["fridge-1"])

    # Retained birth from yesterday, then the Will stamped at connect: neither is a sample.
    ingest(db, STATE, state(True, T0 - DAY), "w", T0, retained=True, policy=POLICY)
    ingest(db, STATE, state(False, T0 - 5000), "w", T0, policy=POLICY)
    assert db.stores()[0]["clock"] is None
    ingest(db, STATE, state(True, T0 + DAY), "w", T0 + 0.1, policy=POLICY)  # live birth
    clock = db.stores()[0]["clock"]
    assert clock["offset_s"] == pytest.approx(-DAY + 0.1) and clock["synced"] is None
    # An event stamped by that terminal is corrected with the birth's estimate.
    ev = batch_payload("events", "store-001", "fridge-1", 1, [
        event_record(1, "door", 1, 5, T0 + DAY + 30, False, {"open": True})])
    ingest(db, "xd/v1/store-001/events", ev, "w", T0 + 45, policy=POLICY)
    (fridge,) = db.fridges("store-001")
    assert fridge["door"]["wall"] == T0 + DAY + 30
    assert fridge["door"]["wall_corrected"] == pytest.approx(T0 + 30.1)
    assert fridge["door"]["time_method"] == "offset"


# ---------------------------------------------------------------- through the broker


def test_a_worker_corrects_real_payloads_a_day_off(
    mqtt_settings: Callable[[str], MqttSettings], tmp_path: Path
) -> None:
    db = tmp_path / "cloud.sqlite"
    with ingest_worker(mqtt_settings("cloud-gateway"), db, "cloud-1") as worker:
        settings = mqtt_settings("store-001")
        with connected(settings, "store-001") as client:
            for boot, skew in ((1, DAY), (2, -DAY)):
                now = time.time()
                payload = batch_payload("readings", "store-001", "fridge-1", boot, [
                    reading_record(s, s, s, now + skew - 3 + s, False, [(0, "ok", 3.0)])
                    for s in (1, 2, 3)])
                client.publish(TELEMETRY, payload, qos=1).wait_for_publish(5)
        wait(lambda: worker.counters.snapshot()["acked"] >= 2, 30, "both batches acked",
             interval=0.02)
    with Database.open_readonly(db) as d:
        rows = list(d.readings("store-001", "fridge-1"))
        assert len(rows) == 6
        for r in rows:
            # The newest record of each batch was stamped "now" on the skewed clock: its
            # corrected time is within the (local) delivery delay of when the cloud got it.
            assert r["time_method"] == "offset"
            assert abs(r["wall"] - r["received_at"]) > DAY - 10
            assert abs(r["wall_corrected"] - (r["received_at"] - 3 + r["seq"])) < 1.0
        offsets = {e["boot"]: e["offset_s"] for e in d.clock_history("store-001")}
    assert offsets[1] == pytest.approx(-DAY, abs=1.0)
    assert offsets[2] == pytest.approx(DAY, abs=1.0)
