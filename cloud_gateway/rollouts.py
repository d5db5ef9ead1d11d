"""Updates started from the cloud, kept as rollouts: one artefact to one device id across a
list of stores, staged by `cloud_gateway.rollout` (an update of one store is a rollout of
one). What each store did comes from what already reaches the cloud: the `update` command's
answer (refused, expired, failed at once) and the store's `update` events (state, percent,
result; docs/firmware_update.md, "From the cloud").

`tick` is the only writer after `create`: it reads the reports, asks `rollout.decide` what
to do, signs and sends the `update` commands for the stores it says to start, and records
the state. It is driven by `xiaodian cloud rollout watch` (or `tick` from a timer).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from xiaodian.wire import update_reasons
from xiaodian.wire.commands import CommandError, Scalar

from . import rollout, sql
from .db import Database
from .db_loop import DbLoop

log = logging.getLogger(__name__)
PENDING = ""  # a store claimed, its command being issued
NOT_SENT = "!"  # prefix of a command that could not be issued (the reason follows)
TICK_S = 10.0
_ISSUE_ERRORS: tuple[type[Exception], ...] = (CommandError, OSError, *sql.ERRORS)


class Issuer(Protocol):
    """`commands.Commander`: signs, records and publishes a command, returns its id."""

    def issue(self, store: str, action: str, params: dict[str, Scalar], now: float | None = None,
              *, issued_by: str = "") -> str: ...


@dataclass(frozen=True)
class Artefact:
    kind: str
    device: str
    url: str
    sha256: str
    size: int
    version: str

    def params(self) -> dict[str, Scalar]:
        return {"device": self.device, "kind": self.kind, "url": self.url,
                "sha256": self.sha256, "size": self.size, "version": self.version}


def create(db: Database, artefact: Artefact, stores: Sequence[str], now: float, *,
           share: float = rollout.DEFAULT_SHARE,
           max_failure_ratio: float = rollout.DEFAULT_MAX_FAILURE_RATIO,
           settle_s: float = rollout.DEFAULT_SETTLE_S, created_by: str = "") -> str:
    """A new rollout (nothing sent yet: `tick` starts it); ValueError for a bad plan."""
    p = rollout.plan(artefact.kind, stores, share=share, max_failure_ratio=max_failure_ratio,
                     settle_s=settle_s)
    rid = uuid.uuid4().hex[:16]
    plan_json = json.dumps({"stores": list(p.stores), "stages": list(p.stages),
                            "max_failures": p.max_failures, "settle_s": p.settle_s})
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO rollouts (id, kind, device, url, sha256, size, version, plan, state,"
            " reason, created_by, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?, ?)",
            (rid, artefact.kind, artefact.device, artefact.url, artefact.sha256, artefact.size,
             artefact.version, plan_json, rollout.State.RUNNING.value, created_by, now, now))
    return rid


def _plan(row: Any) -> rollout.Plan:
    d = json.loads(row["plan"])
    return rollout.Plan(str(row["kind"]), tuple(d["stores"]), tuple(d["stages"]),
                        int(d["max_failures"]), float(d["settle_s"]))


def store_rows(db: Database, rollout_id: str) -> list[dict[str, Any]]:
    """Each started store: its command's state and its latest `update` report."""
    out = []
    rows = db.conn.execute(
        "SELECT rs.store, rs.command_id, rs.started_at, c.state, c.result"
        " FROM rollout_stores rs LEFT JOIN commands c ON c.id = rs.command_id"
        " WHERE rs.rollout = ? ORDER BY rs.started_at, rs.store", (rollout_id,)).fetchall()
    for store, command_id, started_at, cmd_state, cmd_result in rows:
        latest = _latest_update(db, store, command_id)
        row = {"store": store, "command_id": command_id, "started_at": started_at,
               "command_state": cmd_state,
               "command_result": None if cmd_result is None else json.loads(cmd_result),
               "state": latest.get("state", "idle"), "percent": latest.get("percent", 0),
               "result": latest.get("result", ""), "ok": latest.get("ok"),
               "detail": str(latest.get("detail", "")), "reasons": _reasons(latest)}
        # What the rollout counts, in one code: the update's result, or why the store
        # never got that far (unsent, refused, expired, the command answered `failed`).
        row["outcome"] = _report(row).result
        out.append(row)
    return out


