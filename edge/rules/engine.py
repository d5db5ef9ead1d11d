"""The cold-chain rule engine: records and ticks in, alert changes out (pure, no clock).

Time is event time in seconds on one float timeline (the caller maps device time to it).
Each fridge is evaluated on its own records, in event-time order:

- A record at or after the fridge's newest record is applied at once. That includes the
  backlog a fridge sends after a link outage: it is newer than anything seen from that
  fridge, just late in arriving, so the rules run over it as if live and report what they
  find with `late=True` (an excursion during the outage is raised with its real start).
- A record older than the fridge's newest one (out of order) is merged: the engine goes
  back to its last saved copy of the fridge's state before that time, replays the kept
  records with the new one in place, and reports the difference from what it had said.
  Copies are kept every `snapshot_every_min` for `reorder_horizon_h`; anything older is
  counted in `counters["dropped_too_late"]` and ignored.
- `tick(now)` moves the present forward: the "since" rules (door, mains, defrost overrun,
  compressor cycling) are judged at `now` on the last known state, and a fridge with no
  record for `link_lost_min` gets "monitoring offline".

Lifecycle: the engine remembers what it has reported and reports only differences, so
re-evaluation never repeats a raise; an alert's id depends on its start, which the data
decides, so the same excursion keeps its id however its records arrive.
"""

from __future__ import annotations

import bisect
import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from edge.rules.alerts import Alert, AlertChange, Closed, DataValue, alert_id, end_text, text
from edge.rules.config import RulesConfig
from edge.rules.fridge import MIN, FridgeState

EVENT_FLAGS = {"door": "open", "compressor": "on", "power": "mains", "defrost": "active"}

_Key = tuple[float, int]  # (event time, arrival number): total order, ties by arrival


@dataclass(frozen=True)
class _Entry:
    key: _Key
    kind: str  # "reading" | "event"
    reading: tuple[float | None, float | None, str | None, str | None] | None = None
    event: tuple[str, Mapping[str, object]] | None = None

    def apply(self, state: FridgeState) -> None:
        if self.reading is not None:
            state.reading(self.key[0], *self.reading)
        elif self.event is not None:
            state.event(self.key[0], self.event[0], self.event[1])


@dataclass
class _Fridge:
    state: FridgeState
    log: list[_Entry] = field(default_factory=list)
    snapshots: list[tuple[_Key, FridgeState]] = field(default_factory=list)
    reported: dict[str, Alert] = field(default_factory=dict)
    announced: dict[str, float] = field(default_factory=dict)  # id -> time of last change
    link: Alert | None = None
    link_late_records: int = 0
    link_closed: dict[str, Closed] = field(default_factory=dict)


