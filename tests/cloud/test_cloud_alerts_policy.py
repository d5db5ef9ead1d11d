"""The escalation policy and the alert merge: pure, with times as numbers (no sleeping)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cloud_gateway.alerts.model import merge, parse_change, reopens
from cloud_gateway.alerts.policy import AlertView, Escalation, EscalationPolicy, decide

MIN = 60.0
T0 = datetime(2025, 6, 1, 14, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()  # 14:00 local


Sent = list[tuple[float, str, tuple[str, ...]]]


def run(view: AlertView, policy: EscalationPolicy, until_min: float,
        st: Escalation | None = None, start: float = T0) -> tuple[Sent, Escalation]:
    """Tick every minute from `start` for `until_min` minutes; (minute, kind, to) sent."""
    st = st or Escalation()
    sent: Sent = []
    for m in range(int(until_min) + 1):
        notices, st = decide(view, st, policy, start + m * MIN)
        sent += [(float(m), n.kind, n.to) for n in notices]
    return sent, st


def test_owner_at_once_backup_after_20_min_then_repeats_every_30() -> None:
    sent, _ = run(AlertView("critical", "owner", "active", None), EscalationPolicy(), 95)
    assert sent == [
        (0, "alert", ("owner",)),
        (20, "escalation", ("backup",)),
        (30, "repeat", ("owner", "backup")),
        (60, "repeat", ("owner", "backup")),
        (90, "repeat", ("owner", "backup")),
    ]


def test_acknowledged_stops_repeats_and_reminds_60_min_later_while_active() -> None:
    policy = EscalationPolicy()
    _, st = run(AlertView("critical", "owner", "active", None), policy, 10)
    acked_at = T0 + 10 * MIN
    view = AlertView("critical", "owner", "active", acked_at)
    later, st = run(view, policy, 130, st, start=acked_at)
    assert later == [(60, "reminder", ("owner",)), (120, "reminder", ("owner",))]
    cleared, st = decide(AlertView("critical", "owner", "cleared", acked_at), st, policy,
                         acked_at + 131 * MIN)
    assert [(n.kind, n.to) for n in cleared] == [("all_clear", ("owner",))]
    assert st.done and decide(AlertView("critical", "owner", "cleared", acked_at), st, policy,
                              acked_at + 200 * MIN)[0] == []


def test_all_clear_goes_to_everyone_told() -> None:
    policy = EscalationPolicy()
    _, st = run(AlertView("warning", "owner", "active", None), policy, 25)
    notices, _ = decide(AlertView("warning", "owner", "cleared", None), st, policy, T0 + 26 * MIN)
    assert [(n.kind, n.to) for n in notices] == [("all_clear", ("owner", "backup"))]


def test_quiet_hours_hold_a_warning_but_never_a_critical() -> None:
    night = datetime(2025, 6, 1, 23, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    policy = EscalationPolicy(quiet_start="22:00", quiet_end="07:00")
    sent, _ = run(AlertView("warning", "owner", "active", None), policy, 60, start=night)
    assert sent == []
    sent, _ = run(AlertView("critical", "owner", "active", None), policy, 0, start=night)
    assert sent == [(0, "alert", ("owner",))]
    # The held warning goes out when the quiet hours end (07:00 = 8 h after 23:00).
    sent, _ = run(AlertView("warning", "owner", "active", None), policy, 8 * 60, start=night)
    assert sent[0] == (480, "alert", ("owner",))
    # A held warning that turns critical goes out at once.
    _, st = run(AlertView("warning", "owner", "active", None), policy, 5, start=night)
    notices, _ = decide(AlertView("critical", "owner", "active", None), st, policy, night + 6 * MIN)
    assert [n.kind for n in notices] == ["alert"]


def test_upgrade_to_critical_is_sent_at_once_and_terminal_alerts_never() -> None:
    policy = EscalationPolicy()
    _, st = run(AlertView("warning", "owner", "active", None), policy, 2)
    notices, st = decide(AlertView("critical", "owner", "active", None), st, policy, T0 + 3 * MIN)
    assert [n.kind for n in notices] == ["upgrade"]
    assert run(AlertView("warning", "terminal", "active", None), policy, 120)[0] == []


def test_cleared_before_anyone_heard_is_reported_once() -> None:
    notices, st = decide(AlertView("critical", "owner", "cleared", None), Escalation(),
                         EscalationPolicy(), T0)
    assert [n.kind for n in notices] == ["resolved"] and st.done


def test_timings_are_configurable() -> None:
    policy = EscalationPolicy(backup_after_min=5, repeat_every_min=10)
    sent, _ = run(AlertView("critical", "owner", "active", None), policy, 20)
    assert [(m, k) for m, k, _ in sent] == [(0, "alert"), (5, "escalation"), (10, "repeat"),
                                           (20, "repeat")]


def test_bad_policy_values_name_the_key() -> None:
    with pytest.raises(ValueError, match="quiet_start"):
        EscalationPolicy(quiet_start="25:00", quiet_end="07:00")
    with pytest.raises(ValueError, match="timezone"):
        EscalationPolicy(timezone="Mars/Olympus")


def change(kind: str, at: float, severity: str = "warning", **kw: Any) -> dict[str, Any]:
    return {"change": kind, "id": "fridge-1/warm/1000", "fridge": "fridge-1", "rule": "warm",
            "severity": severity, "audience": "owner", "started_at": 1.0, "at": at,
            "duration_s": at - 1, "peak_c": 6.0, "message": f"{kind} at {at}", "late": False,
            "data": {}} | kw


def test_merge_is_idempotent_and_handles_out_of_order() -> None:
    raised = parse_change("s", change("raised", 100))
    rec = merge(None, raised)
    assert rec is not None and rec.state == "active"
    assert merge(rec, raised) is None  # redelivered: nothing changes
    cleared = merge(rec, parse_change("s", change("cleared", 300)))
    assert cleared is not None and cleared.state == "cleared"
    # An older "updated" arriving after the clear only raises the severity, never reopens.
    late = merge(cleared, parse_change("s", change("updated", 200, severity="critical")))
    assert late is not None and late.state == "cleared" and late.severity == "critical"
    assert late.message == "cleared at 300"
    # Cleared first, raised later: the raise is older and changes nothing but the first time.
    first = merge(None, parse_change("s", change("cleared", 300)))
    assert first is not None
    assert merge(first, parse_change("s", change("raised", 300))) is None
    again = merge(first, parse_change("s", change("raised", 100)))
    assert again is not None and again.state == "cleared" and again.raised_at == 100


def test_a_raise_newer_than_the_clearing_reopens_a_cleared_alert() -> None:
    # An older agent raised a new excursion under the id it had cleared (issue #13): the
    # cloud must not keep it cleared, nor drop the raise.
    rec = merge(None, parse_change("s", change("raised", 100)))
    cleared = merge(rec, parse_change("s", change("cleared", 300)))
    assert cleared is not None and cleared.state == "cleared"
    again = parse_change("s", change("raised", 400, severity="critical", started_at=300.0))
    assert reopens(cleared, again)
    reopened = merge(cleared, again)
    assert reopened is not None and reopened.state == "active"
    assert reopened.cleared_at is None and reopened.raised_at == 400
    assert reopened.started_at == 300.0 and reopened.severity == "critical"
    assert reopened.message == "raised at 400"
    # Duplicates stay duplicates: a replay of any change already applied, or an older one.
    for old in (again, parse_change("s", change("raised", 100)),
                parse_change("s", change("cleared", 300))):
        assert not reopens(reopened, old) and merge(reopened, old) is None, old
    # Its own clearing closes the new episode.
    over = merge(reopened, parse_change("s", change("cleared", 900)))
    assert over is not None and over.state == "cleared" and over.cleared_at == 900
    # A clearing newer than the last one is a whole episode the cloud never saw raised.
    unseen = parse_change("s", change("cleared", 1500))
    assert reopens(over, unseen)
    whole = merge(over, unseen)
    assert whole is not None and whole.state == "cleared" and whole.raised_at == 1500


def test_a_changed_cause_updates_the_open_alert() -> None:
    sustained = {"reason": "hot_sustained", "value_c": 9.0, "limit_c": 8.0, "for_s": 900.0}
    cumulative = {"reason": "hot_cumulative", "value_c": 6.0, "limit_c": 5.0,
                  "cumulative_s": 14400.0, "window_s": 86400.0}
    rec = merge(None, parse_change("s", change("raised", 100, "critical", data=sustained)))
    assert rec is not None
    upd = merge(rec, parse_change("s", change("updated", 500, "critical", data=cumulative)))
    assert upd is not None and upd.state == "active" and upd.severity == "critical"
    assert upd.message == "updated at 500" and '"hot_cumulative"' in upd.data
