"""`xiaodian fleet run`'s table: the operator's language, and a verdict that follows the
figures (the run itself is tests/e2e/test_fleet_e2e.py)."""

from __future__ import annotations

import dataclasses

from devstack.fleet_cli import table
from devstack.fleet_run import FleetReport


def _report(**changes: object) -> FleetReport:
    base = FleetReport(
        stores=10_000, speed=4.0, window_s=60.0, cert_issue_s=20.8, certs_issued=5_000,
        connect_s=119.0, connected=10_000, accepted_ids=10_000,
        foreign_publish="Not authorized", bundles=10_000, readings_published=960_000,
        events_published=40_000, readings_stored=960_000, events_stored=40_000,
        duplicates=0, lost=0, unconfirmed=0, republished=0, refused=0, disconnects=0,
        p50_s=0.15, p95_s=0.5, p99_s=0.875, max_s=1.2, db_p99_s=0.3,
        cpu={"broker": 3.0, "generators": 31.0}, cores=2)
    return dataclasses.replace(base, **changes)


def test_the_table_is_chinese_first_and_english_on_request() -> None:
    zh = table(_report(), None)
    assert "按真实节奏折合的门店数" in zh and "40,000" in zh
    assert zh.splitlines()[-1] == "已承载：无丢失，p99 不超过 2 秒"
    en = table(_report(), "en")
    assert "Equivalent stores at the real cadence" in en
    assert en.splitlines()[-1] == "Sustained: nothing lost, p99 within 2 s"


def test_a_late_p99_or_one_lost_record_is_not_sustained() -> None:
    assert _report().ok
    for bad in (_report(p99_s=2.01), _report(lost=1), _report(duplicates=1),
                _report(unconfirmed=1), _report(connected=9_999)):
        assert not bad.ok
        assert table(bad, "en").splitlines()[-1] == "Not sustained"