def _reasons(report: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The report's reason codes (xiaodian.wire.update_reasons) as data, or None: an older
    terminal's report, whose `detail` is all it says, or reasons that do not parse (parked
    as they arrived, cloud_gateway/update_events.py; the detail still says it)."""
    try:
        found = update_reasons.reasons_of(report)
    except update_reasons.PayloadError:
        return None
    return None if found is None else update_reasons.reasons_data(found)


def _latest_update(db: Database, store: str, command_id: str) -> dict[str, Any]:
    """The store's latest `update` event for this command (the edge numbers them in order)."""
    found: dict[str, Any] = {}
    best = (-1, -1)
    for boot, seq, data in db.conn.execute(
            "SELECT boot, seq, data FROM events WHERE store = ? AND type = 'update'",
            (store,)).fetchall():
        d = json.loads(data)
        if d.get("command") == command_id and (boot, seq) > best:
            best, found = (boot, seq), d
    return found


def _report(row: Mapping[str, Any]) -> rollout.StoreReport:
    started = float(row["started_at"])
    if str(row["command_id"]).startswith(NOT_SENT):
        return rollout.StoreReport(rollout.Outcome.FAILED, started, "unsent")
    if row["command_state"] in ("refused", "expired", "unsent"):
        return rollout.StoreReport(rollout.Outcome.FAILED, started, str(row["command_state"]))
    answer = row["command_result"] or {}
    if answer.get("status") == "failed":
        return rollout.StoreReport(rollout.Outcome.FAILED, started,
                                   str(answer.get("outcome", "failed")))
    if row["state"] == "done":
        outcome = rollout.Outcome.SUCCEEDED if row["ok"] else rollout.Outcome.FAILED
        return rollout.StoreReport(outcome, started, str(row["result"]))
    return rollout.StoreReport(rollout.Outcome.STARTED, started, "")


