"""People: the login page, sessions, personal API tokens and the audit trail.

A session is a random id in a cookie that scripts cannot read (HttpOnly), the browser sends
to this site only (SameSite=Strict, so no cross-site request carries it) and over HTTPS or to
localhost only (Secure); the server keeps its digest and expiry. Tokens are for programs:
shown once when created, kept as a digest, revocable at once.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.routing import Route

from xiaodian import http_limits

from .. import accounts
from .context import SESSION_COOKIE, cookie_value
from .core import (
    DEFAULT_COMMAND_LIMIT,
    DIGITS,
    MAX_LIMIT,
    BadRequest,
    Call,
    HttpError,
    Reply,
    int_param,
    json_object,
)
from .core import json_reply as ok
from .page import page, reader
from .resource import route

log = logging.getLogger(__name__)

FORM = "application/x-www-form-urlencoded"
MAX_TOKEN_LIFETIME_S = 366 * 86400
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _form_or_json(call: Call) -> tuple[dict[str, Any], bool]:
    """The body as fields, and whether it came from the HTML form."""
    mime = (call.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if mime == FORM:
        pairs = parse_qs(call.body.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[-1] for k, v in pairs.items()}, True
    if mime == "application/json":
        return json_object(call.body), False
    raise HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                    "Content-Type must be application/json or the login form")


def _same_origin(call: Call) -> None:
    """A form post must come from this site's own page: no logging people in from elsewhere."""
    # Any Host (the cloud answers under whatever name its proxy gives it), http or https
    # (TLS may end at that proxy): the Origin must name the same host as the request.
    if not http_limits.same_origin(call.headers.get("Host"), call.headers.get("Origin")):
        raise HttpError(HTTPStatus.FORBIDDEN, "cross-site form refused")


