"""Signed commands to a store: issue one (technicians, operators), list them, read one."""

from __future__ import annotations

import logging
from http import HTTPStatus

from starlette.routing import Route

from xiaodian.wire import ids
from xiaodian.wire.commands import ACTIONS, CommandError

from .. import accounts, commands
from .core import (
    DEFAULT_COMMAND_LIMIT,
    MAX_LIMIT,
    BadRequest,
    Call,
    HttpError,
    Reply,
    int_param,
)
from .core import json_reply as ok
from .resource import route

log = logging.getLogger(__name__)


def list_commands(call: Call) -> Reply:
    """A store's commands, newest first.
    ---
    parameters:
      - {name: state, in: query, schema: {enum: [sent, answered, refused, expired, unsent]}}
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 10000}}
    """
    store = call.id("store")
    call.api.authorise(call.headers, "commands.read", store)
    query = call.query("state", "limit")
    state = query.get("state")
    if state is not None and state not in commands.STATES:
        raise BadRequest(f"state: expected one of {', '.join(commands.STATES)}")
    limit = int_param(query, "limit", DEFAULT_COMMAND_LIMIT, 1, MAX_LIMIT)
    with call.api.read() as db:
        rows = commands.list_commands(db, store, state=state, limit=limit)
    return ok(HTTPStatus.OK, {"store": store, "commands": rows})


def get_command(call: Call) -> Reply:
    """One command: what was sent, when, and the store's answer."""
    command_id = call.id("command_id")
    who = call.api.authenticate(call.headers)
    call.query()
    with call.api.read() as db:
        cmd = commands.get_command(db, command_id)
    # Another store's command is as unknown as a missing one: ids do not leak across stores.
    if cmd is None or not who.covers(cmd["store"]):
        raise HttpError(HTTPStatus.NOT_FOUND, f"unknown command {command_id!r}")
    call.api.authorise(call.headers, "commands.read", cmd["store"])
    return ok(HTTPStatus.OK, cmd)


def issue(call: Call) -> Reply:
    """Sign and send a command to the store; 202 once the broker has it, 503 if not sent.
    ---
    security: [{bearer: []}]
    requestBody:
      required: true
      content:
        application/json:
          schema:
            type: object
            required: [action]
            additionalProperties: false
            properties:
              action: {type: string}
              params: {type: object, additionalProperties: {type: [string, integer, boolean]}}
    """
    call.no_query()
    api = call.api
    if api.commander is None:
        raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE,
                        "this worker does not issue commands (no [commands] in its config)")
    store = call.path_params["store"]
    who = api.authorise(call.headers, "commands.send", store)  # before looking at anything sent
    obj = call.json_body()
    action, params = _command_request(obj)
    if not ids.is_store_id(store):
        raise BadRequest(f"{store!r} is not a store id")
    with api.read() as db:
        known = db.has_store(store)
    if not known:
        # A typo would otherwise sit unread at the broker until it expires.
        raise HttpError(HTTPStatus.NOT_FOUND, f"unknown store {store!r} (never seen)")
    try:
        command_id = api.commander.issue(store, action, params,
                                         issued_by=f"{who.name}@http:{call.client}")
    except CommandError as exc:  # what the store would refuse: bad params, store id
        raise BadRequest(str(exc)) from None
    with api.write() as db, db.transaction() as conn:  # after issue(): it commits its own
        accounts.audit(conn, who, "command.send", store, command_id, api.now(),
                       f"from {call.client}", {"action": action, "params": params})
    with api.read() as db:
        cmd = commands.get_command(db, command_id)
    assert cmd is not None  # committed before issue() returned
    location = (("Location", f"/api/commands/{command_id}"),)
    if cmd["state"] == "unsent":
        return ok(HTTPStatus.SERVICE_UNAVAILABLE,
                  {"error": f"command not sent: {cmd['reason']}", "status": 503,
                   "id": command_id, "command": cmd}, location)
    return ok(HTTPStatus.ACCEPTED, {"id": command_id, "command": cmd}, location)


def _command_request(obj: dict[str, object]) -> tuple[str, dict[str, str | int | bool]]:
    """Strict read of {"action": str, "params": {name: scalar}}; BadRequest says why."""
    unknown = sorted(set(obj) - {"action", "params"})
    if unknown:
        raise BadRequest(f"{unknown[0]}: unknown field (known: action, params)")
    action = obj.get("action")
    if not isinstance(action, str):
        raise BadRequest("action: required, a string")
    if action not in ACTIONS:
        raise BadRequest(f"action: unknown action {action[:64]!r} (known: {', '.join(ACTIONS)})")
    params = obj.get("params", {})
    if not isinstance(params, dict) or not all(
        isinstance(v, str | int) for v in params.values()  # bool is an int
    ):
        raise BadRequest("params: must be an object of strings, integers and booleans")
    return action, params


ROUTES: list[Route] = [
    route("/api/stores/{store}/commands", get=list_commands, post=issue),
    route("/api/commands/{command_id}", get=get_command),
]
