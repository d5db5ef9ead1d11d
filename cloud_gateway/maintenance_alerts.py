"""Maintenance alerts in the cloud: judged when a fridge's hourly vitals arrive, kept in a
table of their own, told to the stores' technicians (never the owners).

Why the cloud: the rules compare the last 7 days with the 28 before them, and only the
cloud keeps weeks of vitals (`device_vitals`: one row per fridge and hour, kept); the
terminal keeps its records for days and within a disk budget, and a replaced terminal
starts with none (docs/technician.md, "Maintenance alerts").

They are not cold-chain alerts: not in `alerts` (which owners read, acknowledge and which
the HACCP record and the shop's availability follow) but in `maintenance_alerts`, one row
per episode (`id` = fridge/key/hour it was raised). Escalation reuses the cold-chain
machinery: the policy (`alerts.policy.decide`, with `MAINTENANCE_POLICY`'s pace: one
notice, then a reminder once a week while it lasts, an all-clear when it ends) and the
notification outbox and sender (`alert_notifications`, by `AlertService`), to the contacts
whose role is `technician`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import msgspec

from xiaodian.wire.health import HEALTH_DEVICE, Vitals
from xiaodian.wire.payloads import Event

from . import maintenance, sql
from .alerts.policy import AlertView, Escalation, EscalationPolicy, Notice, decide

SCHEMA = """
CREATE TABLE IF NOT EXISTS maintenance_alerts (
    store TEXT NOT NULL,
    id TEXT NOT NULL,
    fridge TEXT NOT NULL,
    key TEXT NOT NULL,
    rule TEXT NOT NULL,
    state TEXT NOT NULL,
    raised_hour BIGINT NOT NULL,
    last_hour BIGINT NOT NULL,
    cleared_hour BIGINT,
    evidence TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    escalation TEXT,
    settled BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (store, id)
);
CREATE INDEX IF NOT EXISTS maintenance_alerts_open ON maintenance_alerts (store, fridge, state);
"""
TABLES = ("maintenance_alerts",)
LOOKBACK_H = (maintenance.DEFAULTS.recent_days + maintenance.DEFAULTS.baseline_days) * 24
NOTICE_PREFIX = "maintenance/"  # alert_id of their notifications: apart from cold-chain ids
WEEK_MIN = 7 * 24 * 60.0


def policy_for(store_policy: EscalationPolicy) -> EscalationPolicy:
    """The store's quiet hours and zone at a technician's pace: a maintenance alert is a
    warning (held over quiet hours), told once and reminded weekly; no backups."""
    return replace(store_policy, backup_after_min=WEEK_MIN, repeat_every_min=WEEK_MIN,
                   realert_after_ack_min=WEEK_MIN)


def on_vitals(conn: sql.Connection, store: str, device: str, events: list[Event],
              now: float) -> int:
    """After new vitals rows (in the caller's transaction): judge each fridge they are
    about at its newest hour. Returns how many maintenance alerts changed."""
    if device != HEALTH_DEVICE:
        return 0
    fridges = {str(e.data.get("fridge")) for e in events
               if e.type == "vitals" and isinstance(e.data, dict)}
    changed = 0
    for fridge in sorted(fridges):
        row = conn.execute("SELECT MAX(hour) FROM device_vitals WHERE store = ? AND device = ?",
                           (store, fridge)).fetchone()
        if row is not None and row[0] is not None:
            changed += judge(conn, store, fridge, int(row[0]), now)
    return changed


def series(conn: sql.Connection, store: str, fridge: str, now_hour: int) -> list[Vitals]:
    rows = conn.execute(
        "SELECT data FROM device_vitals WHERE store = ? AND device = ? AND hour > ?"
        " AND hour <= ? ORDER BY hour", (store, fridge, now_hour - LOOKBACK_H, now_hour))
    return [msgspec.json.decode(r[0], type=Vitals) for r in rows]


def judge(conn: sql.Connection, store: str, fridge: str, now_hour: int, now: float) -> int:
    """Raise, update and clear this fridge's maintenance alerts from its vitals up to
    `now_hour`; `now` (the cloud's clock) only stamps the rows."""
    open_rows = {r["key"]: r for r in conn.execute(
        "SELECT * FROM maintenance_alerts WHERE store = ? AND fridge = ? AND state = 'active'",
        (store, fridge))}
    found = {f.key: f for f in maintenance.evaluate(
        series(conn, store, fridge, now_hour), now_hour, set(open_rows))}
    changed = 0
    for key, f in found.items():
        evidence = json.dumps(f.evidence, sort_keys=True, separators=(",", ":"))
        if key in open_rows:
            conn.execute("UPDATE maintenance_alerts SET last_hour = ?, evidence = ?,"
                         " updated_at = ? WHERE store = ? AND id = ?",
                         (now_hour, evidence, now, store, open_rows[key]["id"]))
            continue
        conn.execute(
            "INSERT INTO maintenance_alerts (store, id, fridge, key, rule, state, raised_hour,"
            " last_hour, evidence, updated_at) VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?, ?)"
            " ON CONFLICT (store, id) DO NOTHING",
            (store, f"{fridge}/{key}/{now_hour}", fridge, key, f.rule, now_hour, now_hour,
             evidence, now))
        changed += 1
    for key, r in open_rows.items():
        if key not in found:
            conn.execute("UPDATE maintenance_alerts SET state = 'cleared', cleared_hour = ?,"
                         " updated_at = ?, settled = FALSE WHERE store = ? AND id = ?",
                         (now_hour, now, store, r["id"]))
            changed += 1
    return changed


def alert_dict(row: sql.Row) -> dict[str, Any]:
    d = {k: row[k] for k in ("store", "id", "fridge", "key", "rule", "state", "raised_hour",
                             "last_hour", "cleared_hour")}
    d["evidence"] = json.loads(row["evidence"])
    d["class"] = "maintenance"
    d["key_path"] = f"{row['store']}/{NOTICE_PREFIX}{row['id']}"
    return d


def open_alerts(conn: sql.Connection, stores: list[str] | None = None,
                fridge: str | None = None) -> list[dict[str, Any]]:
    """Active maintenance alerts, oldest first, of `stores` (all when None) or one fridge."""
    q = "SELECT * FROM maintenance_alerts WHERE state = 'active'"
    args: list[Any] = []
    if stores is not None:
        if not stores:
            return []
        q += f" AND store IN ({', '.join('?' * len(stores))})"
        args += stores
    if fridge is not None:
        q += " AND fridge = ?"
        args.append(fridge)
    return [alert_dict(r) for r in conn.execute(q + " ORDER BY raised_hour, id", args)]


def escalate(conn: sql.Connection, now: float,
             policy_of: Callable[[str], EscalationPolicy]) -> list[tuple[dict[str, Any], Notice]]:
    """The escalation tick for maintenance alerts (inside the caller's transaction): the
    notices due now, each to ("technician",)."""
    out: list[tuple[dict[str, Any], Notice]] = []
    rows = conn.execute("SELECT * FROM maintenance_alerts WHERE NOT settled"
                        " ORDER BY raised_hour, id, store").fetchall()
    for row in rows:
        # The policy speaks of owners; here "owner" is whoever is told first: technicians.
        view = AlertView("warning", "owner", row["state"], None)
        before = Escalation.loads(row["escalation"])
        notices, after = decide(view, before, policy_for(policy_of(row["store"])), now)
        if after != before:
            conn.execute("UPDATE maintenance_alerts SET escalation = ?, settled = ?"
                         " WHERE store = ? AND id = ?",
                         (after.dumps(), after.done, row["store"], row["id"]))
        out += [(alert_dict(row), Notice(n.kind, ("technician",))) for n in notices
                if "owner" in n.to]
    return out
