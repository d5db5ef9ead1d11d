"""Pages for people (dashboard, owner page, printable HACCP record), the chart library they
load, and the health checks. Pages speak the reader's language (web/page.py)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from starlette.routing import Route

from xiaodian.wire import ids

from .. import haccp, sql, stores
from ..db import Database
from .core import Call, HttpError, Reply
from .core import json_reply as ok
from .dashboard import dashboard
from .owner import owner_ack, owner_page, person_or_refusal
from .page import VENDOR_FILES, html_reply, message_page, reader, switch, vendor_file
from .resource import route


def vendor(call: Call) -> Reply:
    """The pages' chart library (uPlot), served by the cloud itself, never from a CDN."""
    call.query()
    name = call.path_params["name"]
    if name not in VENDOR_FILES:
        raise HttpError(HTTPStatus.NOT_FOUND, f"no such path: {call.path}")
    return Reply(HTTPStatus.OK, vendor_file(name), VENDOR_FILES[name])


def haccp_page(call: Call) -> Reply:
    """The printable HACCP day record of a store, or of one of its fridges (HTML).
    ---
    parameters:
      - {name: day, in: query, schema: {type: string, format: date},
         description: "a local day in tz (default: that of the newest reading)"}
      - {name: tz, in: query, schema: {type: string},
         description: "IANA time zone (default: the store's own, Asia/Shanghai unless set)"}
      - {name: lang, in: query, schema: {enum: [zh-CN, en]}}
    """
    t = reader(call)
    query = call.query("day", "tz", "lang")
    store, fridge = call.path_params["store"], call.path_params.get("fridge")
    if not ids.is_store_id(store) or (fridge is not None and not ids.is_device_id(fridge)):
        return message_page(call, HTTPStatus.NOT_FOUND, t.gettext("There is no such page."), t)
    refusal = person_or_refusal(call, t, "store.read", store)
    if refusal is not None:
        return refusal
    with call.api.read() as db:
        profile = stores.get(db.conn, store)
        try:
            tz = haccp.parse_tz(query["tz"]) if "tz" in query else profile.zone
            day = haccp.parse_day(query["day"]) if "day" in query else None
        except ValueError:
            return message_page(call, HTTPStatus.BAD_REQUEST, t.gettext(
                "The day must be written as YYYY-MM-DD and the time zone as a name such as"
                " Asia/Shanghai."), t)
        known = haccp.fridge_ids(db.conn, store)
        if not known or (fridge is not None and fridge not in known):
            where = store if fridge is None else f"{store} / {fridge}"
            return message_page(call, HTTPStatus.NOT_FOUND, t.gettext(
                "No readings for %(where)s.") % {"where": where}, t)
        day = day or haccp.latest_day(db.conn, store, tz)
        assert day is not None  # the store has readings
        html = haccp.report_html(db.conn, haccp.report(db.conn, store, day, tz, fridge), t,
                                 store_name=profile.name, switch=switch(call, t))
    return html_reply(call, t, html)


def healthz(call: Call) -> Reply:
    """Liveness: 200 if the database answers (and whether ingest is subscribed), else 503."""
    call.query()
    body: dict[str, Any] = {"status": "ok", "db": True}
    try:
        with Database.open_readonly(call.api.db_path) as db:
            db.ping()
    except sql.ERRORS as exc:
        body.update(status="error", db=False, error=f"database: {exc}")
    if call.api.ingest_status is not None:
        body["ingest"] = {"subscribed": call.api.ingest_status().get("subscribed")}
    return ok(HTTPStatus.OK if body["db"] else HTTPStatus.SERVICE_UNAVAILABLE, body)


def ingest(call: Call) -> Reply:
    """The ingest worker's counters (404 in a process without one)."""
    # Open like /healthz: message counts of this worker, no store's or person's data.
    call.query()
    if call.api.ingest_status is None:
        raise HttpError(HTTPStatus.NOT_FOUND, "no ingest worker in this process")
    return ok(HTTPStatus.OK, dict(call.api.ingest_status()))


ROUTES: list[Route] = [
    route("/", get=dashboard),
    route("/index.html", get=dashboard),
    route("/owner", get=owner_page),
    route("/owner/", get=owner_page),
    route("/owner/{store}", get=owner_page),
    route("/owner/{store}/ack/{alert_id:path}", post=owner_ack),
    route("/static/vendor/{name}", get=vendor),
    route("/haccp/{store}", get=haccp_page),
    route("/haccp/{store}/{fridge}", get=haccp_page),
    route("/healthz", get=healthz),
    route("/api/ingest", get=ingest),
]
