"""A fridge's hourly vitals from hand-built record series (edge/vitals.py), and the job
that reports each hour once (edge/vitals_job.py)."""

from __future__ import annotations

import json
from pathlib import Path

from edge.store import EdgeStore, NewEvent, NewReading
from edge.vitals import PULLDOWN_MAX_S, LinkCounters, Rec, hour_vitals, link_health
from edge.vitals_job import REPORT_DELAY_S, VitalsJob
from xiaodian.wire.health import HEALTH_DEVICE, Defrost, LinkHealth, ProbeHealth, Reboot

HOUR = 500_000
A = HOUR * 3600.0  # the hour's start, UTC


def _air(t: float) -> float:
    """3.0 °C, warmed by the first opening (back at +300 s) and by the second for good."""
    if A + 100 < t <= A + 260:
        return 6.0 - (t - A - 120) / 60.0  # 6.0, 5.0, 4.0 at +120, +180, +240
    if A + 1000 < t <= A + 2900:
        return 7.0
    return 3.0


def _series() -> list[Rec]:
    recs = [Rec(A + s, "temp", {"probes": [
        [0, "ok", _air(A + s)],
        [1, "missing", None] if s in (600, 660, 720) else [1, "ok", 3.2]]})
        for s in range(-3600, 3600 + int(PULLDOWN_MAX_S) + 600, 60)]
    events = [
        (-5000, "hello", {"boot_count": 3, "reset_cause": "power_on", "firmware": [0, 2, 0],
                          "dev_ms": 9_000_000}),
        (-1000, "compressor", {"on": False, "reason": "thermostat", "state_report": True}),
        (-600, "defrost", {"active": True, "reason": "schedule"}),
        (100, "door", {"open": True}), (160, "door", {"open": False}),
        (500, "hello", {"boot_count": 4, "reset_cause": "watchdog", "firmware": [0, 2, 1],
                        "dev_ms": 2000}),
        (600, "compressor", {"on": True, "reason": "thermostat"}),
        (900, "defrost", {"active": False, "reason": "timeout"}),
        (1000, "door", {"open": True}), (1030, "door", {"open": False}),
        (1200, "compressor", {"on": False, "reason": "thermostat"}),
        (1500, "hello", {"boot_count": 4, "reset_cause": "watchdog", "firmware": [0, 2, 1],
                         "dev_ms": 1_002_000}),  # the same boot, seen again on reconnecting
        (1800, "power", {"mains": False, "backup_mv": 3700}),
        (2100, "power", {"mains": True, "backup_mv": 4100}),
        (2400, "compressor", {"on": True, "reason": "thermostat"}),
        (3000, "compressor", {"on": False, "reason": "thermostat"}),
        (3300, "defrost", {"active": True, "reason": "schedule"}),
        (3900, "defrost", {"active": False, "reason": "temperature"}),  # the next hour's
    ]
    return recs + [Rec(A + s, t, d) for s, t, d in events]


def test_an_hour_of_records_gives_its_vitals() -> None:
    link = link_health(LinkCounters(100, 1, 0, 0), LinkCounters(20_100, 3, 2, 1))
    v = hour_vitals("fridge-1", HOUR, reversed(_series()), link)  # order does not matter
    assert (v.fridge, v.hour, v.readings) == ("fridge-1", HOUR, 60)
    assert (v.compressor_known_s, v.compressor_on_s, v.duty, v.compressor_starts) == (
        3600.0, 1200.0, 0.3333, 2)
    # The defrost that began before the hour is measured whole; the one still running at
    # the hour's end is counted in the next, but its 300 s here are defrost time.
    assert v.defrosts == (Defrost(1500.0, "timeout"),)
    assert v.defrost_s == 900.0 + 300.0
    assert (v.door_openings, v.door_open_s) == (2, 90.0)
    # First opening: back within 0.5 °C of 3.0 at +300, 140 s after closing; the second
    # never came back within 30 min.
    assert (v.pulldowns_s, v.pulldown_unrecovered) == ((140.0,), 1)
    assert v.reboots == (Reboot(4, "watchdog"),)
    assert v.firmware == "0.2.1"
    assert v.probes == (ProbeHealth(0, 60, 0, 0, 0), ProbeHealth(1, 57, 0, 3, 0))
    assert (v.mains_lost, v.mains_off_s) == (1, 300.0)
    assert v.link == LinkHealth(20_000, 2, 2, 1, 2.0)


