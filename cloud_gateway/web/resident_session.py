"""Residents' login pages: a phone number, a one-time code, a session cookie.

The cookie `xd_resident` is HttpOnly and SameSite=Lax (a resident arriving from a WeChat
message link stays logged in); every form post is checked for this site's Origin, so Lax
lets no other site act for them. Staff sessions (`xd_session`, web/people.py) are separate
and untouched: a resident session opens nothing of the staff's.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from urllib.parse import parse_qs, quote, urlsplit

from starlette.routing import Route

from xiaodian import http_limits
from xiaodian.i18n import Translator

from .. import residents
from .context import cookie_value
from .core import Call, HttpError, Reply
from .page import page, reader
from .resource import route

log = logging.getLogger(__name__)

COOKIE = "xd_resident"
FORM = "application/x-www-form-urlencoded"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_FORM_BYTES = 8192


def form(call: Call) -> dict[str, str]:
    """A form post's fields (the last of each), from this site's own page only."""
    mime = (call.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if mime != FORM:
        raise HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "a form post is expected here")
    if not http_limits.same_origin(call.headers.get("Host"), call.headers.get("Origin")):
        raise HttpError(HTTPStatus.FORBIDDEN, "cross-site form refused")
    pairs = parse_qs(call.body.decode("utf-8", "replace"), keep_blank_values=True,
                     max_num_fields=200)
    return {k: v[-1] for k, v in pairs.items()}


def local(path: str, default: str = "/r") -> str:
    """A path on this site only (no open redirect)."""
    if path.startswith("/r") and not path.startswith("//") and "\\" not in path:
        return path
    return default


def current(call: Call) -> residents.Resident | None:
    session = cookie_value(call.headers.get("Cookie") or "", COOKIE)
    if not session:
        return None
    with call.api.read() as db:
        return residents.session_resident(db.conn, session, call.api.now())


def to_login(next_path: str) -> Reply:
    return Reply(HTTPStatus.SEE_OTHER, b"", "text/plain",
                 (("Location", "/r/login?next=" + quote(local(next_path), safe="/")),))


def _flags(call: Call) -> str:
    host = urlsplit("//" + call.headers.get("Host", "")).hostname or ""
    secure = "" if host in LOOPBACK else " Secure;"
    return f"Path=/r; HttpOnly;{secure} SameSite=Lax"


def _login_page(call: Call, t: Translator, status: int = HTTPStatus.OK, *, phone: str = "",
                sent: bool = False, message: str = "", next_path: str = "/r") -> Reply:
    return page(call, "r_login.html", t, status, phone=phone, sent=sent, message=message,
                next=local(next_path))


def login_page(call: Call) -> Reply:
    """The resident's login: a phone number, then the code sent to it."""
    t = reader(call)
    q = call.query("lang", "next")
    return _login_page(call, t, next_path=q.get("next", "/r"))


def send_code(call: Call) -> Reply:
    t = reader(call)
    call.no_query()
    f = form(call)
    next_path = f.get("next", "/r")
    try:
        with call.api.write() as db, db.transaction() as conn:
            residents.request_code(conn, f.get("phone", ""), call.client, call.api.now(),
                                   call.api.residents.sender)
    except residents.ResidentError as exc:
        status = HTTPStatus.TOO_MANY_REQUESTS if exc.throttled else HTTPStatus.BAD_REQUEST
        return _login_page(call, t, status, phone=f.get("phone", "")[:20],
                           message=t.render(exc.why), next_path=next_path)
    phone = residents.check_phone(f.get("phone", ""))
    return _login_page(call, t, phone=phone, sent=True, next_path=next_path)


def check_code(call: Call) -> Reply:
    t = reader(call)
    call.no_query()
    f = form(call)
    next_path = f.get("next", "/r")
    with call.api.write() as db, db.transaction() as conn:
        got = residents.verify(conn, f.get("phone", ""), f.get("code", ""), call.api.now())
    if got is None:  # the wrong try is counted (committed) before this answer
        return _login_page(call, t, HTTPStatus.UNAUTHORIZED, phone=f.get("phone", "")[:20],
                           sent=True, message=t.render(residents.WRONG_CODE),
                           next_path=next_path)
    session, who = got
    log.info("resident %d logged in from %s", who.id, call.client)  # never the number
    cookie = f"{COOKIE}={session}; Max-Age={residents.SESSION_TTL_S}; {_flags(call)}"
    return Reply(HTTPStatus.SEE_OTHER, b"", "text/plain",
                 (("Set-Cookie", cookie), ("Location", local(next_path))))


def logout(call: Call) -> Reply:
    call.no_query()
    form(call)
    session = cookie_value(call.headers.get("Cookie") or "", COOKIE)
    if session:
        with call.api.write() as db, db.transaction() as conn:
            residents.end_session(conn, session)
    return Reply(HTTPStatus.SEE_OTHER, b"", "text/plain",
                 (("Set-Cookie", f"{COOKIE}=; Max-Age=0; {_flags(call)}"), ("Location", "/r")))


ROUTES: list[Route] = [
    route("/r/login", get=login_page),
    route("/r/login/code", post=send_code, body_limit=MAX_FORM_BYTES),
    route("/r/login/verify", post=check_code, body_limit=MAX_FORM_BYTES),
    route("/r/logout", post=logout, body_limit=MAX_FORM_BYTES),
]
