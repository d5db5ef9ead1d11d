"""The Starlette application: every resource's routes, the limits, and JSON refusals."""

from __future__ import annotations

from http import HTTPStatus

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from xiaodian.i18n import negotiate, translator
from xiaodian.i18n.templates import render

from . import (
    alerts,
    commands,
    fleet,
    metrics,
    page,
    pages,
    people,
    readings,
    resident_session,
    residents,
    retail,
    schema,
    supply,
)
from .context import Api
from .core import HTML, Reply, error, to_response
from .resource import Limits

_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT")


def create_app(api: Api) -> Starlette:
    page.check_vendor()  # no chart library, no owner page: say so at start, not to a phone
    routes: list[BaseRoute] = [*pages.ROUTES, *readings.ROUTES, *commands.ROUTES,
                               *retail.ROUTES, *alerts.ROUTES, *people.ROUTES,
                               *resident_session.ROUTES, *residents.ROUTES, *supply.ROUTES,
                               *fleet.ROUTES, *metrics.ROUTES]
    routes += schema.routes(schema.openapi(routes))
    app = Starlette(routes=routes, middleware=[Middleware(Limits)],
                    exception_handlers={HTTPException: _refused})
    app.router.redirect_slashes = False  # a wrong path is a 404, not a redirect to a guess
    app.state.api = api
    return app


async def _refused(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no route, wrong method) in the API's JSON form."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == HTTPStatus.NOT_FOUND:
        if page.for_a_person(request.url.path, request.headers.get("Accept")):
            t = translator(negotiate(request.query_params.get("lang"),
                                     request.cookies.get(page.LANG_COOKIE)))
            body = render("cloud_gateway", "templates", "message.html", t, switch=[],
                          title=t.gettext("There is no such page."),
                          text=t.gettext("Check the address, or start from the home page."),
                          back="/")
            return to_response(Reply(HTTPStatus.NOT_FOUND, body.encode(), HTML,
                                     (("Content-Security-Policy", page.PAGE_CSP),)))
        return to_response(error(HTTPStatus.NOT_FOUND, f"no such path: {request.url.path}"))
    if exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
        # Starlette lists a route's methods from a set: give them in one order.
        given = {m.strip() for m in (exc.headers or {}).get("Allow", "").split(",")}
        allow = [m for m in _METHOD_ORDER if m in given]
        what = " and ".join([", ".join(allow[:-1]), allow[-1]] if len(allow) > 1 else allow)
        verb = "are" if len(allow) > 1 else "is"
        return to_response(error(HTTPStatus.METHOD_NOT_ALLOWED,
                                 f"only {what} {verb} supported here",
                                 (("Allow", ", ".join(allow)),)))
    return to_response(error(exc.status_code, exc.detail, tuple((exc.headers or {}).items())))
