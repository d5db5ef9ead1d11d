"""Alert routes: the behaviour lives in `cloud_gateway.web.alert_routes`; this file places it.

An alert id contains slashes (`fridge-1/warm/1748715600000`), hence the `path` parameters.
"""

from __future__ import annotations

from starlette.routing import Route

from xiaodian.i18n import Translator

from ..accounts import Principal
from .alert_routes import Reader, WebResult
from .core import Call, Reply
from .page import reader, remember, switch
from .resource import route


def _reply(r: WebResult) -> Reply:
    return Reply(r.status, r.body, r.content_type, r.headers)


def list_alerts(call: Call) -> Reply:
    """A store's alerts, newest first.
    ---
    parameters:
      - {name: state, in: query, schema: {enum: [active, all]}}
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 10000}}
    """
    call.api.authorise(call.headers, "alerts.read", call.path_params["store"])
    return _reply(call.api.alert_web.get(call.target))


def get_alert(call: Call) -> Reply:
    """One alert with its acknowledgements and notifications (their contacts)."""
    # Contacts are people: only roles that may acknowledge see them.
    call.api.authorise(call.headers, "alerts.ack", call.path_params["store"])
    return _reply(call.api.alert_web.get(call.target))


def _page_reply(call: Call, r: WebResult, t: Translator) -> Reply:
    """A form page's reply, remembering the language the reader asked for."""
    return Reply(r.status, r.body, r.content_type, (*r.headers, *remember(call, t)))


def ack_form(call: Call) -> Reply:
    """The acknowledgement form behind a notification's signed link (HTML).
    ---
    parameters:
      - {name: t, in: query, required: true, schema: {type: string},
         description: the link's signed token}
      - {name: lang, in: query, schema: {enum: [zh-CN, en]}}
    """
    t = reader(call)
    return _page_reply(call, call.api.alert_web.get(call.target, Reader(t, switch(call, t))), t)


def _post(call: Call, who: Principal | None = None) -> Reply:
    t = reader(call)
    return _page_reply(call, call.api.alert_web.post(
        call.target, who=who, content_type=call.headers.get("Content-Type"), body=call.body,
        client=call.client, reader=Reader(t, switch(call, t))), t)


def ack(call: Call) -> Reply:
    """Acknowledge an alert: who, and the corrective action taken.
    ---
    security: [{bearer: []}]
    requestBody:
      required: true
      content:
        application/json:
          schema:
            type: object
            required: [by]
            properties: {by: {type: string}, corrective_action: {type: string}}
    """
    # Before reading what was sent.
    who = call.api.authorise(call.headers, "alerts.ack", call.path_params["store"])
    call.json_body()  # the API's strict reader (duplicate keys, NaN), then alert_routes' checks
    return _post(call, who)


def ack_by_link(call: Call) -> Reply:
    """Acknowledge through the link's form; its token (field t) is the authority.
    ---
    requestBody:
      required: true
      content:
        application/x-www-form-urlencoded:
          schema:
            type: object
            required: [t]
            properties: {t: {type: string}, by: {type: string},
                         corrective_action: {type: string}}
    """
    return _post(call)


ROUTES: list[Route] = [
    route("/api/stores/{store}/alerts", get=list_alerts),
    route("/api/alerts/{store}/{alert_id:path}", get=get_alert),
    route("/api/alerts/{store}/{alert_id:path}/ack", post=ack),
    route("/ack/{store}/{alert_id:path}", get=ack_form, post=ack_by_link),
]
