"""The API described: an OpenAPI document at /openapi.json and a plain page of it at /docs.

Built from the routes themselves by Starlette's SchemaGenerator: each handler's docstring
gives the operation (first line: summary; YAML after `---`: query parameters, body,
security), and path parameters come from the path. The page is rendered here, without
script or anything from a CDN, so it works offline and under the dashboard's CSP.
"""

from __future__ import annotations

import html
import inspect
import json
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from starlette.routing import BaseRoute, Route
from starlette.schemas import EndpointInfo, SchemaGenerator

from xiaodian import __version__

from .core import HTML, Call, Reply
from .resource import Resource, route

_PATH_PARAM = re.compile(r"{(\w+)}")
OPEN = {"/", "/index.html", "/owner", "/owner/", "/owner/{store}", "/healthz", "/api/ingest",
        "/login", "/api/login", "/api/logout", "/openapi.json", "/docs"}
_ERRORS = 'JSON; a refusal is {"error": message, "status": code}'


class _Generator(SchemaGenerator):
    def get_endpoints(self, routes: list[BaseRoute]) -> list[EndpointInfo]:
        # A Resource holds its handlers by method: one operation each (HEAD is GET's).
        return [EndpointInfo(self._remove_converter(r.path), method.lower(), handler)
                for r in routes if isinstance(r, Route) and isinstance(r.endpoint, Resource)
                for method, handler in r.endpoint.handlers.items()]

    def parse_docstring(self, func_or_method: Callable[..., Any]) -> dict[str, Any]:
        doc = func_or_method.__doc__ or ""
        # Without `---` a docstring is prose, which YAML may still read as a mapping.
        op = super().parse_docstring(func_or_method) if "---" in doc else {}
        summary, _, description = inspect.cleandoc(doc.partition("---")[0]).partition("\n")
        op = {"summary": summary, **({"description": description.strip()}
                                     if description.strip() else {}), **op}
        op.setdefault("responses", {"default": {"description": _ERRORS}})
        return op


def openapi(routes: list[BaseRoute]) -> dict[str, Any]:
    base = {
        "openapi": "3.1.0",
        "info": {"title": "xiaodian cloud gateway", "version": __version__},
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": "xd_session"}}},
        # Every route needs a caller with a role (docs/security.md), except OPEN ones.
        "security": [{"bearer": []}, {"session": []}],
    }
    doc = _Generator(base).get_schema(routes)
    for path, ops in doc["paths"].items():
        names = _PATH_PARAM.findall(path)
        for op in ops.values():
            if path in OPEN or path.startswith("/ack/"):
                op["security"] = []
            op["parameters"] = [{"name": n, "in": "path", "required": True,
                                 "schema": {"type": "string"}} for n in names
                                ] + op.get("parameters", [])
    return doc


def docs_html(doc: dict[str, Any]) -> str:
    e = html.escape
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            params = ", ".join(f"{p['name']} ({p['in']})" for p in op.get("parameters", []))
            lock = " 🔒" if op.get("security") else (" (open)" if "security" in op else "")
            rows.append(f"<tr><td class=m>{e(method.upper())}</td><td><code>{e(path)}</code>"
                        f"</td><td>{e(op['summary'])}{lock}</td><td>{e(params)}</td></tr>")
    info = doc["info"]
    return ("<!doctype html><meta charset=utf-8><title>xiaodian cloud API</title>"
            "<style>body{font-family:sans-serif;margin:1em}td{padding:.2em .6em;"
            "vertical-align:top;border-bottom:1px solid #ddd}.m{font-weight:bold}</style>"
            f"<h1>{e(info['title'])} {e(info['version'])}</h1>"
            "<p>Machine-readable: <a href=/openapi.json>/openapi.json</a> (OpenAPI 3.1). "
            "Every route needs a login (<a href=/login>/login</a>) or"
            " <code>Authorization: Bearer &lt;token&gt;</code> unless open; 🔒 marks writes.</p>"
            "<table><tr><th>Method</th><th>Path</th><th>What</th><th>Parameters</th></tr>"
            + "".join(rows) + "</table>")


def routes(doc: dict[str, Any]) -> list[Route]:
    """/openapi.json and /docs, rendered once: the routes do not change while serving."""
    body = json.dumps(doc, separators=(",", ":")).encode() + b"\n"
    page = docs_html(doc).encode()

    def schema_json(call: Call) -> Reply:
        """This API as an OpenAPI 3.1 document."""
        call.query()
        return Reply(HTTPStatus.OK, body)

    def docs(call: Call) -> Reply:
        """This API as a page: every route, what it does, its parameters."""
        call.query()
        return Reply(HTTPStatus.OK, page, HTML)

    return [route("/openapi.json", get=schema_json), route("/docs", get=docs)]