def _login_page(call: Call, status: int, next_path: str, message: str = "",
                headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    """The styled login form in the reader's language, with `message` (already translated)."""
    t = reader(call)
    # page() sends Referrer-Policy: same-origin, not no-referrer: with that the form's post
    # says Origin: null, and the login's cross-site check could not tell it from a foreign page.
    return page(call, "login.html", t, status, headers, next=next_path, message=message)


def _local(path: str) -> str:
    """Where to go after logging in: a path on this site only (no open redirect)."""
    if path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return "/"


def login_page(call: Call) -> Reply:
    """The login form (HTML); it posts to /api/login."""
    query = call.query("next", "lang")
    return _login_page(call, HTTPStatus.OK, _local(query.get("next", "/")))


def login(call: Call) -> Reply:
    """Log in with {"user", "password"} (JSON, or the login form): sets the session cookie.
    ---
    requestBody:
      required: true
      content:
        application/json:
          schema:
            type: object
            required: [user, password]
            properties: {user: {type: string}, password: {type: string}}
    """
    call.no_query()
    fields, from_form = _form_or_json(call)
    if from_form:
        _same_origin(call)
    user, password = fields.get("user"), fields.get("password")
    if not isinstance(user, str) or not isinstance(password, str):
        raise BadRequest("user and password: strings required")
    api = call.api
    now = api.now()
    name = user.strip().lower()
    keys = (f"user:{name[:64]}", f"client:{call.client}")
    if api.login_throttle.blocked(keys, now):
        if from_form:
            return _login_page(call, HTTPStatus.TOO_MANY_REQUESTS,
                               _local(str(fields.get("next", "/"))), reader(call).gettext(
                                   "Too many wrong passwords: try again in 15 minutes."),
                               (("Retry-After", str(int(api.login_throttle.window_s))),))
        raise HttpError(HTTPStatus.TOO_MANY_REQUESTS,
                        "too many wrong passwords: try again in 15 minutes",
                        (("Retry-After", str(int(api.login_throttle.window_s))),))
    with api.read() as db:
        good = accounts.check_login(db.conn, name, password)
    if not good:
        api.login_throttle.failed(keys, now)
    got = None
    if good:
        with api.write() as db, db.transaction() as conn:
            got = accounts.start_session(conn, name, call.client, now)
    if got is None:
        log.info("login refused for %r from %s", user[:64], call.client)  # never the password
        if from_form:
            return _login_page(call, HTTPStatus.UNAUTHORIZED, _local(str(fields.get("next", "/"))),
                               reader(call).gettext("Wrong user name or password."))
        raise HttpError(HTTPStatus.UNAUTHORIZED, "wrong name or password")
    session, who = got
    cookie = f"{SESSION_COOKIE}={session}; Max-Age={int(accounts.SESSION_TTL_S)}; {_flags(call)}"
    log.info("%s (%s) logged in from %s", who.name, who.role, call.client)
    if from_form:
        return Reply(HTTPStatus.SEE_OTHER, b"", "text/plain",
                     (("Set-Cookie", cookie), ("Location", _local(str(fields.get("next", "/"))))))
    return ok(HTTPStatus.OK, _me(who) | {"expires_at": now + accounts.SESSION_TTL_S},
              (("Set-Cookie", cookie),))


def logout(call: Call) -> Reply:
    """End this session (the cookie's) and clear the cookie."""
    call.no_query()
    session = cookie_value(call.headers.get("Cookie") or "", SESSION_COOKIE)
    ended = False
    if session:
        with call.api.write() as db, db.transaction() as conn:
            ended = accounts.logout(conn, session)
    clear = (("Set-Cookie", f"{SESSION_COOKIE}=; Max-Age=0; {_flags(call)}"),)
    mime = (call.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if mime == FORM:  # the pages' button: back to the login form
        return Reply(HTTPStatus.SEE_OTHER, b"", "text/plain", (*clear, ("Location", "/login")))
    return ok(HTTPStatus.OK, {"logged_out": ended}, clear)


def _flags(call: Call) -> str:
    """Cookie attributes. Secure (HTTPS only) except for a loopback host, where browsers do
    not all accept it over plain HTTP and nothing crosses a network: the local demo."""
    host = urlsplit("//" + call.headers.get("Host", "")).hostname or ""
    secure = "" if host in LOOPBACK else " Secure;"
    return f"Path=/; HttpOnly;{secure} SameSite=Strict"


def _me(who: accounts.Principal) -> dict[str, Any]:
    return {"user": who.name, "role": who.role, "via": who.via,
            "stores": None if who.role == "operator" and not who.stores else sorted(who.stores)}


def me(call: Call) -> Reply:
    """Who you are: name, role and stores (null: every store)."""
    call.query()
    return ok(HTTPStatus.OK, _me(call.api.authenticate(call.headers)))


def list_tokens(call: Call) -> Reply:
    """Your API tokens (never the tokens themselves)."""
    who = call.api.authenticate(call.headers)
    call.query()
    with call.api.read() as db:
        return ok(HTTPStatus.OK, {"tokens": accounts.list_tokens(db.conn, who.name)})


def create_token(call: Call) -> Reply:
    """Create an API token for yourself ({"label", "stores"?, "expires_in_s"?}); shown once.
    ---
    requestBody: {required: true, content: {application/json: {schema: {type: object}}}}
    """
    call.no_query()
    who = call.api.authenticate(call.headers)
    if who.via != "session":  # a leaked token must not be able to mint more tokens
        raise HttpError(HTTPStatus.FORBIDDEN, "tokens are created from a login session or"
                        " with `xiaodian cloud token create`")
    obj = call.json_body()
    unknown = sorted(set(obj) - {"label", "stores", "expires_in_s"})
    if unknown:
        raise BadRequest(f"{unknown[0]}: unknown field (known: label, stores, expires_in_s)")
    label, stores, ttl = obj.get("label", ""), obj.get("stores", []), obj.get("expires_in_s")
    if not isinstance(label, str) or len(label) > 100:
        raise BadRequest("label: a string of at most 100 characters")
    if not isinstance(stores, list) or not all(isinstance(s, str) for s in stores):
        raise BadRequest("stores: a list of store ids")
    if ttl is not None and (type(ttl) is not int or not 60 <= ttl <= MAX_TOKEN_LIFETIME_S):
        raise BadRequest(f"expires_in_s: 60 to {MAX_TOKEN_LIFETIME_S}")
    try:
        with call.api.write() as db, db.transaction() as conn:
            tid, token = accounts.create_token(conn, who.name, label, stores, call.api.now(),
                                               ttl)
    except accounts.AccountError as exc:
        raise BadRequest(str(exc)) from None
    return ok(HTTPStatus.CREATED, {"id": tid, "token": token,
                                   "note": "shown once: keep it secret"})


def revoke_token(call: Call) -> Reply:
    """Revoke one of your API tokens (an operator: anyone's); effective at once."""
    call.no_query()
    who = call.api.authenticate(call.headers)
    tid = call.path_params["token_id"]
    if not DIGITS.match(tid):
        raise HttpError(HTTPStatus.NOT_FOUND, f"no such path: {call.path}")
    try:
        with call.api.write() as db, db.transaction() as conn:
            accounts.revoke_token(conn, int(tid), call.api.now(),
                                  None if who.may("ops.read") else who.name)
    except accounts.AccountError as exc:
        raise HttpError(HTTPStatus.NOT_FOUND, str(exc)) from None
    return ok(HTTPStatus.OK, {"id": int(tid), "revoked": True})


def audit(call: Call) -> Reply:
    """The audit trail, newest first: acknowledgements, commands, catalogues, orders.
    ---
    parameters:
      - {name: store, in: query, schema: {type: string}}
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 10000}}
    """
    call.api.authorise(call.headers, "ops.read")
    query = call.query("store", "limit")
    limit = int_param(query, "limit", DEFAULT_COMMAND_LIMIT, 1, MAX_LIMIT)
    with call.api.read() as db:
        rows = accounts.audit_rows(db.conn, store=query.get("store"), limit=limit)
    return ok(HTTPStatus.OK, {"audit": rows})


ROUTES: list[Route] = [
    route("/login", get=login_page),
    route("/api/login", post=login),
    route("/api/logout", post=logout),
    route("/api/me", get=me),
    route("/api/tokens", get=list_tokens, post=create_token),
    route("/api/tokens/{token_id}/revoke", post=revoke_token),
    route("/api/audit", get=audit),
]
