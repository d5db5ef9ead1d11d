"""Retail: a store's catalogue, orders (create, cancel, read), stock and retail events.

Reads need a role covering the store (orders: one that may see customers), writes the
role's permission and a JSON body; each commits, then sends what it made to the
store at once through the downlink (whose own thread retries what the broker did not take).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from starlette.routing import Route

from xiaodian.wire.payloads import EVENT_TYPES

from .. import accounts
from .. import retail as retail_store
from ..accounts import Principal
from ..db import Database
from .core import (
    DEFAULT_COMMAND_LIMIT,
    DIGITS,
    MAX_CATALOGUE_BODY_BYTES,
    MAX_LIMIT,
    MAX_ORDER_BODY_BYTES,
    BadRequest,
    Call,
    HttpError,
    Reply,
    int_param,
)
from .core import json_reply as ok
from .resource import route

log = logging.getLogger(__name__)

def _write(call: Call, permission: str) -> tuple[str, dict[str, Any], str, Principal]:
    """(store, JSON body, by, who) of an authorised write."""
    call.no_query()
    store = call.path_params["store"]
    # Before looking at anything sent; an invalid store id is covered by nobody but operators.
    who = call.api.authorise(call.headers, permission, store)
    obj = call.json_body()
    return call.id("store", what="store"), obj, f"{who.name}@http:{call.client}", who


def catalogue(call: Call) -> Reply:
    """A store's current catalogue: version, items, when the store was sent it."""
    store = call.id("store")
    call.api.authorise(call.headers, "store.read", store)
    call.query()
    with call.api.read() as db:
        cat = retail_store.catalogue(db.conn, store)
    if cat is None:
        raise HttpError(HTTPStatus.NOT_FOUND, f"{store} has no catalogue")
    return ok(HTTPStatus.OK, cat)


def put_catalogue(call: Call) -> Reply:
    """Store a new catalogue version ({"items": [...]}) and send it to the store. An
    item's `price_fen` (what residents pay, whole fen) stays in the cloud.
    ---
    security: [{bearer: []}]
    requestBody: {required: true, content: {application/json: {schema: {type: object}}}}
    """
    store, obj, by, who = _write(call, "catalogue.write")
    unknown = sorted(set(obj) - {"items"})
    if unknown:
        raise BadRequest(f"{unknown[0]}: unknown field (known: items)")
    items, prices = retail_store.parse_catalogue(store, obj.get("items"))
    with Database.open(call.api.db_path) as db, db.transaction() as conn:
        cat = retail_store.put_catalogue(conn, store, items, call.api.now(), by, prices)
        accounts.audit(conn, who, "catalogue.push", store, f"v{cat.version}", call.api.now(),
                       f"from {call.client}", {"items": len(items)})
    call.api.send_downlink()
    with call.api.read() as db:
        current = retail_store.catalogue(db.conn, store)
    assert current is not None
    log.info("catalogue v%d of %s (%d items) by %s", cat.version, store, len(items), by)
    return ok(HTTPStatus.OK, {"store": store, "version": cat.version, "items": len(items),
                              "priced": len(prices), "published_at": current["published_at"]})


def list_orders(call: Call) -> Reply:
    """A store's orders, newest first.
    ---
    parameters:
      - {name: state, in: query, schema: {type: string}}
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 10000}}
    """
    store = call.id("store")
    call.api.authorise(call.headers, "orders.read", store)  # customers' names
    query = call.query("state", "limit")
    state = query.get("state")
    if state is not None and state not in retail_store.CLOUD_STATES:
        raise BadRequest(f"state: expected one of {', '.join(retail_store.CLOUD_STATES)}")
    limit = int_param(query, "limit", DEFAULT_COMMAND_LIMIT, 1, MAX_LIMIT)
    with call.api.read() as db:
        orders = retail_store.list_orders(db.conn, store, state=state, limit=limit)
    return ok(HTTPStatus.OK, {"store": store, "orders": orders})


def get_order(call: Call) -> Reply:
    """One order, its lines and state (never its pickup code)."""
    store, oid = call.id("store"), call.path_params["order_id"]
    call.api.authorise(call.headers, "orders.read", store)
    if not DIGITS.match(oid):
        raise HttpError(HTTPStatus.NOT_FOUND, f"no such path: {call.path}")
    call.query()
    with call.api.read() as db:
        order = retail_store.get_order(db.conn, store, int(oid))
    if order is None:
        raise HttpError(HTTPStatus.NOT_FOUND, f"{store} has no order {oid}")
    return ok(HTTPStatus.OK, order)