class RuleEngine:
    def __init__(self, config: RulesConfig | None = None) -> None:
        self.config = config or RulesConfig()
        self._fridges: dict[str, _Fridge] = {}
        self._arrivals = 0
        self._now = -math.inf
        self.counters: dict[str, int] = {"merged_out_of_order": 0, "dropped_too_late": 0}

    # --- inputs -------------------------------------------------------------------------

    def on_reading(
        self,
        fridge: str,
        t: float,
        air_c: float | None,
        product_c: float | None = None,
        air_status: str | None = None,
        product_status: str | None = None,
    ) -> list[AlertChange]:
        """One sample of a fridge's probes. A status of None means "ok" when there is a
        value and "not fitted" when there is none; ok/crc/missing/suspect as the codec
        names them (anything other than ok/suspect counts as disconnected)."""
        _check_time(t)
        entry = _Entry(
            self._key(t), "reading", reading=(air_c, product_c, air_status, product_status)
        )
        return self._record(fridge, entry)

    def on_event(
        self, fridge: str, t: float, type: str, data: Mapping[str, object]
    ) -> list[AlertChange]:
        """A state change: door {open}, compressor {on}, power {mains}, defrost {active}
        (the codec's field names). Other types are ignored; a known type without its
        true/false field is a ValueError."""
        _check_time(t)
        flag = EVENT_FLAGS.get(type)
        if flag is None:
            return []
        if not isinstance(data.get(flag), bool):
            raise ValueError(f"{type} event needs a true/false {flag!r}, got {data.get(flag)!r}")
        entry = _Entry(self._key(t), "event", event=(type, {flag: data[flag]}))
        return self._record(fridge, entry)

    def tick(self, t: float) -> list[AlertChange]:
        """The present is `t` (never goes back): judge time-based rules for every fridge."""
        _check_time(t)
        self._now = max(self._now, t)
        changes: list[AlertChange] = []
        for fr in self._fridges.values():
            changes += self._sync(fr, self._present(fr), late=False)
        return changes

    # --- outputs ------------------------------------------------------------------------

    def active(self) -> list[Alert]:
        alerts = [a for fr in self._fridges.values() for a in fr.reported.values()]
        return sorted(alerts, key=lambda a: (a.fridge, a.started_at, a.id))

    def fridges(self) -> list[str]:
        return sorted(self._fridges)

    def product_like_c(self, fridge: str) -> float | None:
        """The temperature the rules judged last (for the terminal's display)."""
        fr = self._fridges.get(fridge)
        return None if fr is None else fr.state.last_product_like

    # --- internals ----------------------------------------------------------------------

    def _key(self, t: float) -> _Key:
        self._arrivals += 1
        return (float(t), self._arrivals)

    def _fridge(self, fridge: str) -> _Fridge:
        fr = self._fridges.get(fridge)
        if fr is None:
            fr = _Fridge(FridgeState(fridge, self.config.for_fridge(fridge)))
            self._fridges[fridge] = fr
        return fr

    def _present(self, fr: _Fridge) -> float:
        data_t = fr.state.data_t
        return self._now if data_t is None else max(self._now, data_t)

    def _record(self, fridge: str, entry: _Entry) -> list[AlertChange]:
        fr = self._fridge(fridge)
        t = entry.key[0]
        link_s = fr.state.cfg.link_lost_min * MIN
        late = t < self._now - link_s
        if fr.link is not None and t < self._now:
            fr.link_late_records += 1
        data_t = fr.state.data_t
        if data_t is None or t >= data_t:
            self._snapshot_if_due(fr, entry)
            fr.log.append(entry)
            entry.apply(fr.state)
            changes = self._sync(fr, t, late)
        elif not fr.snapshots or entry.key < fr.snapshots[0][0]:
            self.counters["dropped_too_late"] += 1
            return []
        else:
            self.counters["merged_out_of_order"] += 1
            bisect.insort(fr.log, entry, key=lambda e: e.key)
            i = bisect.bisect_right([k for k, _ in fr.snapshots], entry.key) - 1
            start_key, saved = fr.snapshots[i]
            del fr.snapshots[i + 1 :]
            fr.state = copy.deepcopy(saved)
            first = bisect.bisect_left(fr.log, start_key, key=lambda e: e.key)
            for e in fr.log[first:]:
                self._snapshot_if_due(fr, e)
                e.apply(fr.state)
            assert fr.state.data_t is not None
            changes = self._sync(fr, fr.state.data_t, late=True)
        self._prune(fr)
        return changes

    def _snapshot_if_due(self, fr: _Fridge, entry: _Entry) -> None:
        every = self.config.snapshot_every_min * MIN
        if not fr.snapshots or entry.key[0] - fr.snapshots[-1][0][0] >= every:
            # Taken before `entry` is applied: replaying from here starts with it.
            fr.snapshots.append((entry.key, copy.deepcopy(fr.state)))

    def _prune(self, fr: _Fridge) -> None:
        data_t = fr.state.data_t
        if data_t is None:
            return
        horizon = self.config.reorder_horizon_h * 3600.0
        cutoff = data_t - horizon
        # Keep the newest copy at or before the cutoff, so the whole horizon stays covered.
        i = bisect.bisect_right([k[0] for k, _ in fr.snapshots], cutoff) - 1
        if i > 0:
            del fr.snapshots[:i]
            first = bisect.bisect_left(fr.log, fr.snapshots[0][0], key=lambda e: e.key)
            del fr.log[:first]
        for closed in (fr.state.closed, fr.link_closed):
            for alert_id_ in [k for k, c in closed.items() if c.at < cutoff]:
                del closed[alert_id_]
        # Forget announced ids well after any replay could bring their alert back.
        forget = cutoff - horizon - self.config.snapshot_every_min * MIN
        for alert_id_ in [
            k for k, at in fr.announced.items() if at < forget and k not in fr.reported
        ]:
            del fr.announced[alert_id_]

    def _link(self, fr: _Fridge) -> Alert | None:
        st = fr.state
        if st.data_t is None:
            return None
        present = self._present(fr)
        link_s = st.cfg.link_lost_min * MIN
        if present - st.data_t >= link_s:
            if fr.link is None:
                fr.link_late_records = 0
                data: dict[str, DataValue] = {
                    "reason": "link_lost", "for_s": link_s, "last_data_at": st.data_t,
                }
                fr.link = Alert(
                    id=alert_id(st.fridge, "link", st.data_t),
                    fridge=st.fridge,
                    rule="link",
                    severity="warning",
                    audience="owner",
                    started_at=st.data_t,
                    raised_at=st.data_t + link_s,
                    changed_at=st.data_t + link_s,
                    peak=None,
                    message=text("link", data),
                    data=data,
                )
            return fr.link
        if fr.link is not None:
            alert, fr.link = fr.link, None
            ended: dict[str, DataValue] = {
                **alert.data, "end": "link_back", "late_records": fr.link_late_records,
                "end_for_s": round(present - alert.started_at, 1),
            }
            fr.link_closed[alert.id] = Closed(alert, present, end_text("link", ended), ended)
        return None

    def _sync(self, fr: _Fridge, at: float, late: bool) -> list[AlertChange]:
        """Report the difference between what the rules say now and what was reported."""
        st = fr.state
        desired = {a.id: a for a in st.active.values()}
        timers, ongoing = st.timer_alerts(max(at, st.data_t if st.data_t is not None else at))
        desired.update(timers)
        link = self._link(fr)
        if link is not None:
            desired[link.id] = link
        changes: list[AlertChange] = []
        for aid, old in list(fr.reported.items()):
            if aid in desired:
                continue
            if aid in ongoing:
                # A "since" state still going on but judged at an earlier time (a late
                # record): keep what was said rather than clear and raise it again.
                desired[aid] = old
                continue
            closed = st.closed.get(aid) or fr.link_closed.get(aid)
            ended = st.ended.get(aid)
            if closed is not None:
                change = AlertChange.of(
                    "cleared",
                    closed.alert,
                    closed.at,
                    message=closed.message,
                    data=closed.data,
                    late=late,
                )
            elif ended is not None:
                # Late records show the state ended before the alert's threshold.
                change = AlertChange.of(
                    "cleared", old, ended[0], message=ended[1], data={**old.data, **ended[2]},
                    late=True,
                )
            else:
                data = {**old.data, "end": "withdrawn"}
                change = AlertChange.of(
                    "cleared", old, at, message=end_text(old.rule, data), data=data, late=True
                )
            changes.append(change)
            del fr.reported[aid]
            fr.announced[aid] = change.at
        # Alerts that began and ended within one batch of late records.
        for aid, closed in st.closed.items():
            if aid in fr.announced or aid in fr.reported or aid in desired:
                continue
            changes.append(
                AlertChange.of("raised", closed.alert, closed.alert.changed_at, late=late)
            )
            changes.append(
                AlertChange.of(
                    "cleared",
                    closed.alert,
                    closed.at,
                    message=closed.message,
                    data=closed.data,
                    late=late,
                )
            )
            fr.announced[aid] = closed.at
        for aid, alert in desired.items():
            before = fr.reported.get(aid)
            if before is None:
                # First seen at its current level (e.g. a door found open 6 min at a sparse
                # tick): raised when that level was reached, so time and words agree.
                changes.append(AlertChange.of("raised", alert, alert.changed_at, late=late))
                fr.announced[aid] = alert.changed_at
            elif alert.rank > before.rank or (
                alert.rank == before.rank and alert.data.get("reason") != before.data.get("reason")
            ):
                # Escalated, or the same alert now has another cause (a sustained "hot"
                # whose day's budget above 5 °C is spent): the open alert is updated.
                changes.append(AlertChange.of("updated", alert, alert.changed_at, late=late))
                fr.announced[aid] = alert.changed_at
            elif alert.rank < before.rank:
                alert = before  # escalation is one way while the alert lasts
            fr.reported[aid] = alert
        changes.sort(key=lambda c: c.at)
        return changes


def _check_time(t: float) -> None:
    if not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t):
        raise ValueError(f"event time must be a finite number of seconds, got {t!r}")
