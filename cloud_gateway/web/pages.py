"""Pages for people (dashboard, owner page, printable HACCP record) and the health checks."""

from __future__ import annotations

from http import HTTPStatus
from importlib import resources
from typing import Any

from starlette.routing import Route

from xiaodian.wire import ids

from .. import haccp, sql
from ..db import Database
from .core import HTML, BadRequest, Call, HttpError, Reply
from .core import json_reply as ok
from .resource import route


def _static(name: str) -> Reply:
    page = resources.files("cloud_gateway").joinpath(f"static/{name}").read_bytes()
    return Reply(HTTPStatus.OK, page, HTML)


def dashboard(call: Call) -> Reply:
    """The operator's dashboard (HTML, self-contained)."""
    call.query()
    return _static("dashboard.html")


def owner_page(call: Call) -> Reply:
    """The store owner's page (HTML): fridges, charts, alerts to acknowledge."""
    call.query()
    return _static("owner.html")


def haccp_page(call: Call) -> Reply:
    """The printable HACCP day record of a store, or of one of its fridges (HTML).
    ---
    parameters:
      - {name: day, in: query, schema: {type: string, format: date},
         description: "a local day in tz (default: that of the newest reading)"}
      - {name: tz, in: query, schema: {type: string}, description: IANA time zone, UTC}
    """
    query = call.query("day", "tz")
    store, fridge = call.path_params["store"], call.path_params.get("fridge")
    if not ids.is_store_id(store) or (fridge is not None and not ids.is_device_id(fridge)):
        raise BadRequest("store and fridge must be ids")
    call.api.authorise(call.headers, "store.read", store)
    try:
        tz = haccp.parse_tz(query.get("tz", "UTC"))
        day = haccp.parse_day(query["day"]) if "day" in query else None
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    with call.api.read() as db:
        known = haccp.fridge_ids(db.conn, store)
        if not known or (fridge is not None and fridge not in known):
            where = store if fridge is None else f"{store}/{fridge}"
            raise HttpError(HTTPStatus.NOT_FOUND, f"no readings for {where}")
        day = day or haccp.latest_day(db.conn, store, tz)
        assert day is not None  # the store has readings
        page = haccp.report_html(db.conn, haccp.report(db.conn, store, day, tz, fridge))
    return Reply(HTTPStatus.OK, page.encode(), HTML)


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
    route("/owner/{store}", get=owner_page),  # the page reads the store from its own URL
    route("/haccp/{store}", get=haccp_page),
    route("/haccp/{store}/{fridge}", get=haccp_page),
    route("/healthz", get=healthz),
    route("/api/ingest", get=ingest),
]
