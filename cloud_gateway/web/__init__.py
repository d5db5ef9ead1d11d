"""The cloud's HTTP API and pages: Starlette routes served by uvicorn.

    app.py       the application: routes of every module below, limits, JSON refusals
    server.py    HttpServer: uvicorn on a thread of `xiaodian cloud run`
    resource.py  the edge of every route: limits, body framing, handler thread, errors
    core.py      replies, errors, the strict query and JSON readers
    context.py   Api: the process's database, signer, keys; who is calling, `authorise()`
    people.py    login page, sessions, personal API tokens, the audit trail
    page.py      what every page for people shares: language, templates, CSP, chart library
    pages.py     HACCP record, the chart library's files, health checks; places the pages
    owner.py     owner page and its acknowledgements     dashboard.py  the operator's dashboard
    readings.py  stores, fridges, readings, gaps, clocks, parked messages
    commands.py  signed commands      retail.py  catalogues, orders, stock
    alerts.py    alerts and their acknowledgement    schema.py  /openapi.json, /docs
    residents.py the resident app (/r): stores near me, a store's promise, order, my orders
    resident_session.py  residents' phone + one-time code login, their cookie
"""

from .context import Api
from .server import HttpServer

__all__ = ["Api", "HttpServer"]
