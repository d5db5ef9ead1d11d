"""`GET /metrics`: the Prometheus text format, for operators only.

Behind the same authentication as the API (a login session or a personal bearer token of an
operator: permission `ops.read`), not on a separate port: the numbers say how many stores
there are and which are down, which is the business's information, and per-person tokens
are already revocable and audited; a second listener would lean on a network boundary this
project does not manage. A Prometheus job scrapes with `authorization: {credentials_file:
...}` holding an operator's token (docs/cloud.md, "Metrics").
"""

from __future__ import annotations

from http import HTTPStatus

from starlette.routing import Route

from xiaodian.metrics_text import CONTENT_TYPE, render

from .. import metrics
from .core import Call, Reply
from .resource import route


def metrics_page(call: Call) -> Reply:
    """Prometheus text exposition (operators)."""
    call.query()
    call.api.authorise(call.headers, "ops.read")
    worker = dict(call.api.ingest_status()) if call.api.ingest_status is not None else None
    with call.api.read() as db:
        body = render(metrics.families(db.conn, worker, call.api.now()))
    return Reply(HTTPStatus.OK, body.encode(), CONTENT_TYPE)


ROUTES: list[Route] = [route("/metrics", get=metrics_page)]