def test_unknown_state_gives_no_duty_cycle_and_no_invented_numbers() -> None:
    recs = [Rec(A + 3300, "compressor", {"on": True, "reason": "thermostat"}),
            Rec(A + 3500, "defrost", {"active": False, "reason": "timeout"})]
    v = hour_vitals("fridge-1", HOUR, recs)
    assert (v.compressor_known_s, v.compressor_on_s, v.duty) == (300.0, 300.0, None)
    assert v.defrosts == (Defrost(None, "timeout"),)  # its start was not seen
    assert (v.readings, v.probes, v.firmware, v.link, v.pulldowns_s) == (0, (), None, None, ())


def test_an_opening_followed_by_another_is_not_a_pulldown() -> None:
    recs = [r for r in _series() if not (r.type == "door" and r.t > A + 200)]
    recs += [Rec(A + 200, "door", {"open": True}), Rec(A + 210, "door", {"open": False})]
    v = hour_vitals("fridge-1", HOUR, recs)
    # The first closing (+160) is interrupted by the opening at +200; the second closing's
    # opening started at 6 °C air, so it is "back" at the first reading at or below 6.5.
    assert v.door_openings == 2
    assert v.pulldowns_s == (0.0,)


def test_link_counters_that_went_back_give_no_link() -> None:
    assert link_health(LinkCounters(500, 0, 0, 3), LinkCounters(10, 0, 0, 0)) is None
    assert link_health(LinkCounters(0, 0, 0, 0), LinkCounters(0, 0, 0, 0)) == LinkHealth(
        0, 0, 0, 0, None)


def _vitals_rows(store: EdgeStore) -> list[dict[str, object]]:
    return [json.loads(d) for (d,) in store.db.execute(
        "SELECT data FROM events WHERE device = ? AND type = 'vitals' ORDER BY seq",
        (HEALTH_DEVICE,))]


def test_the_job_reports_each_hour_once_across_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "edge.db"
    store = EdgeStore(db)
    start = A + 1800  # the agent starts in the middle of the hour
    store.add([NewReading("fridge-1", i, i * 60_000, start + i * 60, True,
                          [(0, "ok", 3.0), (1, "ok", 3.1)], 1) for i in range(1, 80)]
              + [NewEvent("fridge-1", "door", 100, 100_000, start + 100, True,
                          {"open": True}, 1),
                 NewEvent("fridge-1", "door", 101, 160_000, start + 160, True,
                          {"open": False}, 1)])
    job = VitalsJob(store, ["fridge-1"])
    job.mark(start, lambda f: {"frames_ok": 10})
    assert job.run(start, True) == 0
    job.mark(A + 3600, lambda f: {"frames_ok": 1010, "crc_errors": 1})
    assert job.run(A + 3600 + REPORT_DELAY_S - 1, True) == 0  # over, but not settled
    assert job.run(A + 3600 + REPORT_DELAY_S, True) == 1
    assert job.run(A + 3600 + REPORT_DELAY_S + 5, True) == 0
    store.close()

    again = VitalsJob(EdgeStore(db), ["fridge-1"])  # a restart: nothing is sent twice
    assert again.run(A + 3600 + REPORT_DELAY_S + 10, True) == 0
    # Two hours later the next two are due; the new run saw neither hour's start: no link.
    assert again.run(A + 3 * 3600 + REPORT_DELAY_S, True) == 2
    rows = _vitals_rows(again.store)
    assert [r["hour"] for r in rows] == [HOUR, HOUR + 1, HOUR + 2]
    first = rows[0]
    assert (first["readings"], first["door_openings"]) == (29, 1)
    assert first["link"] == {"frames": 1000, "errors": 1, "missed": 0, "reconnects": 0,
                             "per_10k": 10.0}
    assert rows[1]["link"] is None and rows[1]["readings"] == 50
    # Each went into the outbox, as an event of the device `health`.
    assert again.store.db.execute(
        "SELECT count(*) FROM outbox WHERE kind='events' AND device=?",
        (HEALTH_DEVICE,)).fetchone()[0] == 3
