"""Fault injection with real processes: nothing lost, nothing twice.

Each test runs the whole store (simulator, edge agent, TLS Mosquitto, cloud workers) through
`StoreStack`, breaks something the way it breaks in a shop, lets the system settle and then
compares the cloud database with the simulator's ground truth: every reading the fridges
took is in the cloud exactly once, with its values, and no stream has an open gap.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devstack.reconcile import (
    cloud_aggregate_spans,
    compare,
    truth_not_handed_over,
    truth_readings,
)
from devstack.stack import StoreStack
from devstack.testkit.wait import wait

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StoreStack]:
    options = {"speed": 120.0, **getattr(request, "param", {})}
    # No grace period at the end: records must have arrived during the run, not be handed
    # over when the simulator shuts down.
    s = StoreStack(
        tmp_path / "store",
        sim_flush_s=0.0,
        edge_confirm_timeout_s=5.0,  # records a restarted broker lost go out again soon
        reconnect_max_s=3.0,  # the outages are seconds long: do not wait 30 s to notice
        **options,
    )
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _assert_exactly_once(
    stack: StoreStack, compaction: bool = False, max_on_device: int = 3
) -> dict[str, dict[str, int]]:
    if max_on_device <= 3 and not compaction:
        # The simulator stops at settle(): first let the edge take what the fridges made
        # until now, so "on the device at the end" means the last moment's readings, not
        # how far a busy agent lagged behind (a fixed sleep would decide that). Compacted
        # readings leave the edge's table, so that run cannot be compared this way.
        _wait_caught_up(stack)
    assert stack.settle(timeout=120), "edge outbox did not drain into the cloud"
    summary = compare(stack.truth, stack.edge_db, stack.cloud_db, stack.store)
    for fridge, fig in summary.items():
        assert fig["emitted"] > 0, (fridge, fig)
        assert fig["missing"] == 0, (fridge, fig)
        assert fig["duplicated"] == fig["altered"] == fig["unexpected"] == 0, (fridge, fig)
        # Only what the fridge made in its last moments may still be on it (0.2 s is
        # 24 simulated seconds: two or three readings at most).
        assert fig["on_device"] <= max_on_device, (fridge, fig)
    # The same check straight from the files, values included.
    con = sqlite3.connect(stack.cloud_db)
    try:
        rows = con.execute(
            "SELECT device, dev_ms, fseq, probes FROM readings WHERE store=?", (stack.store,)
        ).fetchall()
        open_gaps = con.execute("SELECT count(*) FROM data_gaps WHERE filled_at IS NULL").fetchone()
    finally:
        con.close()
    got = {(d, ms): (f, tuple(tuple(p) for p in json.loads(pr))) for d, ms, f, pr in rows}
    assert len(got) == len(rows)
    truth = truth_readings(stack.truth)
    sent = {k: (v[0], tuple(tuple(p) for p in v[1])) for k, v in truth.items()}
    # Everything in the cloud was sent, with its values...
    assert {k: sent.get(k) for k in got} == got
    # ...and everything sent is in the cloud, but for what was still on a fridge at the end
    # (made or receipted too late for this run; the next run delivers it) and, where the
    # edge ran out of disk, what an aggregate covers.
    spans = cloud_aggregate_spans(stack.cloud_db, stack.store)
    absent = {
        k for k in set(sent) - set(got) if not any(a <= k[1] <= b for a, b in spans.get(k[0], ()))
    }
    assert absent <= truth_not_handed_over(stack.truth)
    assert bool(spans) == compaction
    assert open_gaps == (0,), "a stretch of records is missing in the cloud"
    return summary


def _uplink_boots(stack: StoreStack) -> int:
    con = sqlite3.connect(f"file:{stack.edge_db}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT value FROM meta WHERE key='boot'").fetchone()[0])
    finally:
        con.close()


def test_edge_agent_killed_ten_times_loses_nothing(stack: StoreStack) -> None:
    rng = random.Random(4)
    for kill in range(10):
        time.sleep(rng.uniform(0.3, 1.5))  # from when this agent opened its database
        stack.kill_and_restart("edge")  # SIGKILL: no flush, no goodbye, mid-anything
        # Each new process counts a boot when it opens the database; on a busy machine
        # Python takes a while to get there, and killing it before then tests nothing.
        wait(lambda n=kill + 2: _uplink_boots(stack) >= n, 60, f"edge boot {kill + 2}")
    time.sleep(2.0)
    summary = _assert_exactly_once(stack)
    assert _uplink_boots(stack) == 11
    assert sum(f["emitted"] for f in summary.values()) > 300


def test_broker_outages_with_and_without_its_persistence(stack: StoreStack) -> None:
    time.sleep(2.0)
    # Several simulated minutes down (x120: 3 s is 6 min), persistence kept.
    stack.restart_broker(down_s=3.0)
    time.sleep(3.0)
    # Down again, and this time the broker comes back with no memory of any session.
    stack.restart_broker(down_s=3.0, lose_state=True)
    time.sleep(3.0)
    _assert_exactly_once(stack)


@pytest.mark.parametrize("stack", [{"cloud_workers": 2}], indirect=True)
def test_a_cloud_worker_killed_mid_stream(stack: StoreStack) -> None:
    time.sleep(2.0)
    stack.parts["cloud-2"].kill()
    time.sleep(3.0)
    # A supervisor (systemd, Kubernetes) restarts it under the same worker id, and its
    # persistent session hands over what the broker kept for it.
    stack.parts["cloud-2"].start(stack.env)
    time.sleep(2.0)
    _assert_exactly_once(stack)


@pytest.mark.parametrize(
    "stack", [{"edge_disk_budget_mb": 0.08, "edge_compact_bucket_s": 300.0}], indirect=True
)
def test_disk_budget_exhausted_during_a_long_outage(stack: StoreStack) -> None:
    time.sleep(2.0)
    # 25 s down at x120 is 50 simulated minutes: far more than 0.08 MB of raw readings.
    assert stack.broker is not None
    stack.broker.stop()
    time.sleep(25.0)
    stack.broker.start()
    summary = _assert_exactly_once(stack, compaction=True)
    assert sum(f["compacted"] for f in summary.values()) > 0
    # Events are never compacted: every door and compressor record is in the cloud.
    made = [
        r
        for r in (json.loads(line) for line in stack.truth.read_text().splitlines())
        if r["kind"] in ("door", "compressor") and not r.get("state_report")
    ]
    con = sqlite3.connect(stack.cloud_db)
    try:
        stored = {
            (d, t, ms)
            for d, t, ms in con.execute(
                "SELECT device, type, dev_ms FROM events WHERE type IN ('door', 'compressor')"
            )
        }
    finally:
        con.close()
    assert made and {(r["device"], r["kind"], r["dev_ms"]) for r in made} <= stored


FAULTS_SCENARIO = Path(__file__).resolve().parents[2] / "hw_sim" / "scenarios" / "faults.toml"


@pytest.mark.parametrize("stack", [{"scenario": FAULTS_SCENARIO, "speed": 300.0}], indirect=True)
def test_serial_cable_unplugged_and_line_noise(stack: StoreStack) -> None:
    # faults.toml: fridge-1's cable is pulled for a minute every ten; fridge-2's line flips
    # bits (1e-4, then 1e-3 for half an hour) and drops bytes. 20 s at x300 = 100 minutes.
    time.sleep(20.0)
    # The run may end with the cable out: what the fridge logged meanwhile (a simulated
    # minute, plus the agent's reopen back-off) is still on it, as ground truth says.
    _assert_exactly_once(stack, max_on_device=25)
    con = sqlite3.connect(stack.edge_db)
    try:
        links = [
            json.loads(d)["state"]
            for (d,) in con.execute(
                "SELECT data FROM events WHERE device='fridge-1' AND type='link' ORDER BY boot, seq"
            )
        ]
        status = dict(con.execute("SELECT device, status FROM device_status").fetchall())
    finally:
        con.close()
    assert links.count("down") >= 5 and links.count("up") >= 6  # the agent saw each unplug
    noisy = json.loads(status["fridge-2"])
    assert noisy["crc_errors"] + noisy["cobs_errors"] > 10  # and the noise was real


def _edge_reading_keys(stack: StoreStack) -> set[tuple[str, int]]:
    """(fridge, device time) of every reading the edge agent has stored."""
    con = sqlite3.connect(f"file:{stack.edge_db}?mode=ro", uri=True)
    try:
        return {(d, int(ms)) for d, ms in con.execute("SELECT device, dev_ms FROM readings")}
    except sqlite3.OperationalError:  # the agent has made the file, not yet its tables
        return set()
    finally:
        con.close()


def _wait_edge_took(
    stack: StoreStack, stamped: Callable[[float], bool], what: str, count: int = 1
) -> None:
    """Wait until the edge stored `count` readings of every fridge whose wall time satisfies
    `stamped` (a bound for a stall, not a timing assertion: the agent runs under libfaketime,
    which reads the clock file on every clock call and makes it several times slower)."""

    def took() -> bool:
        con = sqlite3.connect(f"file:{stack.edge_db}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT device, wall FROM readings").fetchall()
        except sqlite3.OperationalError:  # the agent has made the file, not yet its tables
            return False
        finally:
            con.close()
        per: dict[str, int] = {}
        for device, wall in rows:
            if stamped(wall):
                per[device] = per.get(device, 0) + 1
        return len(per) == 2 and min(per.values()) >= count

    wait(took, timeout=60, what=what)


def _wait_caught_up(stack: StoreStack) -> None:
    """Wait until every reading the fridges had taken when we looked is at the edge."""

    def caught_up() -> bool:
        taken = set(truth_readings(stack.truth))
        return bool(taken) and taken <= _edge_reading_keys(stack)

    wait(caught_up, timeout=60, what="the edge to take every reading the fridges had made")


LIBFAKETIME = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1"))), None)


@pytest.fixture
def clock_file(tmp_path: Path) -> Path:
    path = tmp_path / "faketime"
    path.write_text("+0\n")
    return path


@pytest.mark.skipif(LIBFAKETIME is None, reason="libfaketime missing: apt-get install faketime")
def test_terminal_clock_jumping_a_day_forward_and_back(tmp_path: Path, clock_file: Path) -> None:
    # The edge agent's wall clock (only) follows the file: libfaketime reads it on every
    # call; its monotonic clock, which all its timers use, is left alone.
    env = {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME_TIMESTAMP_FILE": str(clock_file),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    stack = StoreStack(
        tmp_path / "store",
        speed=120.0,
        sim_flush_s=0.0,
        edge_confirm_timeout_s=5.0,
        reconnect_max_s=3.0,
        edge_env=env,
    )
    stack.start()
    try:
        _wait_edge_took(stack, lambda wall: True, "the first readings")
        clock_file.write_text("+1d\n")
        _wait_edge_took(stack, lambda wall: wall - time.time() > 80_000, "readings a day ahead",
                        count=20)
        # A reconnection a day ahead: TLS checks the broker's certificate with this clock, and
        # the agent waits between attempts (libfaketime breaks time.sleep: it used to die here).
        stack.restart_broker(down_s=1.0)
        _wait_edge_took(stack, lambda wall: wall - time.time() > 80_000, "readings a day ahead",
                        count=40)
        clock_file.write_text("+0\n")  # and back: a day backwards in one step
        back = time.time()
        # The agent must go on taking records: everything the fridges had taken by now
        # reaches it, and then more stamped with the corrected clock.
        taken = set(truth_readings(stack.truth))
        _wait_edge_took(stack, lambda wall: back <= wall < back + 3600,
                        "readings stamped after the clock went back", count=20)
        wait(lambda: taken <= _edge_reading_keys(stack), timeout=60,
             what="the readings taken before the clock went back, at the edge")
        _assert_exactly_once(stack)
        con = sqlite3.connect(stack.cloud_db)
        try:
            walls = con.execute(
                "SELECT wall - received_at, wall_corrected - received_at, time_method "
                "FROM readings WHERE store=?",
                (stack.store,),
            ).fetchall()
        finally:
            con.close()
    finally:
        stack.stop()
    ahead = [w for w in walls if w[0] > 80_000]
    # Records stamped a day ahead were kept as stamped (the source time is never rewritten)
    # and the cloud's correction brought them back within seconds of their arrival.
    assert ahead, "no record carried the jumped clock"
    assert all(abs(corrected) < 120 and method == "offset" for _, corrected, method in ahead)