def create_order(call: Call) -> Reply:
    """Reserve stock, store an order and send it; 201 with the pickup code (only here).
    ---
    security: [{bearer: []}]
    requestBody: {required: true, content: {application/json: {schema: {type: object}}}}
    """
    store, obj, by, who = _write(call, "orders.write")
    api = call.api
    req = retail_store.parse_order_request(obj)
    issuer = api.pickup_codec(store, required=req.mode == "pickup")
    with Database.open(api.db_path) as db, db.transaction() as conn:
        order = retail_store.create_order(conn, store, req, api.now(), by)
        accounts.audit(conn, who, "order.create", store, str(order.id), api.now(),
                       f"from {call.client}", {"mode": order.mode, "lines": len(order.lines)})
    # Only a pickup order gets a code: the counter refuses a delivery order's code anyway
    # ("not for pickup"), so issuing one would hand out a token that opens nothing.
    code = (issuer.issue(order.id, order.expires)
            if issuer is not None and order.mode == "pickup" else None)
    api.send_downlink()
    with api.read() as db:
        stored = retail_store.get_order(db.conn, store, order.id)
    assert stored is not None
    log.info("order %d for %s (%s, %d lines) by %s", order.id, store, order.mode,
             len(order.lines), by)  # never the code
    return ok(HTTPStatus.CREATED, {"id": order.id, "pickup_code": code, "order": stored},
              (("Location", f"/api/stores/{store}/orders/{order.id}"),))


def cancel_order(call: Call) -> Reply:
    """Cancel an order ({"reason": ...}), releasing its reservation, and tell the store.
    ---
    security: [{bearer: []}]
    requestBody: {required: true, content: {application/json: {schema: {type: object}}}}
    """
    store, obj, by, who = _write(call, "orders.write")
    oid = call.path_params["order_id"]
    if not DIGITS.match(oid):
        raise BadRequest(f"{oid!r} is not an order id")
    unknown = sorted(set(obj) - {"reason"})
    if unknown:
        raise BadRequest(f"{unknown[0]}: unknown field (known: reason)")
    reason = obj.get("reason", "cancelled")
    if not isinstance(reason, str):
        raise BadRequest("reason: a string")
    with Database.open(call.api.db_path) as db, db.transaction() as conn:
        retail_store.cancel_order(conn, store, int(oid), reason, call.api.now(), by)
        accounts.audit(conn, who, "order.cancel", store, oid, call.api.now(),
                       f"from {call.client}", {"reason": reason[:200]})
    call.api.send_downlink()
    with call.api.read() as db:
        order = retail_store.get_order(db.conn, store, int(oid))
    return ok(HTTPStatus.OK, order)


def events(call: Call) -> Reply:
    """A store's recent retail events of one type (never scans: they may hold pickup codes).
    ---
    parameters:
      - {name: type, in: query, required: true, schema: {type: string}}
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 10000}}
    """
    store = call.id("store")
    call.api.authorise(call.headers, "store.read", store)
    query = call.query("type", "limit")
    type_ = query.get("type", "")
    # Scans stay out of this read, even for operators: an old agent's scan events may hold
    # pickup codes, which are bearer tokens for someone's order.
    if type_ not in EVENT_TYPES or type_ == "scan":
        raise BadRequest("type: one of " + ", ".join(sorted(EVENT_TYPES - {"scan"})))
    if type_ in ("order", "pickup"):  # about customers' orders: as the orders themselves
        call.api.authorise(call.headers, "orders.read", store)
    limit = int_param(query, "limit", DEFAULT_COMMAND_LIMIT, 1, MAX_LIMIT)
    with call.api.read() as db:
        rows = retail_store.recent_events(db.conn, store, type_, limit)
    return ok(HTTPStatus.OK, {"store": store, "type": type_, "events": rows})


def stock(call: Call) -> Reply:
    """A store's stock per item: on hand, reserved by open orders, available."""
    store = call.id("store")
    call.api.authorise(call.headers, "store.read", store)
    call.query()
    with call.api.read() as db:
        return ok(HTTPStatus.OK, retail_store.stock_view(db.conn, store, call.api.now()))


ROUTES: list[Route] = [
    route("/api/stores/{store}/catalogue", get=catalogue, put=put_catalogue,
          body_limit=MAX_CATALOGUE_BODY_BYTES),
    route("/api/stores/{store}/orders", get=list_orders, post=create_order,
          body_limit=MAX_ORDER_BODY_BYTES),
    route("/api/stores/{store}/orders/{order_id}", get=get_order),
    route("/api/stores/{store}/orders/{order_id}/cancel", post=cancel_order,
          body_limit=MAX_ORDER_BODY_BYTES),
    route("/api/stores/{store}/events", get=events),
    route("/api/stores/{store}/stock", get=stock),
]
