"""The technician's pages: the fleet (stores × fridges) and one fridge's page with its
7- and 28-day trends, event log and a "collect diagnostics" button.

Rendered on the server in the reader's language, times in each store's zone. The fleet's
sorting and filtering happen in the page (the table is small: a technician's stores); the
device page's script draws the trends (uPlot) from `/api/.../vitals` and sends the signed
`diagnostics` command through `POST /tech/{s}/{f}/diagnostics`, then reads its answer from
`/api/commands/{id}` (the same command API the CLI uses).
"""

from __future__ import annotations

from http import HTTPStatus

from starlette.routing import Route

from xiaodian.i18n import DEFAULT_TZ, N_, Translator
from xiaodian.wire import ids
from xiaodian.wire.commands import CommandError

from .. import accounts, fleet, haccp, maintenance_alerts, maintenance_text, rollouts, stores
from ..fleet_text import event_text
from ..rollout_text import describe as describe_rollout
from .core import Call, HttpError, Reply, int_param
from .core import json_reply as ok
from .owner import who_or_refusal
from .page import message_page, page, reader, refusal_text
from .resource import route

LOG_ROWS = 100


def fleet_page(call: Call) -> Reply:
    """The technician's fleet (HTML): every fridge of the stores the person covers.
    ---
    parameters:
      - {name: lang, in: query, schema: {enum: [zh-CN, en]}}
    """
    t = reader(call)
    call.query("lang")
    got = who_or_refusal(call, t, "store.read")
    if isinstance(got, Reply):
        return got
    who = got
    now = call.api.now()
    with call.api.read() as db:
        names = [s["store"] for s in db.stores() if who.covers(s["store"])]
        profiles = {n: stores.get(db.conn, n) for n in names}
        rows = fleet.fridges(db.conn, names, now)
        updates = rollouts.recent(db, names, limit=5)
    behind = rollouts.agent_targets(updates)
    for r in rows:
        r["profile"] = profiles[r["store"]]
        r["maintenance_names"] = [t.render(maintenance_text.name(m)) for m in r["maintenance"]]
        target = behind.get(r["store"])
        # The terminal not yet on the version a running agent rollout brings it.
        r["agent_target"] = target if target and target != r["agent_version"] else None
    for u in updates:
        u |= describe_rollout(u, t)
        # A person sees only the stores they cover (the counts are the rollout's).
        u["rows"] = [s for s in u["rows"] if s["store"] in profiles]
    return page(call, "fleet.html", t, who=who, rows=rows, now=now, default_tz=DEFAULT_TZ,
                offline_after_min=int(fleet.OFFLINE_AFTER_S // 60), updates=updates,
                profiles=profiles)


def device_page(call: Call) -> Reply:
    """One fridge for the technician (HTML): state, trends, event log, diagnostics.
    ---
    parameters:
      - {name: lang, in: query, schema: {enum: [zh-CN, en]}}
    """
    t = reader(call)
    call.query("lang")
    store, device = call.path_params["store"], call.path_params["device"]
    if not ids.is_store_id(store) or not ids.is_device_id(device):
        return message_page(call, HTTPStatus.NOT_FOUND, t.gettext("There is no such page."), t)
    got = who_or_refusal(call, t, "store.read", store)
    if isinstance(got, Reply):
        return got
    who = got
    now = call.api.now()
    with call.api.read() as db:
        row = next((r for r in fleet.fridges(db.conn, [store], now) if r["device"] == device),
                   None)
        if row is None:
            return message_page(call, HTTPStatus.NOT_FOUND, t.gettext(
                "No readings for %(where)s.") % {"where": f"{store} / {device}"}, t)
        profile = stores.get(db.conn, store)
        log = fleet.event_log(db.conn, store, device, LOG_ROWS)
        alerts = [a.to_dict() for a in haccp.load_alerts(db.conn, store)
                  if a.fridge == device and a.active]
        maint = maintenance_alerts.open_alerts(db.conn, [store], device)
    for e in log:
        e["text"] = event_text(e["type"], e["data"], t)
    for m in maint:
        m["name"] = t.render(maintenance_text.name(m["rule"]))
        m["shows"] = t.render(maintenance_text.shows(m["rule"], m["evidence"]))
        m["check"] = t.render(maintenance_text.check(m["rule"]))
        m["since"] = t.date_time((m["raised_hour"] + 1) * 3600, profile.tz, fmt="short")
    return page(call, "device.html", t, who=who, row=row, profile=profile, log=log,
                alerts=alerts, maintenance=maint, now=now, days=fleet.TREND_DAYS,
                may_send=who.may("commands.send", store) and call.api.commander is not None)


def vitals(call: Call) -> Reply:
    """A fridge's hourly vitals as chart columns: duty cycle (%), longest defrost and median
    pull-down (min), door openings; x = the hour's start (unix s).
    ---
    parameters:
      - {name: days, in: query, schema: {type: integer, minimum: 1, maximum: 90}}
    """
    store, device = call.id("store"), call.id("device")
    call.api.authorise(call.headers, "store.read", store)
    days = int_param(call.query("days"), "days", 7, 1, 90)
    with call.api.read() as db:
        tz = stores.get(db.conn, store).tz
        return ok(HTTPStatus.OK, fleet.trends(db.conn, store, device, call.api.now(), days)
                  | {"tz": tz, "days": days})


def collect_diagnostics(call: Call) -> Reply:
    """Send the signed `diagnostics` command for one fridge (full scope) as the logged-in
    person; {"id", "text"} or {"error"} in the reader's language."""
    t = reader(call)
    call.no_query()
    store, device = call.path_params["store"], call.path_params["device"]
    if not ids.is_store_id(store) or not ids.is_device_id(device):
        raise HttpError(HTTPStatus.NOT_FOUND, f"no such path: {call.path}")
    try:
        who = call.api.authorise(call.headers, "commands.send", store)
    except HttpError as exc:
        why = {int(HTTPStatus.UNAUTHORIZED): N_("Your login has ended: log in again."),
               int(HTTPStatus.FORBIDDEN): N_("Your account may not send commands to this store.")
               }.get(exc.status, N_("Not sent."))
        return _refused(exc.status, t, why)
    if call.api.commander is None:
        return _refused(HTTPStatus.SERVICE_UNAVAILABLE, t,
                        N_("This server sends no commands (no [commands] in its configuration)."))
    params: dict[str, str | int | bool] = {"scope": "full", "device": device}
    try:
        command_id = call.api.commander.issue(store, "diagnostics", params,
                                              issued_by=f"{who.name}@http:{call.client}")
    except CommandError as exc:
        return _refused(HTTPStatus.BAD_REQUEST, t, str(exc))
    with call.api.write() as db, db.transaction() as conn:
        accounts.audit(conn, who, "command.send", store, command_id, call.api.now(),
                       f"from {call.client}", {"action": "diagnostics", "params": params})
    return ok(HTTPStatus.ACCEPTED, {"id": command_id, "text": t.gettext(
        "Sent; waiting for the terminal's answer…")})


def _refused(status: int, t: Translator, why: str) -> Reply:
    return ok(status, {"error": refusal_text(why, t), "status": int(status)})


ROUTES: list[Route] = [
    route("/tech", get=fleet_page),
    route("/tech/{store}/{device}", get=device_page),
    route("/tech/{store}/{device}/diagnostics", post=collect_diagnostics),
    route("/api/stores/{store}/fridges/{device}/vitals", get=vitals),
]
