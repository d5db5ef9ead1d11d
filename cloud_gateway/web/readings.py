"""Reads of what the stores sent: stores, fridges, readings, gaps, clocks, parked messages.

Each handler's docstring is its OpenAPI operation (schema.py): the first line is the
summary, the YAML after `---` its query parameters.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from starlette.routing import Route

from .. import haccp
from .. import stores as profiles
from ..db import Database, DeadLetter
from .core import DEFAULT_LIMIT, MAX_LIMIT, BadRequest, Call, HttpError, Reply, int_param
from .core import json_reply as ok
from .resource import route

DEAD_LETTER_PREVIEW = 2000  # characters of a parked payload shown by the API


def _unknown_store(store: str) -> HttpError:
    return HttpError(HTTPStatus.NOT_FOUND, f"unknown store {store!r}")


def _known(db: Database, store: str) -> bool:
    return store in {s["store"] for s in db.stores()}


def stores(call: Call) -> Reply:
    """The caller's stores (every store seen, for an operator): online state, clock, gaps."""
    who = call.api.authenticate(call.headers)
    call.query()
    with call.api.read() as db:
        return ok(HTTPStatus.OK, {"stores": [s for s in db.stores() if who.covers(s["store"])]})


def fridges(call: Call) -> Reply:
    """A store's fridges: latest reading, reading count, last door and compressor events."""
    store = call.id("store")
    call.api.authorise(call.headers, "store.read", store)
    call.query()
    with call.api.read() as db:
        rows = db.fridges(store)
        if not rows and not _known(db, store):
            raise _unknown_store(store)
    return ok(HTTPStatus.OK, {"store": store, "fridges": rows})


