"""The owner's page: each store's fridges, their 24 h charts, alerts to acknowledge.

Rendered on the server in the reader's language with the store's own time zone; the page's
script only draws the charts (uPlot, /static/vendor) from the history API, refreshes, and
posts acknowledgements to `/owner/{store}/ack/{alert id}`, which answers in the reader's
words (the API's `/api/alerts/.../ack` answers in English, for programs). The logged-in
person is who acknowledges: there is no name or token to type.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from xiaodian.i18n import DEFAULT_TZ, N_, Translator
from xiaodian.wire import ids

from .. import haccp, stores
from ..accounts import Principal
from .core import Call, HttpError, Reply
from .core import json_reply as ok
from .page import message_page, page, reader, refusal_text


def who_or_refusal(call: Call, t: Translator, permission: str,
                   store: str | None = None) -> Principal | Reply:
    """The person, if they may; else the login page (not logged in) or a page saying no."""
    try:
        return call.api.authorise(call.headers, permission, store)
    except HttpError as exc:
        if exc.status == HTTPStatus.UNAUTHORIZED:
            there = call.target if call.target.startswith("/") else "/"
            return Reply(HTTPStatus.SEE_OTHER, b"", "text/plain",
                         (("Location", "/login?next=" + quote(there, safe="/")),))
        return message_page(call, exc.status, t.gettext(
            "Your account may not see this page. Log in as the store's owner."), t)


def person_or_refusal(call: Call, t: Translator, permission: str,
                      store: str | None = None) -> Reply | None:
    got = who_or_refusal(call, t, permission, store)
    return got if isinstance(got, Reply) else None


def owner_page(call: Call) -> Reply:
    """The store owner's page (HTML): fridges, charts, alerts to acknowledge.
    ---
    parameters:
      - {name: lang, in: query, schema: {enum: [zh-CN, en]}}
    """
    t = reader(call)
    call.query("lang")
    store = call.path_params.get("store")
    if store is not None and not ids.is_store_id(store):
        return message_page(call, HTTPStatus.NOT_FOUND, t.gettext("There is no such page."), t)
    got = who_or_refusal(call, t, "store.read", store)
    if isinstance(got, Reply):
        return got
    who = got
    views: list[dict[str, Any]] = []
    with call.api.read() as db:
        names = [store] if store is not None else [
            s["store"] for s in db.stores() if who.covers(s["store"])]
        for name in names:
            view = haccp.owner_view(db.conn, name)
            views.append({"profile": stores.get(db.conn, name), "fridges": view["fridges"],
                          "may_ack": who.may("alerts.ack", name)})
    return page(call, "owner.html", t, who=who, stores=views, now=call.api.now(),
                default_tz=DEFAULT_TZ)


def owner_ack(call: Call) -> Reply:
    """Acknowledge an alert from the owner page: {"corrective_action"}; the logged-in person
    is who acknowledges. Answers {"text"} or {"error"} in the reader's language."""
    t = reader(call)
    call.no_query()
    store, alert_id = call.path_params["store"], call.path_params["alert_id"]
    if not ids.is_store_id(store):
        raise HttpError(HTTPStatus.NOT_FOUND, f"no such path: {call.path}")
    try:
        who = call.api.authorise(call.headers, "alerts.ack", store)
        action = call.json_body().get("corrective_action", "")
    except HttpError as exc:
        why = {
            int(HTTPStatus.UNAUTHORIZED): N_("Your login has ended: log in again."),
            int(HTTPStatus.FORBIDDEN): N_("Your account may not acknowledge this store's alerts."),
        }.get(exc.status, N_("The page sent something the server did not understand."))
        return _refused(exc.status, t, why)
    if not isinstance(action, str):
        return _refused(HTTPStatus.BAD_REQUEST, t,
                        N_("The page sent something the server did not understand."))
    body = json.dumps({"by": who.name, "corrective_action": action}).encode()
    result = call.api.alert_web.post(
        f"/api/alerts/{store}/{quote(alert_id, safe='')}/ack", who=who,
        content_type="application/json", body=body, client=call.client)
    if result.status == HTTPStatus.OK:
        text = t.gettext("Acknowledged by %(who)s.") % {"who": who.name}
        return ok(HTTPStatus.OK, {"acknowledged": True, "text": text})
    try:
        why = str(json.loads(result.body).get("error", ""))
    except ValueError:
        why = ""
    if result.status == HTTPStatus.NOT_FOUND:
        why = N_("There is no such alert.")
    return _refused(result.status, t, why or N_("Not acknowledged."))


def _refused(status: int, t: Translator, why: str) -> Reply:
    return ok(status, {"error": refusal_text(why, t), "status": int(status)})
