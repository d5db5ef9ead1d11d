"""HTTP routes of the alerts, placed by `cloud_gateway.web.alerts` (which owns the routes).
The alerts package knows nothing of HTTP; this module turns its answers into statuses.

    GET  /api/stores/{s}/alerts?state=active|all&limit=N   a store's alerts, newest first
    GET  /api/alerts/{s}/{alert id}                         one alert, acks, notifications
    POST /api/alerts/{s}/{alert id}/ack                     {"by", "corrective_action"}, bearer
    GET  /ack/{s}/{alert id}?t=TOKEN                        the form behind a notification link
    POST /ack/{s}/{alert id}                                the form (t, by, corrective_action)

Who may read and acknowledge is decided by the caller (`cloud_gateway.web`, `authorise()`)
before these run; a link's token is its own authority, valid for a day and for one
acknowledgement. Every acknowledgement is written to the audit trail in its transaction.

An alert id contains slashes (`fridge-1/warm/1748715600000`): the path segments after the
store are joined back together.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from xiaodian.i18n import N_, Translator, translator
from xiaodian.i18n.templates import render
from xiaodian.wire import ids

from .. import accounts, sql, stores
from ..accounts import Principal
from ..alerts import store
from ..alerts.notifier import check_ack_token
from ..db import Database
from ..page_text import TEMPLATE_HELPERS, refusal_text

FORM_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"


@dataclass(frozen=True)
class Reader:
    """Who reads the form's pages: their translator and the language switch's links."""

    t: Translator = field(default_factory=translator)
    switch: Sequence[dict[str, Any]] = ()


@dataclass(frozen=True)
class WebResult:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def _json(status: int, obj: Any) -> WebResult:
    return WebResult(status, json.dumps(obj, separators=(",", ":")).encode() + b"\n")


def _err(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> WebResult:
    return WebResult(status, json.dumps({"error": message, "status": status}).encode() + b"\n",
                     headers=headers)


def _split(target: str) -> tuple[list[str], str]:
    parts = urlsplit(target)
    return [unquote(s) for s in parts.path.split("/")[1:]], parts.query


def _key(segments: list[str]) -> tuple[str, str] | None:
    """(store, alert id) from path segments [store, fridge, rule, start] (or one %2F'd id)."""
    if len(segments) < 2 or not ids.is_store_id(segments[0]):
        return None
    alert_id = "/".join(segments[1:])
    if not alert_id or len(alert_id) > 300:
        return None
    return segments[0], alert_id


def accepts_get(target: str) -> bool:
    segs, _ = _split(target)
    return (segs[:1] == ["ack"] or segs[:2] == ["api", "alerts"]
            or (len(segs) == 4 and segs[:2] == ["api", "stores"] and segs[3] == "alerts"))


def accepts_post(target: str) -> bool:
    segs, _ = _split(target)
    return segs[:1] == ["ack"] or (segs[:2] == ["api", "alerts"] and segs[-1:] == ["ack"])


class AlertWeb:
    def __init__(self, db_path: Path | str, *, link_secret: bytes | None,
                 now: Callable[[], float] = time.time) -> None:
        self.db_path = db_path
        self.link_secret = link_secret
        self.now = now

    def get(self, target: str, reader: Reader | None = None) -> WebResult:
        r = reader or Reader()
        segs, query = _split(target)
        q = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        try:
            with Database.open_readonly(self.db_path) as db:
                if segs[:2] == ["api", "stores"]:
                    state = q.get("state", "active")
                    if state not in ("active", "all") or set(q) - {"state", "limit"}:
                        return _err(HTTPStatus.BAD_REQUEST, "query: state=active|all, limit")
                    limit = q.get("limit", "1000")
                    if not limit.isascii() or not limit.isdigit() or not 1 <= int(limit) <= 10000:
                        return _err(HTTPStatus.BAD_REQUEST, "limit: 1..10000")
                    rows = store.list_alerts(db.conn, segs[2], state=state, limit=int(limit))
                    return _json(HTTPStatus.OK, {"store": segs[2], "alerts": rows})
                if segs[:2] == ["api", "alerts"]:
                    key = _key(segs[2:])
                    alert = None if key is None else store.get_alert(db.conn, *key)
                    if alert is None:
                        return _err(HTTPStatus.NOT_FOUND, "no such alert")
                    return _json(HTTPStatus.OK, alert)
                key = _key(segs[1:])
                token = q.get("t", "")
                contact, refusal = self._contact(key, token, r)
                if refusal is not None:
                    return refusal
                if accounts.ack_link_used(db.conn, token):
                    return _page(HTTPStatus.GONE, r, _USED)
                assert key is not None
                alert = store.get_alert(db.conn, *key)
                profile = stores.get(db.conn, key[0])
        except sql.ERRORS:
            return _page(HTTPStatus.SERVICE_UNAVAILABLE, r, N_(
                "The server cannot read its database just now. Try again in a minute."))
        if alert is None:
            return _page(HTTPStatus.NOT_FOUND, r, N_("There is no such alert."))
        return _form(HTTPStatus.OK, r, alert, profile, q["t"], contact)

    def post(self, target: str, *, who: Principal | None, content_type: str | None,
             body: bytes, client: str, reader: Reader | None = None) -> WebResult:
        """An acknowledgement: by link (the form's token) or by `who`, already authorised."""
        r = reader or Reader()
        segs, _ = _split(target)
        mime = (content_type or "").split(";")[0].strip().lower()
        if segs[:1] == ["ack"]:  # the link's form: the token is the authority
            key = _key(segs[1:])
            if mime != "application/x-www-form-urlencoded":
                return _page(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, r, N_(
                    "Send the acknowledgement with the form on the alert's page."))
            form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace"),
                                                   keep_blank_values=True).items()}
            token = form.get("t", "")
            contact, refusal = self._contact(key, token, r)
            if refusal is not None:
                return refusal
            assert key is not None
            by, action = form.get("by") or contact, form.get("corrective_action", "")
            problem = self._needs_action(key, action)
            if problem is not None:
                return self._form_again(key, r, token, contact, by, action, problem)
            result = self._ack(key, by, action, f"link:{contact}", link=token,
                               actor=f"link:{contact}", client=client, reader=r)
            if result.content_type.startswith("text/html"):
                return result
            if result.status in (HTTPStatus.BAD_REQUEST, HTTPStatus.UNPROCESSABLE_ENTITY):
                # The domain refused: say why, keep what was typed, same status as the API.
                why = str(json.loads(result.body).get("error", ""))
                return self._form_again(key, r, token, contact, by, action, why,
                                        HTTPStatus(result.status))
            if result.status != HTTPStatus.OK:
                return _page(result.status, r, N_("Not acknowledged. Try again."))
            return _page(HTTPStatus.OK, r, N_("Acknowledged. Thank you."),
                         N_("Alert acknowledged"))
        if who is None:
            return _err(HTTPStatus.UNAUTHORIZED, "not authorised")
        key = _key(segs[2:-1])
        if key is None:
            return _err(HTTPStatus.NOT_FOUND, "no such alert")
        if mime != "application/json":
            return _err(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json")
        try:
            obj = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return _err(HTTPStatus.BAD_REQUEST, "body is not JSON")
        if (not isinstance(obj, dict) or set(obj) - {"by", "corrective_action"}
                or not isinstance(obj.get("by"), str)
                or not isinstance(obj.get("corrective_action", ""), str)):
            return _err(HTTPStatus.BAD_REQUEST,
                        'body: {"by": str, "corrective_action": str} expected')
        return self._ack(key, obj["by"], obj.get("corrective_action", ""), f"api:{client}",
                         actor=who, client=client)

    def _contact(self, key: tuple[str, str] | None, token: str,
                 r: Reader) -> tuple[str, WebResult | None]:
        """(contact, None) for a link that may still be used, else ("", the refusal page)."""
        checked = None
        if key is not None and self.link_secret is not None and token:
            checked = check_ack_token(self.link_secret, f"{key[0]}/{key[1]}", token)
        if checked is None:
            return "", _page(HTTPStatus.FORBIDDEN, r, N_("This link is not valid."))
        contact, expires_at = checked
        if expires_at <= self.now():
            return "", _page(HTTPStatus.GONE, r, N_(
                "This link has expired. Log in to acknowledge the alert, or use a newer"
                " notification."))
        return contact, None

    def _needs_action(self, key: tuple[str, str], action: str) -> str | None:
        """The form's own check: a critical alert needs a corrective action (the HACCP
        record asks for one). The domain may refuse more; its reason is shown as it is."""
        if action.strip():
            return None
        try:
            with Database.open_readonly(self.db_path) as db:
                alert = store.get_alert(db.conn, *key)
        except sql.ERRORS:
            return None  # the acknowledgement itself will say the database is away
        if alert is not None and alert["severity"] == "critical":
            return N_("A critical alert needs a corrective action: say what you did.")
        return None

    def _form_again(self, key: tuple[str, str], r: Reader, token: str, contact: str, by: str,
                    action: str, problem: str,
                    status: HTTPStatus = HTTPStatus.UNPROCESSABLE_ENTITY) -> WebResult:
        """The form again with what was typed and why it did not count (422 by default:
        understood but not enough, as the API answers a critical alert without an action)."""
        try:
            with Database.open_readonly(self.db_path) as db:
                alert = store.get_alert(db.conn, *key)
                profile = stores.get(db.conn, key[0])
        except sql.ERRORS:
            return _page(HTTPStatus.SERVICE_UNAVAILABLE, r, N_(
                "The server cannot read its database just now. Try again in a minute."))
        if alert is None:
            return _page(HTTPStatus.NOT_FOUND, r, N_("There is no such alert."))
        return _form(status, r, alert, profile, token, contact, by=by,
                     action=action, problem=refusal_text(problem, r.t))

    def _ack(self, key: tuple[str, str], by: str, action: str, via: str, *,
             actor: Principal | str, client: str, link: str | None = None,
             reader: Reader | None = None) -> WebResult:
        now = self.now()
        try:
            with Database.open(self.db_path) as db, db.transaction() as conn:
                # Checked and marked in the ack's transaction: two clicks cannot both count.
                if link is not None and not accounts.use_ack_link(conn, link, *key, now):
                    return _page(HTTPStatus.GONE, reader or Reader(), _USED)
                found = store.acknowledge(conn, *key, by, action, via, now)
                alert = store.get_alert(conn, *key) if found else None
                if alert is not None:
                    accounts.audit(conn, actor, "alert.ack", key[0], key[1], now,
                                   f"from {client}", {"by": by.strip()})
        except store.CorrectiveActionRequired as exc:  # understood, but not enough for it
            return _err(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc))
        except store.AckError as exc:
            return _err(HTTPStatus.BAD_REQUEST, str(exc))
        except sql.ERRORS as exc:
            return _err(HTTPStatus.SERVICE_UNAVAILABLE, f"database unavailable: {exc}")
        if alert is None:
            return _err(HTTPStatus.NOT_FOUND, "no such alert")
        return _json(HTTPStatus.OK, alert)


_USED = N_("This link has been used already: each link acknowledges once.")


def _page(status: int, r: Reader, text: str, title: str | None = None) -> WebResult:
    """A page that says one thing (`text`, `title`: English msgids) in the reader's words."""
    t = r.t
    body = render("cloud_gateway", "templates", "message.html", t, switch=list(r.switch),
                  text=t.gettext(text), title=t.gettext(title or N_("Fridge alert")),
                  **TEMPLATE_HELPERS)
    return _html(status, body)


def _html(status: int, body: str) -> WebResult:
    return WebResult(status, body.encode(), "text/html; charset=utf-8",
                     (("Content-Security-Policy", FORM_CSP), ("Referrer-Policy", "no-referrer")))


def _form(status: int, r: Reader, alert: dict[str, Any], profile: stores.Profile, token: str,
          contact: str, *, by: str | None = None, action: str = "",
          problem: str = "") -> WebResult:
    body = render("cloud_gateway", "templates", "ack.html", r.t, switch=list(r.switch),
                  alert=alert, profile=profile, token=token, by=by if by is not None else contact,
                  action=action, problem=problem,
                  post_to="/ack/" + quote(alert["key"], safe="/"), **TEMPLATE_HELPERS)
    return _html(status, body)
