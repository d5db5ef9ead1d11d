"""The escalation policy: who is told what, and when (pure: the time is a parameter).

`decide(alert, state, policy, now)` returns the notices due at `now` and the new state; the
caller persists the state in the same transaction as the notices, so each notice is made
exactly once however many workers tick. Times are the cloud's clock (a notice is about when
the owner hears, not when the fridge warmed).

Defaults (docs/design.md, "Escalation in the cloud"): the owner at once; backup contacts after
20 min unacknowledged; a repeat to everyone told every 30 min until acknowledged; a
reminder 60 min after an acknowledgement (and every 60 min after) while still active; an
all-clear on recovery to everyone told. Quiet hours hold back warnings only: a warning that
begins at night is sent when the quiet hours end (unless it has cleared by then, or it
becomes critical first); critical alerts are never held.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Role = Literal["owner", "backup", "technician"]  # technician: maintenance_alerts.py
Kind = Literal["alert", "upgrade", "escalation", "repeat", "reminder", "all_clear", "resolved"]
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


@dataclass(frozen=True)
class EscalationPolicy:
    backup_after_min: float = 20.0  # unacknowledged this long: tell the backup contacts
    repeat_every_min: float = 30.0  # unacknowledged: tell everyone told again, this often
    realert_after_ack_min: float = 60.0  # acknowledged but still active: remind, this often
    all_clear: bool = True  # tell everyone told when the alert clears
    quiet_start: str = ""  # "22:00": warnings held from then ...
    quiet_end: str = ""  # ... until "07:00" (local time in `timezone`); "" = no quiet hours
    timezone: str = "Asia/Shanghai"

    def __post_init__(self) -> None:
        for name in ("backup_after_min", "repeat_every_min", "realert_after_ack_min"):
            if not 0.0 < getattr(self, name) <= 7 * 24 * 60:
                raise ValueError(f"{name}: must be between 0 (exclusive) and 10080 minutes")
        for name in ("quiet_start", "quiet_end"):
            value = getattr(self, name)
            if value and not _HHMM.fullmatch(value):
                raise ValueError(f"{name}: expected HH:MM (24 h), got {value!r}")
        if bool(self.quiet_start) != bool(self.quiet_end):
            raise ValueError("quiet_end: quiet_start and quiet_end go together")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone: unknown time zone {self.timezone!r}") from None

    def quiet(self, now: float) -> bool:
        """Whether `now` (Unix seconds) falls in the quiet hours (a window may span midnight)."""
        if not self.quiet_start:
            return False
        local = datetime.fromtimestamp(now, ZoneInfo(self.timezone))
        minute = local.hour * 60 + local.minute
        start, end = _minutes(self.quiet_start), _minutes(self.quiet_end)
        if start <= end:
            return start <= minute < end
        return minute >= start or minute < end


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


@dataclass(frozen=True)
class AlertView:
    """What the policy needs to know of an alert."""

    severity: str  # warning | critical
    audience: str  # terminal | owner
    state: str  # active | cleared
    acked_at: float | None


@dataclass(frozen=True)
class Escalation:
    """Per-alert escalation state, kept as JSON beside the alert."""

    first_sent_at: float | None = None  # the owner was first told
    backup_sent_at: float | None = None  # the backups were first told
    last_sent_at: float | None = None  # the latest alert/upgrade/escalation/repeat
    reminded_at: float | None = None  # the latest reminder after an acknowledgement
    severity_sent: str = ""  # the severity the contacts were last told of
    done: bool = False  # nothing more will be sent (cleared, and told so)

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, text: str | None) -> Escalation:
        return cls(**json.loads(text)) if text else cls()


@dataclass(frozen=True)
class Notice:
    kind: Kind
    to: tuple[Role, ...]


def decide(alert: AlertView, st: Escalation, policy: EscalationPolicy,
           now: float) -> tuple[list[Notice], Escalation]:
    if st.done:
        return [], st
    if alert.audience != "owner":  # the terminal's buzzer is the edge's business
        return [], replace(st, done=alert.state == "cleared")
    told: tuple[Role, ...] = ("owner", "backup") if st.backup_sent_at is not None else ("owner",)
    if alert.state == "cleared":
        if st.first_sent_at is None:
            # Raised and cleared before anyone heard (a backfill after an outage): say what
            # happened once; a warning still waits for the end of the quiet hours.
            if alert.severity == "warning" and policy.quiet(now):
                return [], st
            return [Notice("resolved", ("owner",))], replace(st, done=True)
        clear = [Notice("all_clear", told)] if policy.all_clear else []
        return clear, replace(st, done=True)

    held = alert.severity == "warning" and policy.quiet(now)
    if st.first_sent_at is None:
        if held:
            return [], st
        return [Notice("alert", ("owner",))], replace(
            st, first_sent_at=now, last_sent_at=now, severity_sent=alert.severity)
    if alert.severity != st.severity_sent and alert.severity == "critical":
        # Worse news is news: at once, to everyone told so far.
        return [Notice("upgrade", told)], replace(st, last_sent_at=now,
                                                   severity_sent=alert.severity)
    if held:
        return [], st
    if alert.acked_at is not None:
        since = max(alert.acked_at, st.reminded_at or alert.acked_at)
        if now - since >= policy.realert_after_ack_min * 60:
            return [Notice("reminder", told)], replace(st, reminded_at=now)
        return [], st
    notices: list[Notice] = []
    if st.backup_sent_at is None and now - st.first_sent_at >= policy.backup_after_min * 60:
        notices.append(Notice("escalation", ("backup",)))
        st = replace(st, backup_sent_at=now)
    assert st.last_sent_at is not None
    if now - st.last_sent_at >= policy.repeat_every_min * 60:
        to: tuple[Role, ...] = ("owner",) if notices else told
        notices.append(Notice("repeat", to))
        st = replace(st, last_sent_at=now)
    return notices, st
