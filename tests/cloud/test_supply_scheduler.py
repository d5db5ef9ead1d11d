"""The supply tick on SQLite and PostgreSQL, time injected: the cutoff runs by itself
exactly once with two workers, a dead worker's claim lapses, and residents get the pickup
notices of a received wave once; then those notices go out through Apprise to a real
local receiver, derived from the resident's phone number."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from receiving_world import AFTER, BEFORE, WAVE, db, dispatched, place, receipt, send
from sms_gateway import Gateway

from cloud_gateway import resident_notices
from cloud_gateway.db import Database
from cloud_gateway.resident_notice_sender import send_due
from cloud_gateway.resident_notices import NoticeSettings
from cloud_gateway.supply import scheduler, waves
from cloud_gateway.supply.scheduler import SchedulerSettings
from devstack.testkit.supply_world import MILK, S1, S2, ZONE
from xiaodian.i18n import translator

CFG = SchedulerSettings(tick_interval_s=1.0, remind_before_min=120.0, claim_lease_s=60.0)


__all__ = ["db"]  # the fixture, from receiving_world


def local(day: int, hh: int, mm: int = 0) -> float:
    """A time in Shanghai in December 2026."""
    return datetime(2026, 12, day, hh, mm, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()


def test_before_the_cutoff_a_tick_opens_the_wave_and_cuts_nothing(db: Database) -> None:
    rep = scheduler.tick(db, BEFORE, "cloud-1", CFG)
    assert rep.cut == [] and rep.skipped == []
    assert waves.get_cycle(db.conn, ZONE, WAVE)["state"] == "open"
    rep = scheduler.tick(db, AFTER, "cloud-1", CFG)
    assert rep.cut == [(ZONE, WAVE)]
    assert waves.get_cycle(db.conn, ZONE, WAVE)["state"] == "planned"
    # The next wave is open now; this one is not cut again.
    assert scheduler.tick(db, AFTER + 60, "cloud-1", CFG).cut == []


def test_two_workers_cut_a_wave_off_exactly_once(db: Database,
                                                 db_target: Path | str) -> None:
    place(db, S1, "王芳", BEFORE, (MILK, 2))
    reports: dict[str, scheduler.TickReport] = {}
    start = threading.Barrier(2)

    def work(name: str) -> None:
        with Database.open(db_target) as mine:
            start.wait()
            reports[name] = scheduler.tick(mine, AFTER, name, CFG)

    threads = [threading.Thread(target=work, args=(n,)) for n in ("cloud-1", "cloud-2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    cuts = [(n, r.cut) for n, r in reports.items() if r.cut]
    assert len(reports) == 2 and len(cuts) == 1, reports
    (winner, _), = cuts
    row = db.conn.execute("SELECT worker, done_at FROM job_claims WHERE job = 'cutoff'"
                          " AND key = ?", (f"{ZONE}/{WAVE}",)).fetchone()
    assert row[0] == winner and row[1] == AFTER
    history = db.conn.execute("SELECT COUNT(*) FROM plan_lines WHERE zone = ? AND wave = ?",
                              (ZONE, WAVE.isoformat())).fetchone()[0]
    assert history > 0
    cyc = waves.get_cycle(db.conn, ZONE, WAVE)
    assert cyc["state"] == "planned" and cyc["planned_at"] == AFTER


def test_a_dead_workers_claim_lapses(db: Database) -> None:
    with db.transaction() as conn:
        scheduler.due_cutoffs(conn, BEFORE)
        assert scheduler.claim(conn, "cutoff", f"{ZONE}/{WAVE}", "ghost", AFTER, 60.0)
    rep = scheduler.tick(db, AFTER + 30, "cloud-1", CFG)
    assert rep.skipped == [(ZONE, WAVE)] and rep.cut == []
    assert waves.get_cycle(db.conn, ZONE, WAVE)["state"] == "open"
    assert scheduler.tick(db, AFTER + 61, "cloud-1", CFG).cut == [(ZONE, WAVE)]


def kinds(db: Database, order: int) -> list[str]:
    return [n.kind for n in resident_notices.for_order(db.conn, order)]


def test_pickup_notices_once_for_goods_at_the_store(db: Database) -> None:
    w = dispatched(db)
    send(db, S1, 1, receipt(w["m"][S1]))  # signed off at 07:30 on the 8th
    assert kinds(db, w["a"]) == ["arrived"]
    assert scheduler.tick(db, local(8, 7, 50), "cloud-1", CFG).notices == 0  # not open yet
    rep = scheduler.tick(db, local(8, 8, 5), "cloud-1", CFG)
    assert rep.notices == 3  # a, b, c at S1; S2's eggs are not there yet
    assert kinds(db, w["a"]) == ["arrived", "window_open"] and kinds(db, w["e"]) == []
    assert scheduler.tick(db, local(8, 8, 6), "cloud-1", CFG).notices == 0  # told once
    with db.transaction() as conn:  # b is handed over before the reminder
        conn.execute("UPDATE orders SET state = 'picked_up' WHERE id = ?", (w["b"],))
    assert scheduler.tick(db, local(8, 19, 5), "cloud-1", CFG).notices == 2
    assert kinds(db, w["a"]) == ["arrived", "window_open", "reminder"]
    assert kinds(db, w["b"]) == ["arrived", "window_open"]
    assert scheduler.tick(db, local(8, 21, 1), "cloud-1", CFG).notices == 0  # window closed
    zh = resident_notices.for_order(db.conn, w["a"])[-1].text(translator("zh_CN"))
    assert "取货截止 21:00" in zh


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    g = Gateway(fail=1)
    yield g
    g.close()


def test_notices_go_out_through_apprise_once_with_a_retry(db: Database,
                                                         gateway: Gateway) -> None:
    w = dispatched(db)
    m1 = w["m"][S1]
    milk = next(ln for ln in m1.lines if ln.item == MILK)
    shelf = milk.qty - sum(s.qty for s in milk.serves)
    send(db, S1, 1, receipt(m1, {MILK: [("short", shelf + 1)]}))  # c (no resident) short
    send(db, S2, 1, receipt(w["m"][S2]))
    cfg = NoticeSettings(apprise_template=f"json://127.0.0.1:{gateway.port}/sms/{{phone}}",
                         retry_initial_s=10.0)
    clock = [local(8, 7, 40)]
    # a, b and e have residents: 3 arrival notices; c's are unsent (nobody to tell).
    assert send_due(db, cfg, "cloud-1", lambda: clock[0]) == 2  # the first post failed
    row = db.conn.execute("SELECT state, attempts, last_error FROM resident_notices"
                          " WHERE state = 'pending'").fetchone()
    assert row[1] == 1 and "failure" in row[2]
    assert send_due(db, cfg, "cloud-1", lambda: clock[0]) == 0  # backing off
    clock[0] += 11
    assert send_due(db, cfg, "cloud-1", lambda: clock[0]) == 1
    assert send_due(db, cfg, "cloud-1", lambda: clock[0] + 100) == 0  # nothing twice
    paths = sorted(p for p, _ in gateway.got)
    assert paths == ["/sms/13800000001", "/sms/13800000002", "/sms/13800000003"]
    assert all(b["title"] == "您的订单" and "已到" in b["message"] for _, b in gateway.got)
    assert db.conn.execute("SELECT COUNT(*) FROM resident_notice_attempts").fetchone()[0] == 4
    # A notice too old to help is given up, not sent.
    with db.transaction() as conn:
        resident_notices.add(conn, w["a"], resident_notices.REMINDER, "late",
                             {"store": S1, "closes": AFTER}, clock[0] - cfg.max_age_s - 1)
    assert send_due(db, cfg, "cloud-1", lambda: clock[0]) == 0
    late = db.conn.execute("SELECT state, last_error FROM resident_notices WHERE key = ?",
                           (f"reminder:{w['a']}:late",)).fetchone()
    assert tuple(late) == ("failed", "too old to send")
    assert len(gateway.got) == 3


def test_the_commands_tick_and_show_what_was_received(
        db: Database, db_target: Path | str, capsys: pytest.CaptureFixture[str]) -> None:
    from devstack.cli import main

    w = dispatched(db)
    send(db, S1, 1, receipt(w["m"][S1], {MILK: [("short", 1)]}))
    assert main(["supply", "received", "--zone", ZONE, "--wave", WAVE.isoformat(),
                 "--db", str(db_target)]) == 0
    got = json.loads(capsys.readouterr().out)
    line = got["stores"][S1]["lines"][0]
    assert (line["item"], line["shortfall"]) == (MILK, 1) and S2 not in got["stores"]
    assert main(["supply", "received", "--zone", "nroth", "--db", str(db_target)]) == 1
    assert "no delivery zone" in capsys.readouterr().err
    assert main(["supply", "tick", "--db", str(db_target)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["failed"] == [] and out["skipped"] == []


def test_the_cloud_config_takes_the_supply_and_notice_tables(tmp_path: Path) -> None:
    from cloud_gateway import config
    from xiaodian.config import ConfigError

    base = ('[cloud]\ndb = "c.sqlite"\nworker_id = "cloud-1"\n[mqtt]\nhost = "localhost"\n'
            'port = 8883\n[mqtt.tls]\nca = "ca.pem"\ncert = "c.pem"\nkey = "c.key"\n')
    path = tmp_path / "cloud.toml"
    path.write_text(base)
    cfg = config.load(path)
    assert cfg.supply.scheduler and not cfg.resident_notices.enabled  # the defaults
    path.write_text(base + '[supply]\ntick_interval_s = 5\nremind_before_min = 60\n'
                    '[resident_notices]\napprise_template = "json://gw.example/sms/{phone}"\n')
    cfg = config.load(path)
    assert (cfg.supply.tick_interval_s, cfg.supply.remind_before_min) == (5, 60)
    assert cfg.resident_notices.channel("13800000001") == "json://gw.example/sms/13800000001"
    path.write_text(base + '[resident_notices]\napprise_template = "json://gw.example/sms"\n')
    with pytest.raises(ConfigError, match="phone"):
        config.load(path)


def test_a_zone_given_an_earlier_cutoff_is_cut_off_at_it(db: Database) -> None:
    from cloud_gateway.supply import settings

    assert scheduler.tick(db, BEFORE, "cloud-1", CFG).cut == []  # opened, cutoff 23:00
    with db.transaction() as conn:
        settings.set_zone(conn, ZONE, BEFORE, cutoff="19:00")
    assert waves.get_cycle(db.conn, ZONE, WAVE)["cutoff_at"] == local(7, 19)
    assert scheduler.tick(db, local(7, 18, 59), "cloud-1", CFG).cut == []
    assert scheduler.tick(db, local(7, 19, 0), "cloud-1", CFG).cut == [(ZONE, WAVE)]
