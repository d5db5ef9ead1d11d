"""An alert as the cloud keeps it, merged from the edge's alert changes (pure).

The edge reports raised/updated/cleared changes with a stable id (`fridge/rule/start-ms`).
Messages can be redelivered, replayed under new sequence numbers, or arrive out of order
(two workers, an outbox replay), so a change is applied only if it is newer than what the
record already says, ordered by (event time `at`, raised < updated < cleared). Severity and
audience only ever go up while an alert lasts, so those are merged by maximum whatever the
order. An `updated` with a new cause (`data.reason`) replaces the message and data.

A cleared alert is reopened, never left cleared, by a change **newer** than its clearing:
the edge says the alert is raised again after it said it was over. A current edge never
does that (a new excursion gets a new id), but an older agent did (issue #13), and a
re-evaluation may withdraw an alert and raise it again. Reopening starts a new episode:
active again (or, for a newer `cleared`, raised and over unseen), with the new change's
severity and start, and the caller resets its acknowledgement and escalation (`reopens`),
so the owner is told again and must acknowledge again. A change at or before the clearing
(a redelivery, a replay, a late copy of an older change) is old news and reopens nothing,
so duplicate delivery stays idempotent.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any, Literal

from ..errors import CloudError

Change = Literal["raised", "updated", "cleared"]
CHANGE_RANK: dict[str, int] = {"raised": 0, "updated": 1, "cleared": 2}
SEVERITY_RANK: dict[str, int] = {"warning": 0, "critical": 1}
AUDIENCE_RANK: dict[str, int] = {"terminal": 0, "owner": 1}
MAX_TEXT = 1000  # longest message we keep; the edge's are one line


class AlertDataError(CloudError, ValueError):
    """An alert event whose data is not an AlertChange; the message says which field."""


@dataclass(frozen=True)
class AlertChangeIn:
    """One AlertChange.to_dict() as received from a store."""

    store: str
    change: Change
    id: str
    fridge: str
    rule: str
    severity: str
    audience: str
    started_at: float
    at: float
    peak_c: float | None
    message: str
    late: bool
    data: dict[str, Any]


def parse_change(store: str, data: dict[str, Any]) -> AlertChangeIn:
    """Check an alert event's `data`; AlertDataError names the bad field."""

    def text(key: str, allowed: dict[str, int] | None = None) -> str:
        v = data.get(key)
        if not isinstance(v, str) or not v or len(v) > MAX_TEXT:
            raise AlertDataError(f"{key}: expected a non-empty string")
        if allowed is not None and v not in allowed:
            raise AlertDataError(f"{key}: expected one of {', '.join(allowed)}, got {v!r}")
        return v

    def number(key: str, optional: bool = False) -> float | None:
        v = data.get(key)
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise AlertDataError(f"{key}: expected a finite number (seconds)")
        return float(v)

    change = text("change", CHANGE_RANK)
    extra = data.get("data", {})
    if not isinstance(extra, dict):
        raise AlertDataError("data: expected an object")
    started_at, at = number("started_at"), number("at")
    assert started_at is not None and at is not None
    return AlertChangeIn(
        store=store, change=change,  # type: ignore[arg-type]  # checked against CHANGE_RANK
        id=text("id"), fridge=text("fridge"), rule=text("rule"),
        severity=text("severity", SEVERITY_RANK), audience=text("audience", AUDIENCE_RANK),
        started_at=started_at, at=at, peak_c=number("peak_c", optional=True),
        message=text("message"), late=data.get("late") is True, data=extra)


@dataclass(frozen=True)
class AlertRecord:
    """The `alerts` row, without acknowledgement and escalation (those have their owners)."""

    store: str
    id: str
    fridge: str
    rule: str
    severity: str
    audience: str
    state: Literal["active", "cleared"]
    started_at: float
    raised_at: float  # event time of the first change we saw
    last_at: float  # event time of the newest change applied
    last_change: Change
    cleared_at: float | None
    peak_c: float | None
    message: str
    data: str  # JSON of the newest change's `data`
    late: bool
    # Reopened: when the previous episode cleared; changes up to then are an older
    # episode's (replays, late copies) and change nothing. None: never reopened.
    reopened_after: float | None = None

    @property
    def order(self) -> tuple[float, int]:
        return (self.last_at, CHANGE_RANK[self.last_change])


def reopens(current: AlertRecord | None, ch: AlertChangeIn) -> bool:
    """Whether `ch` starts a new episode of an alert the cloud has as cleared: it is newer
    than the clearing (a duplicate or an older change never is)."""
    return (current is not None and current.state == "cleared"
            and current.cleared_at is not None
            and (ch.at, CHANGE_RANK[ch.change]) > current.order)


def merge(current: AlertRecord | None, ch: AlertChangeIn) -> AlertRecord | None:
    """The record after applying `ch`, or None when `ch` changes nothing (a duplicate)."""
    data = json.dumps(ch.data, sort_keys=True, separators=(",", ":"))
    if current is None or reopens(current, ch):
        cleared = ch.change == "cleared"
        return AlertRecord(
            ch.store, ch.id, ch.fridge, ch.rule, ch.severity, ch.audience,
            "cleared" if cleared else "active", ch.started_at, ch.at, ch.at, ch.change,
            ch.at if cleared else None, ch.peak_c, ch.message, data, ch.late,
            None if current is None else current.cleared_at)
    if current.reopened_after is not None and ch.at <= current.reopened_after:
        return None  # a change of an earlier episode of this id
    new = replace(
        current,
        severity=max(current.severity, ch.severity, key=SEVERITY_RANK.__getitem__),
        audience=max(current.audience, ch.audience, key=AUDIENCE_RANK.__getitem__),
        started_at=min(current.started_at, ch.started_at),
        raised_at=min(current.raised_at, ch.at),
    )
    if (ch.at, CHANGE_RANK[ch.change]) > current.order and current.state == "active":
        new = replace(new, last_at=ch.at, last_change=ch.change, peak_c=ch.peak_c,
                      message=ch.message, data=data, late=ch.late)
        if ch.change == "cleared":
            new = replace(new, state="cleared", cleared_at=ch.at)
    return None if new == current else new
