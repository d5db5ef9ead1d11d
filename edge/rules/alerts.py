"""Alert values: the active `Alert` and the `AlertChange` the engine reports.

An alert's id is `fridge/rule/start-in-ms`: the same excursion re-evaluated later (a
backfill, a replay on another machine) gets the same id, so the outbox and the cloud can
treat a repeated change as a duplicate. A new excursion never reuses an id: a rule's next
alert on a fridge starts no earlier than its previous one ended (`FridgeBase._raise`), so
its start, and with it its id, is new whatever cause raised it.

An alert's `data` carries the machine-readable reason (`reason`, and `end` once cleared)
and its numbers; `message` is the English sentence made from them by
`xiaodian.wire.alert_text` (`text`, `end_text`), the same function every reader uses to
show it in the reader's language.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from xiaodian.wire.alert_text import describe, describe_end

Severity = Literal["warning", "critical"]
# Who should hear it: "terminal" = the buzzer and screen in the shop only (door open 3 min),
# "owner" = also sent on to the owner's phone by the cloud.
Audience = Literal["terminal", "owner"]
ChangeState = Literal["raised", "updated", "cleared"]
DataValue = float | int | str | bool | None


def alert_id(fridge: str, rule: str, started_at: float) -> str:
    return f"{fridge}/{rule}/{round(started_at * 1000)}"


def rank(severity: Severity, audience: Audience) -> int:
    """Escalation order: terminal warning < owner warning < critical."""
    if severity == "critical":
        return 2
    return 1 if audience == "owner" else 0


@dataclass(frozen=True)
class Alert:
    """An alert that is active now, as last evaluated."""

    id: str
    fridge: str
    rule: str
    severity: Severity
    audience: Audience
    started_at: float  # when the condition began (event time, seconds)
    raised_at: float  # when the rule's delay was met
    changed_at: float  # when it reached its current severity/audience
    peak: float | None  # the worst value seen (°C), if the rule is about a temperature
    message: str
    data: Mapping[str, DataValue] = field(default_factory=dict)

    @property
    def rank(self) -> int:
        return rank(self.severity, self.audience)


@dataclass(frozen=True)
class Closed:
    """How an alert ended: kept so the clearing message can say why."""

    alert: Alert
    at: float
    message: str
    data: Mapping[str, DataValue] = field(default_factory=dict)


@dataclass(frozen=True)
class AlertChange:
    """One step in an alert's life: raised, updated (escalated) or cleared."""

    state: ChangeState
    id: str
    fridge: str
    rule: str
    severity: Severity
    audience: Audience
    started_at: float
    at: float
    peak: float | None
    message: str
    data: Mapping[str, DataValue] = field(default_factory=dict)
    # Found by re-evaluating records that arrived late (backfill after a link outage, or
    # out of order): the owner is told about something that already happened.
    late: bool = False

    @property
    def duration_s(self) -> float:
        return self.at - self.started_at

    @classmethod
    def of(
        cls,
        state: ChangeState,
        alert: Alert,
        at: float,
        *,
        message: str | None = None,
        data: Mapping[str, DataValue] | None = None,
        late: bool = False,
    ) -> AlertChange:
        return cls(
            state=state,
            id=alert.id,
            fridge=alert.fridge,
            rule=alert.rule,
            severity=alert.severity,
            audience=alert.audience,
            started_at=alert.started_at,
            at=at,
            peak=alert.peak,
            message=alert.message if message is None else message,
            data=alert.data if data is None else data,
            late=late,
        )

    def to_dict(self, iso_times: bool = False) -> dict[str, Any]:
        """JSON-ready; times as ISO-8601 UTC strings when `iso_times`, else seconds."""

        def when(t: float) -> float | str:
            if not iso_times:
                return round(t, 3)
            stamp = datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")
            return stamp.replace("+00:00", "Z")

        return {
            "change": self.state,
            "id": self.id,
            "fridge": self.fridge,
            "rule": self.rule,
            "severity": self.severity,
            "audience": self.audience,
            "started_at": when(self.started_at),
            "at": when(self.at),
            "duration_s": round(self.duration_s, 3),
            "peak_c": None if self.peak is None else round(self.peak, 2),
            "message": self.message,
            "late": self.late,
            "data": dict(self.data),
        }


def text(rule: str, data: Mapping[str, DataValue]) -> str:
    """The English sentence of an alert's reason (`data["reason"]` and its numbers).

    Not strict: a rule that forgot a number still raises its alert, with generic words
    (the tests render every change strictly, so that never ships)."""
    return str(describe(rule, data))


def end_text(rule: str, data: Mapping[str, DataValue]) -> str:
    """The English sentence of how an alert ended (`data["end"]` and its numbers)."""
    ended = describe_end(rule, data)
    return str(ended) if ended is not None else "cleared"