def tick(db: Database, issuer: Issuer, rollout_id: str, now: float) -> rollout.Decision:
    """Advance one rollout: start the stores the plan opens, record the state."""
    row = db.conn.execute("SELECT * FROM rollouts WHERE id = ?", (rollout_id,)).fetchone()
    if row is None:
        raise KeyError(f"no rollout {rollout_id!r}")
    p = _plan(row)
    reports = {r["store"]: _report(r) for r in store_rows(db, rollout_id)}
    decision = rollout.decide(p, reports, now)
    if row["state"] != rollout.State.RUNNING.value:  # final: report, start nothing
        return rollout.Decision(rollout.State(row["state"]), decision.stage, (),
                                decision.timed_out, decision.failed, decision.succeeded,
                                str(row["reason"]), decision.counts)
    artefact = Artefact(row["kind"], row["device"], row["url"], row["sha256"], int(row["size"]),
                        row["version"])
    for store in decision.start:
        # Claimed first: of two workers ticking at once, one sends it.
        with db.transaction() as conn:
            claimed = conn.execute(
                "INSERT INTO rollout_stores (rollout, store, command_id, started_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (rollout_id, store, PENDING, now)).rowcount == 1
        if not claimed:
            continue
        try:
            cid = issuer.issue(store, "update", artefact.params(), now,
                               issued_by=f"rollout:{rollout_id}")
        except _ISSUE_ERRORS as exc:  # that store failed: say why
            log.warning("rollout %s: the command to %s failed: %s", rollout_id, store, exc)
            cid = NOT_SENT + str(exc)[:80]
        with db.transaction() as conn:
            conn.execute("UPDATE rollout_stores SET command_id = ? WHERE rollout = ? AND"
                         " store = ?", (cid, rollout_id, store))
    with db.transaction() as conn:
        conn.execute("UPDATE rollouts SET state = ?, reason = ?, updated_at = ? WHERE id = ?",
                     (decision.state.value, decision.reason, now, rollout_id))
    return decision


def summary(db: Database, rollout_id: str) -> dict[str, Any] | None:
    """What a technician sees: the artefact, the plan, the state, each store."""
    row = db.conn.execute("SELECT * FROM rollouts WHERE id = ?", (rollout_id,)).fetchone()
    if row is None:
        return None
    p = _plan(row)
    stores = store_rows(db, rollout_id)
    failed = sum(1 for s in stores if _report(s).outcome is rollout.Outcome.FAILED)
    succeeded = sum(1 for s in stores if _report(s).outcome is rollout.Outcome.SUCCEEDED)
    return {"id": row["id"], "kind": row["kind"], "device": row["device"],
            "version": row["version"], "sha256": row["sha256"], "state": row["state"],
            "reason": row["reason"], "created_by": row["created_by"],
            "created_at": row["created_at"], "updated_at": row["updated_at"],
            "stages": list(p.stages), "total": len(p.stores), "max_failures": p.max_failures,
            "planned": list(p.stores), "settle_s": p.settle_s,
            # the stage opened so far: the first whose count covers the stores started
            "stage": next(k + 1 for k, n in enumerate(p.stages) if n >= len(stores)),
            "failed": failed, "succeeded": succeeded, "stores": stores}


def recent(db: Database, stores: Sequence[str] | None = None,
           limit: int = 20) -> list[dict[str, Any]]:
    """The newest rollouts (those touching `stores`, if given), summarised."""
    ids = [r[0] for r in db.conn.execute(
        "SELECT id FROM rollouts ORDER BY created_at DESC LIMIT ?", (limit * 5,)).fetchall()]
    out = []
    for rid in ids:
        s = summary(db, rid)
        if s is None:
            continue
        plan_stores = set(_plan(db.conn.execute("SELECT * FROM rollouts WHERE id = ?",
                                                (rid,)).fetchone()).stores)
        if stores is None or plan_stores & set(stores):
            out.append(s)
        if len(out) >= limit:
            break
    return out


def agent_targets(summaries: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """For each store in a running rollout of the terminal's own software, the version it
    brings (the newest rollout's, if several): a store whose agent reports another version
    is not there yet. `summaries` newest first, as `recent` gives them."""
    out: dict[str, str] = {}
    for s in summaries:
        if s["kind"] == "agent" and s["state"] == rollout.State.RUNNING.value:
            for store in s["planned"]:
                out.setdefault(store, str(s["version"]))
    return out


def running(db: Database) -> list[str]:
    return [r[0] for r in db.conn.execute(
        "SELECT id FROM rollouts WHERE state = ? ORDER BY created_at",
        (rollout.State.RUNNING.value,)).fetchall()]


class RolloutTicker(DbLoop):
    """`cloud run`'s thread that advances every running rollout every `interval_s`, so a
    rollout goes on (and halts) with no technician's process running."""

    def __init__(self, db_path: Path | str, issuer: Issuer, interval_s: float = TICK_S,
                 now: Any = None) -> None:
        import time

        super().__init__("rollouts", db_path, interval_s)
        self.issuer = issuer
        self._now = now or time.time

    def step(self, db: Database) -> None:
        for rid in running(db):
            d = tick(db, self.issuer, rid, self._now())
            if d.state is not rollout.State.RUNNING:
                log.info("rollout %s %s: %s", rid, d.state.value, d.reason)


def artefact_path(directory: Path, sha256_hex: str) -> Path:
    """Where the artefact server (web/artefact_server.py) finds an artefact: by its hash."""
    return directory / f"{sha256_hex}.bin"


def publish_verified(directory: Path, source: Path, check: Callable[[Path], None]) -> str:
    """Copy `source` into the artefact store, `check` the copy (it raises to refuse), and
    only then make it servable under its SHA-256 (hex, returned). The copy is what is
    checked, so a file changed after the check is never what gets served; a refused one
    leaves nothing behind."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".incoming-{uuid.uuid4().hex}.tmp"
    digest = hashlib.sha256()
    try:
        with source.open("rb") as src, tmp.open("xb") as dst:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                dst.write(chunk)
        check(tmp)
        target = artefact_path(directory, digest.hexdigest())
        if target.exists():
            tmp.unlink()
        else:
            tmp.rename(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def publish_artefact(directory: Path, raw: bytes) -> str:
    """Put an artefact where the artefact server serves it; its SHA-256 (hex)."""
    sha = hashlib.sha256(raw).hexdigest()
    directory.mkdir(parents=True, exist_ok=True)
    target = artefact_path(directory, sha)
    if not target.exists():
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(raw)
        tmp.rename(target)
    return sha