def readings(call: Call) -> Reply:
    """A fridge's readings in (boot, seq) order, from a cursor.
    ---
    parameters:
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 10000}}
      - {name: after_boot, in: query, schema: {type: integer, minimum: 0},
         description: with after_seq, the position to continue after (the last `next`)}
      - {name: after_seq, in: query, schema: {type: integer, minimum: 0}}
    """
    store, device = call.id("store"), call.id("device")
    call.api.authorise(call.headers, "store.read", store)
    query = call.query("limit", "after_boot", "after_seq")
    limit = int_param(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    after: tuple[int, int] | None = None
    if "after_seq" in query or "after_boot" in query:
        # seq restarts with every agent boot: a position needs both numbers.
        if not ("after_seq" in query and "after_boot" in query):
            raise BadRequest("after_seq and after_boot go together (seq restarts each boot)")
        after = (int_param(query, "after_boot", 0, 0, 2**63 - 1),
                 int_param(query, "after_seq", 0, 0, 2**63 - 1))
    with call.api.read() as db:
        rows = list(db.readings(store, device, after=after, limit=limit))
        if not rows and after is None and not db.fridges(store):
            raise HttpError(HTTPStatus.NOT_FOUND, f"no readings for {store}/{device}")
    # Where to continue: the last row returned (or the request's own cursor if none).
    last = (rows[-1]["boot"], rows[-1]["seq"]) if rows else after
    return ok(HTTPStatus.OK, {
        "store": store,
        "device": device,
        "readings": rows,
        "next": {"after_boot": last[0], "after_seq": last[1]} if last else None,
    })


def history(call: Call) -> Reply:
    """A fridge's recent temperatures and alerts, for the owner page's chart.
    ---
    parameters:
      - {name: hours, in: query, schema: {type: integer, minimum: 1, maximum: 168}}
    """
    store, device = call.id("store"), call.id("device")
    call.api.authorise(call.headers, "store.read", store)
    hours = int_param(call.query("hours"), "hours", 24, 1, 168)
    with call.api.read() as db:
        # The store's zone beside the Unix times: what a chart's axis is to be read in.
        tz = profiles.get(db.conn, store).tz
        return ok(HTTPStatus.OK, haccp.history(db.conn, store, device, hours) | {"tz": tz})


def owner(call: Call) -> Reply:
    """A store's fridges as the owner page shows them: state, limits, open alerts."""
    store = call.id("store")
    call.api.authorise(call.headers, "store.read", store)
    call.query()
    with call.api.read() as db:
        profile = profiles.get(db.conn, store)
        return ok(HTTPStatus.OK, haccp.owner_view(db.conn, store)
                  | {"name": profile.name, "tz": profile.tz})


def gaps(call: Call) -> Reply:
    """A store's missing stretches of records, per device, with its streams.
    ---
    parameters:
      - {name: state, in: query, schema: {enum: [open, filled, all]}}
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 10000}}
    """
    store = call.id("store")
    call.api.authorise(call.headers, "store.read", store)
    query = call.query("state", "limit")
    state = query.get("state", "all")
    if state not in ("open", "filled", "all"):
        raise BadRequest("state: expected open, filled or all")
    limit = int_param(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    with call.api.read() as db:
        streams = db.streams(store)
        if not streams and not _known(db, store):
            raise _unknown_store(store)
        rows = db.gaps(store, state=state, limit=limit)
        open_gaps, missing = db.open_gap_totals(store)
    devices: dict[str, dict[str, Any]] = {}

    def entry(device: str) -> dict[str, Any]:
        return devices.setdefault(device, {"device": device, "open": [], "filled": [],
                                           "streams": []})

    for st in streams:
        entry(st["device"])["streams"].append({k: v for k, v in st.items() if k != "device"})
    for g in rows:
        entry(g["device"])[g["state"]].append(
            {k: v for k, v in g.items() if k not in ("store", "device", "state")})
    return ok(HTTPStatus.OK, {
        "store": store,
        "open_gaps": open_gaps,  # totals, whatever the state filter and limit
        "missing_records": missing,
        "truncated": len(rows) == limit,
        "devices": [devices[k] for k in sorted(devices)],
    })


def clock(call: Call) -> Reply:
    """A store's clock offset: the current estimate and its history, newest first.
    ---
    parameters:
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 10000}}
    """
    store = call.id("store")
    call.api.authorise(call.headers, "store.read", store)
    limit = int_param(call.query("limit"), "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    with call.api.read() as db:
        rows = db.clock_history(store, limit=limit)
        current = db.clock(store)
        if current is None and not _known(db, store):
            raise _unknown_store(store)
    return ok(HTTPStatus.OK, {"store": store, "current": current, "history": rows})


def dead_letters(call: Call) -> Reply:
    """Parked (refused) messages, newest first, each payload cut to 2000 characters.
    ---
    parameters:
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 10000}}
    """
    # Operators only: a parked payload may come from any store and hold anything.
    call.api.authorise(call.headers, "ops.read")
    limit = int_param(call.query("limit"), "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    with call.api.read() as db:
        letters = [_dead_letter_dict(d) for d in db.dead_letters(limit=limit)]
    return ok(HTTPStatus.OK, {"dead_letters": letters})


def _dead_letter_dict(d: DeadLetter) -> dict[str, Any]:
    text = d.payload.decode("utf-8", "replace")
    return {
        "id": d.id,
        "topic": d.topic,
        "reason": d.reason,
        "worker": d.worker,
        "received_at": d.received_at,
        "size": len(d.payload),
        "payload": text[:DEAD_LETTER_PREVIEW],
        "payload_truncated": len(text) > DEAD_LETTER_PREVIEW,
    }


ROUTES: list[Route] = [
    route("/api/stores", get=stores),
    route("/api/stores/{store}/fridges", get=fridges),
    route("/api/stores/{store}/fridges/{device}/readings", get=readings),
    route("/api/stores/{store}/fridges/{device}/history", get=history),
    route("/api/stores/{store}/owner", get=owner),
    route("/api/stores/{store}/gaps", get=gaps),
    route("/api/stores/{store}/clock", get=clock),
    route("/api/dead-letters", get=dead_letters),
]
