"""HACCP record: MKT and excursions by hand, then the report over a real database (CSV, CLI,
HTTP page, the owner JSON endpoints)."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from haccp_day import STORE, T0, fill_day

from cloud_gateway import haccp
from cloud_gateway.db import Database
from cloud_gateway.haccp import Excursion, Sample
from cloud_gateway.web import Api, HttpServer
from devstack.testkit.http_client import get, local

DAY = date(2025, 6, 1)
UTC_TZ = ZoneInfo("UTC")


# ---------------------------------------------------------------- pure: MKT


def test_mkt_two_equal_samples_by_hand() -> None:
    # 0 °C and 10 °C, one hour each. By hand, ΔH/R = 10 000 K:
    #   exp(-10000/273.15) = exp(-36.6099) = 1.2629e-16
    #   exp(-10000/283.15) = exp(-35.3170) = 4.6014e-16
    #   mean = 2.9322e-16, -ln(mean) = 35.7657, 10000/35.7657 = 279.600 K = 6.43 °C
    # (above the arithmetic mean 5 °C: warm hours count for more).
    assert haccp.mkt([(0.0, 0.0), (3600.0, 10.0)]) == pytest.approx(6.4327, abs=1e-3)


def test_mkt_of_a_constant_is_that_constant() -> None:
    samples = [(60.0 * i, 3.0) for i in range(100)]
    assert haccp.mkt(samples) == pytest.approx(3.0, abs=1e-9)
    assert haccp.mkt([(0.0, -20.0)]) == pytest.approx(-20.0)  # no underflow when cold


def test_mkt_is_time_weighted() -> None:
    # An hour of 2 °C each minute, then a burst of 60 samples of 12 °C within one minute.
    # Each sample stands for half the interval to each neighbour: 2 °C weighs
    # 30 + 59·60 + (60 + 1)/2 = 3600.5 s and 12 °C weighs 59·1 + 0.5 = 59.5 s.
    even = [(60.0 * i, 2.0) for i in range(61)]
    burst = [(3600.0 + i, 12.0) for i in range(1, 61)]
    k2, k12 = (math.exp(-10_000 / (c + 273.15)) for c in (2.0, 12.0))
    by_time = 10_000 / -math.log((3600.5 * k2 + 59.5 * k12) / 3660) - 273.15
    assert haccp.mkt(even + burst) == pytest.approx(by_time, abs=1e-9)
    assert haccp.mkt(even + burst) < 2.5  # by sample count (61 vs 60) it would be ~8.6 °C
    # A gap longer than MAX_GAP_S counts only MAX_GAP_S on each side.
    assert haccp.mkt([(0.0, 2.0), (1e6, 12.0)]) == pytest.approx(
        haccp.mkt([(0.0, 2.0), (900.0, 12.0)]))


def test_day_stats_mean_is_time_weighted() -> None:
    s = haccp.day_stats([(0.0, 2.0), (60.0, 4.0), (120.0, 6.0)])
    assert s is not None
    assert (s.samples, s.min_c, s.max_c) == (3, 2.0, 6.0)
    assert s.mean_c == pytest.approx((2.0 * 30 + 4.0 * 60 + 6.0 * 30) / 120)
    assert haccp.day_stats([]) is None


# ---------------------------------------------------------------- pure: excursions


def test_excursions_start_end_peak_and_ongoing() -> None:
    # Without a minimum duration, to pin down where one starts and ends: at the first sample
    # back at or below 5 °C (360 s), confirmed by the 4 °C after it (at or below 4.5 °C).
    temps = [3, 4, 5, 5.5, 7, 6, 5, 4, 9, 8.5]
    samples = [(60.0 * i, float(c)) for i, c in enumerate(temps)]
    assert haccp.excursions(samples, 5.0, min_duration_s=0) == [
        Excursion(5.0, 180.0, 360.0, 7.0, False),  # 5.0 itself is not above
        Excursion(5.0, 480.0, 540.0, 9.0, True),  # still above at the last sample
    ]
    (hot,) = haccp.excursions(samples, 8.0, min_duration_s=0)
    assert (hot.start, hot.end, hot.duration_s, hot.peak_c, hot.ongoing) == (
        480.0, 540.0, 60.0, 9.0, True)
    # With the shipped minimum of 10 min, none of these short ones is an excursion.
    assert haccp.excursions(samples, 5.0) == []
    assert haccp.excursions([], 5.0) == []
    assert haccp.excursions([(0.0, 4.0), (60.0, 4.5)], 5.0) == []


def test_a_single_reading_on_the_limit_is_no_excursion() -> None:
    # The demo's record had 21 rows of "0 min, 5.1 °C": one reading above 5 °C each time.
    # Each blip is followed by 19 min at 4.9 °C: over after 10 min back, 1 min long, dropped.
    steady = [(60.0 * i, 4.9) for i in range(120)]
    blips = [(t, 5.1 if i % 20 == 10 else c) for i, (t, c) in enumerate(steady)]
    assert haccp.excursions(blips, 5.0) == []
    # Kept apart (each over after 10 min back at 4.9), they are six 1-min periods.
    assert haccp.excursions(blips, 5.0, min_duration_s=0) == [
        Excursion(5.0, 600.0 + 1200.0 * k, 660.0 + 1200.0 * k, 5.1, False) for k in range(6)]


def test_a_probe_dithering_on_the_limit_is_one_excursion_not_many() -> None:
    # 5.1/4.9 alternating each minute for 30 min (back below never for 10 min, never down to
    # 4.5), then 4.0: by hand, one excursion from the first 5.1 (60 s) to the last 4.9
    # (1800 s, confirmed by the 4.0), 29 min, peak 5.1.
    temps = [4.0] + [5.1 if i % 2 == 0 else 4.9 for i in range(30)] + [4.0]
    samples = [(60.0 * i, c) for i, c in enumerate(temps)]
    assert haccp.excursions(samples, 5.0) == [Excursion(5.0, 60.0, 1800.0, 5.1, False)]
    # Without hysteresis it would have been 15 one-minute rows, all of them dropped.
    assert haccp.excursions(samples, 5.0, hysteresis_c=0.0, min_duration_s=0) == [
        Excursion(5.0, 60.0 + 120.0 * k, 120.0 + 120.0 * k, 5.1, False) for k in range(15)]


def test_minimum_duration_is_inclusive_and_ongoing_ones_count_once_long_enough() -> None:
    # 10 min above (600 s from first above to first back below) is recorded; 9 min is not.
    ten = [(0.0, 4.0)] + [(60.0 * i, 6.0) for i in range(1, 11)] + [(660.0, 4.0)]
    assert haccp.excursions(ten, 5.0) == [Excursion(5.0, 60.0, 660.0, 6.0, False)]
    nine = [(0.0, 4.0)] + [(60.0 * i, 6.0) for i in range(1, 10)] + [(600.0, 4.0)]
    assert haccp.excursions(nine, 5.0) == []
    # Back below for 9 min (not yet 10) and never down to 4.5: still the same excursion.
    hover = ten[:-1] + [(660.0 + 60.0 * i, 4.8) for i in range(9)] + [(1200.0, 7.0),
                                                                      (1260.0, 4.0)]
    assert haccp.excursions(hover, 5.0) == [Excursion(5.0, 60.0, 1260.0, 7.0, False)]
    # Still above at the end of the data: kept once it has lasted 10 min.
    assert haccp.excursions(ten[:-1], 5.0) == []  # 60..600 s: 9 min so far
    assert haccp.excursions([*ten[:-1], (660.0, 5.2)], 5.0) == [
        Excursion(5.0, 60.0, 660.0, 6.0, True)]


def test_intervals_from_changes_clipped_to_window() -> None:
    changes = [(50.0, True), (120.0, False), (200.0, True), (260.0, False), (300.0, True)]
    assert haccp.intervals(changes, 100.0, 400.0) == [
        (100.0, 120.0), (200.0, 260.0), (300.0, 400.0)]
    assert haccp.intervals([(10.0, True), (20.0, False)], 100.0, 400.0) == []
    assert haccp.intervals([(10.0, True), (20.0, True)], 100.0, 400.0) == [(100.0, 400.0)]


def test_downsample_keeps_peaks_and_bounds_the_count() -> None:
    samples = [Sample(float(i), 3.0, 2.0) for i in range(5000)]
    samples[2345] = Sample(2345.0, 11.0, 9.0)
    out = haccp.downsample(samples, 0.0, 5000.0, 1000)
    assert len(out) <= 1000
    assert max(s.product_c or 0 for s in out) == 11.0
    assert [s.t for s in out] == sorted(s.t for s in out)
    assert haccp.downsample(samples[:10], 0.0, 10.0, 1000) == samples[:10]
    # Buckets of equal time: readings only in the first and last tenth keep the gap.
    ends = [s for s in samples if s.t < 500 or s.t >= 4500]
    gapped = haccp.downsample(ends, 0.0, 5000.0, 100)
    assert not [s for s in gapped if 500 <= s.t < 4500] and len(gapped) <= 100
    with pytest.raises(ValueError, match="at least 2 points"):
        haccp.downsample(samples, 0.0, 5000.0, 1)


def test_fold_alerts_lifecycle() -> None:
    base = {"id": "f/warm/1", "fridge": "f", "rule": "warm", "audience": "owner",
            "started_at": 100.0}
    alerts = haccp.fold_alerts([
        ("f", 130.0, base | {"change": "raised", "severity": "warning", "peak_c": 6.0,
                             "message": "warm"}),
        ("f", 160.0, base | {"change": "updated", "severity": "critical", "peak_c": 9.0,
                             "message": "hot"}),
        ("f", 170.0, {"change": "raised"}),  # no id: skipped
        ("f", 200.0, base | {"id": "f/door/2", "change": "raised", "severity": "warning",
                             "audience": "terminal"}),
    ])
    warm, door = alerts
    assert (warm.severity, warm.message, warm.peak_c, warm.raised_at, warm.changed_at,
            warm.active) == ("critical", "hot", 9.0, 130.0, 160.0, True)
    assert haccp.fridge_state(alerts) == "critical"
    assert haccp.fridge_state([door]) == "ok"  # terminal-only alerts do not page the owner
    cleared = haccp.fold_alerts([("f", 130.0, base | {"change": "raised", "severity": "warning"}),
                                 ("f", 300.0, base | {"change": "cleared"})])
    assert cleared[0].cleared_at == 300.0 and haccp.fridge_state(cleared) == "ok"


@pytest.fixture
def day_db(db_target: Path | str) -> Path | str:
    """A day of two fridges, on SQLite and on PostgreSQL (conftest.db_target)."""
    path = db_target
    with Database.open(path) as db:
        fill_day(db)
    return path


def test_report_per_fridge(day_db: Path | str) -> None:
    with Database.open_readonly(day_db) as db:
        f1, f2 = haccp.report(db.conn, STORE, DAY, UTC_TZ)
    assert (f1.fridge, f2.fridge) == ("fridge-1", "fridge-2")
    assert f1.stats is not None and f2.stats is not None
    assert f1.stats.samples == f2.stats.samples == 1440
    assert f1.excursions == []
    assert [a.rule for a in f1.alerts] == ["door"] and not f1.alerts[0].active
    assert (f2.stats.min_c, f2.stats.max_c) == (3.0, 9.0)
    assert f2.stats.mkt_c > f2.stats.mean_c > 3.0
    warm, hot = f2.excursions
    assert (warm.threshold_c, warm.start, warm.end, warm.peak_c) == (5.0, T0 + 36_000,
                                                                     T0 + 39_600, 9.0)
    assert (hot.threshold_c, hot.start, hot.end, hot.peak_c) == (8.0, T0 + 37_800,
                                                                 T0 + 38_700, 9.0)
    (alert,) = f2.alerts
    assert (alert.severity, alert.active, alert.peak_c) == ("critical", True, 9.0)
    # The day before has neither readings nor the alert (it started on the 1st).
    with Database.open_readonly(day_db) as db:
        before = haccp.report(db.conn, STORE, date(2025, 5, 31), UTC_TZ)
    assert all(d.stats is None and not d.alerts and not d.excursions for d in before)


def test_csv_rows(day_db: Path | str) -> None:
    with Database.open_readonly(day_db) as db:
        days = haccp.report(db.conn, STORE, DAY, UTC_TZ)
    out = io.StringIO()
    haccp.write_csv(days, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(r["record"], r["fridge"]) for r in rows] == [
        ("day", "fridge-1"), ("alert", "fridge-1"), ("day", "fridge-2"),
        ("excursion", "fridge-2"), ("excursion", "fridge-2"), ("alert", "fridge-2")]
    day2 = rows[2]
    assert (day2["samples"], day2["min_c"], day2["max_c"]) == ("1440", "3.00", "9.00")
    exc = rows[3]
    assert (exc["threshold_c"], exc["start"], exc["duration_min"], exc["peak_c"]) == (
        "5", "2025-06-01T10:00:00+00:00", "60.0", "9.00")
    assert rows[5]["severity"] == "critical" and rows[5]["cleared"] == ""


def test_cli_csv_and_html(day_db: Path | str) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "xiaodian", "cloud", "haccp", "--db",
                               str(day_db), "--store", STORE, *args],
                              capture_output=True, text=True, timeout=30)

    out = run("--day", "2025-06-01", "--tz", "Asia/Shanghai")
    assert out.returncode == 0, out.stderr
    first = next(csv.DictReader(io.StringIO(out.stdout)))
    # Shanghai's 1 June is 16:00 UTC 31 May .. 16:00 UTC 1 June: 16 h of our data.
    assert (first["tz"], first["samples"]) == ("Asia/Shanghai", str(16 * 60))
    # Default: the store's zone (Asia/Shanghai, no profile set), where the newest reading
    # (23:59 UTC on 1 June) falls on 2 June; the page in Chinese.
    html_out = run("--format", "html", "--fridge", "fridge-2")
    assert html_out.returncode == 0, html_out.stderr
    assert "HACCP 记录 · store-001 · 2025-06-02" in html_out.stdout
    assert html_out.stdout.count("<svg") == 1 and "limit-hot" in html_out.stdout
    english = run("--format", "html", "--fridge", "fridge-2", "--tz", "UTC", "--lang", "en")
    assert "HACCP record · store-001 · 2025-06-01" in english.stdout
    assert '<html lang="en">' in english.stdout
    bad = run("--day", "1 June")
    assert bad.returncode == 1 and "YYYY-MM-DD" in bad.stderr
    missing = run("--fridge", "fridge-9")
    assert missing.returncode == 1 and "no readings" in missing.stderr


def test_store_profile_cli_sets_the_zone_the_record_uses(day_db: Path | str) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "xiaodian", "cloud", *args,
                               "--db", str(day_db)], capture_output=True, text=True, timeout=30)

    shown = cli("store", "show", STORE)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {
        "store": STORE, "name": STORE, "tz": "Asia/Shanghai", "address": "", "district": "",
        "lat": None, "lon": None, "hours": "", "pickup": True, "delivery_radius_m": 0,
        "slot_capacity": 20}
    bad = cli("store", "set", STORE, "--tz", "Mars/Base")
    assert bad.returncode == 1 and "unknown time zone" in bad.stderr
    assert cli("store", "set", STORE).returncode == 1  # nothing to set
    got = cli("store", "set", STORE, "--name", "幸福路店", "--tz", "Europe/London")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == json.loads(shown.stdout) | {"name": "幸福路店",
                                                                 "tz": "Europe/London"}
    assert json.loads(cli("store", "show", STORE).stdout)["tz"] == "Europe/London"
    # The record follows: London's 1 June is 23:00 UTC 31 May .. 23:00 UTC 1 June, 23 h of
    # our minutes; an excursion's times carry London's summer offset.
    out = cli("haccp", "--store", STORE, "--day", "2025-06-01")
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert (rows[0]["tz"], rows[0]["samples"]) == ("Europe/London", str(23 * 60))
    exc = next(r for r in rows if r["record"] == "excursion")
    assert exc["start"] == "2025-06-01T11:00:00+01:00"
    assert "幸福路店" in cli("haccp", "--store", STORE, "--format", "html").stdout


# ---------------------------------------------------------------- over HTTP


@pytest.fixture
def server(day_db: Path | str) -> Iterator[HttpServer]:
    with HttpServer(Api(day_db, api_token=READER), "127.0.0.1", 0) as srv:
        yield srv


READER = b"reader-token-0123456789abcdef0123456789"  # the service token: an operator


def _get(srv: HttpServer, path: str) -> tuple[int, str, bytes]:
    r = get(local(srv.port, path), token=READER.decode(), timeout=5)
    return r.status, r.headers.get("Content-Type") or "", r.body


def test_history_endpoint(server: HttpServer) -> None:
    status, ctype, body = _get(server, f"/api/stores/{STORE}/fridges/fridge-1/history?hours=24")
    assert status == 200 and ctype == "application/json"
    h = json.loads(body)
    assert h["until"] == T0 + 1439 * 60 and h["since"] == h["until"] - 86_400
    assert h["total"] == 1440 and len(h["readings"]) <= 1000 and h["downsampled"]
    assert h["intervals"]["defrost"] == [[T0 + 6 * 3600, T0 + 6 * 3600 + 1500]]
    assert h["intervals"]["door"] == [[T0 + 8 * 3600, T0 + 8 * 3600 + 600]]
    assert len(h["intervals"]["compressor"]) == 24
    assert h["limits"] == {"warm_c": 5.0, "hot_c": 8.0, "freeze_c": -0.5}
    assert h["tz"] == "Asia/Shanghai"  # the store's zone (no profile: the default)
    status, _, body = _get(server, f"/api/stores/{STORE}/fridges/fridge-2/history?hours=2")
    assert len(json.loads(body)["readings"]) == 121
    assert _get(server, f"/api/stores/{STORE}/fridges/fridge-1/history?hours=0")[0] == 400


def test_owner_endpoint(server: HttpServer) -> None:
    status, _, body = _get(server, f"/api/stores/{STORE}/owner")
    assert status == 200
    doc = json.loads(body)
    assert (doc["name"], doc["tz"]) == (STORE, "Asia/Shanghai")
    f1, f2 = doc["fridges"]
    assert (f1["fridge"], f1["state"], f1["alerts"]) == ("fridge-1", "ok", [])
    assert f2["state"] == "critical" and f2["latest"]["product_c"] == 3.0
    (alert,) = f2["alerts"]
    assert alert["id"] == f"fridge-2/warm/{round((T0 + 36_000) * 1000)}"
    assert alert["acknowledged"] is False


def test_haccp_page(server: HttpServer) -> None:
    status, ctype, body = _get(server, f"/haccp/{STORE}/fridge-2?day=2025-06-01")
    assert status == 200 and ctype.startswith("text/html")
    page = body.decode()
    # In Chinese, in the store's zone (Asia/Shanghai: the 10:00 UTC excursion at 18:00).
    assert "MKT" in page and "9.0\u00a0°C" in page and "未确认" in page
    assert "<td class=\"nowrap\">18:00</td>" in page and "Asia/Shanghai" in page
    assert page.count('class="line product"') >= 1
    status, _, body = _get(server, f"/haccp/{STORE}/fridge-2?day=2025-06-01&tz=UTC&lang=en")
    page = body.decode()
    assert status == 200 and "not acknowledged" in page.lower() and "10:00" in page
    # Refusals a person sees are pages in their language, with the status.
    status, ctype, body = _get(server, f"/haccp/{STORE}/fridge-9")
    assert status == 404 and ctype.startswith("text/html") and "没有温度读数" in body.decode()
    status, _, body = _get(server, f"/haccp/{STORE}/fridge-2?day=June")
    assert status == 400 and "YYYY-MM-DD" in body.decode()
    assert _get(server, f"/haccp/{STORE}?tz=Mars/Base")[0] == 400
    status, _, body = _get(server, f"/haccp/{STORE}")
    assert status == 200 and body.decode().count("<svg") == 2
