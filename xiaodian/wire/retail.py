"""Retail messages between the cloud and a store, built and parsed here so both sides agree.

Down (cloud -> store), QoS 1 into the store's persistent session:
  xd/v1/{s}/catalogue  the store's catalogue, retained: a new terminal gets it at once
  xd/v1/{s}/orders     one order, or a cancellation, per message

Up (store -> cloud): stock movements and order progress are *events* in the outbox
(`stock` and `order` on the devices `ledger` and `orders`), so they ride the same
exactly-once path as door events and are never compacted. Their `data` is built and
checked here; `xiaodian.wire.payloads` carries them.

Items are named by a key: a GTIN-14 for packaged goods ("06901234567892") or "in:" plus
the in-store item number for variable-measure goods weighed in the shop ("in:12345").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from xiaodian.wire import ids
from xiaodian.wire.payloads import (
    FORMAT_VERSION,
    MAX_PAYLOAD_BYTES,
    JsonObject,
    PayloadError,
    store_of_topic,
)

UNITS = ("piece", "weight")  # sold by the piece, or weighed (price from a scale label)
STORAGE = ("chilled", "frozen", "ambient")
ORDER_MODES = ("pickup", "delivery")
# Signed change of stock on hand: delivery > 0; sale, waste, pickup, dispatch < 0; adjust != 0.
MOVEMENT_KINDS = ("delivery", "sale", "waste", "adjust", "pickup", "dispatch")
_POSITIVE = {"delivery"}
_NEGATIVE = {"sale", "waste", "pickup", "dispatch"}
# Store-side order states; the cloud adds its own "open" before the store has it.
ORDER_STATES = (
    "received",  # the terminal stored it (pickup: waiting for the customer)
    "picked_up",  # handed over at the counter
    "packed",  # delivery: packed, stock moved (dispatch)
    "out_for_delivery",
    "delivered",
    "cancelled",
    "expired",  # not collected before its expiry
)
MAX_LINES = 100
# A catalogue is one MQTT message: it must stay well under the broker's max_packet_size
# (512 KiB, devstack/broker.py), or the broker drops the connection that sends it. 256 KiB
# holds ~1500 items, several times a convenience store's chilled range.
MAX_CATALOGUE_BYTES = 256 * 1024
MAX_QTY = 1_000_000  # pieces in one movement: more is a typo or an attack, not a delivery
MAX_GRAMS = 10_000_000
MAX_CATALOGUE = 5000


def check_item(v: Any, where: str) -> str:
    if not ids.is_item_id(v):
        raise PayloadError(f"{where}: bad item key {v!r} (a GTIN-14 or 'in:' + item number)")
    return v


# ---------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class Location:
    """Where an item lives: a lane of a smart fridge, and what one piece weighs there."""

    fridge: str
    lane: int
    unit_grams: int


@dataclass(frozen=True)
class CatalogueItem:
    item: str
    name: str
    unit: str  # one of UNITS
    shelf_life_days: int
    storage: str  # one of STORAGE
    location: Location | None = None


@dataclass(frozen=True)
class Catalogue:
    store: str
    version: int  # increases with every change; a store ignores an older version
    items: tuple[CatalogueItem, ...]


# ---------------------------------------------------------------- orders


@dataclass(frozen=True)
class OrderLine:
    item: str
    qty: int  # pieces (for weighed goods: packs)


@dataclass(frozen=True)
class Order:
    id: int
    store: str
    mode: str  # one of ORDER_MODES
    customer: str  # display name shown to the clerk ("Wang L.")
    created: float  # unix seconds
    expires: float  # unix seconds: pickup code and reservation end here
    lines: tuple[OrderLine, ...]


@dataclass(frozen=True)
class Cancel:
    order: int
    store: str
    reason: str


Downlink = Catalogue | Order | Cancel


def catalogue_payload(c: Catalogue) -> bytes:
    """The catalogue message; PayloadError if it is too large to send as one message."""
    items = []
    for i in c.items:
        loc = None
        if i.location is not None:
            loc = {"fridge": i.location.fridge, "lane": i.location.lane,
                   "unit_grams": i.location.unit_grams}
        items.append({"item": i.item, "name": i.name, "unit": i.unit,
                      "shelf_life_days": i.shelf_life_days, "storage": i.storage,
                      "location": loc})
    body = _dump({"v": FORMAT_VERSION, "type": "catalogue", "store": c.store,
                  "version": c.version, "items": items})
    if len(body) > MAX_CATALOGUE_BYTES:
        raise PayloadError(f"catalogue of {len(c.items)} items is {len(body)} bytes as a"
                           f" message; at most {MAX_CATALOGUE_BYTES} fit")
    return body


def order_payload(o: Order) -> bytes:
    return _dump({"v": FORMAT_VERSION, "type": "order", "store": o.store, "id": o.id,
                  "mode": o.mode, "customer": o.customer, "created": o.created,
                  "expires": o.expires,
                  "lines": [{"item": ln.item, "qty": ln.qty} for ln in o.lines]})


def cancel_payload(c: Cancel) -> bytes:
    return _dump({"v": FORMAT_VERSION, "type": "cancel", "store": c.store, "order": c.order,
                  "reason": c.reason})


def parse_downlink(topic_name: str, payload: bytes) -> Downlink:
    """Parse a catalogue or order message strictly; PayloadError says what is wrong."""
    store, leaf = store_of_topic(topic_name)
    obj = _load(payload)
    if obj.integer("v") != FORMAT_VERSION:
        raise PayloadError(f"unsupported format version {obj.integer('v')}")
    if obj.text("store") != store:
        raise PayloadError(f"payload store {obj.text('store')!r} does not match topic {store!r}")
    kind = obj.text("type")
    allowed = {"catalogue": ("catalogue",), "orders": ("order", "cancel")}.get(leaf)
    if allowed is None or kind not in allowed:
        raise PayloadError(f"message type {kind!r} not expected on topic leaf {leaf!r}")
    if kind == "catalogue":
        raw = obj.array("items")
        if len(raw) > MAX_CATALOGUE:
            raise PayloadError(f"catalogue has {len(raw)} items (max {MAX_CATALOGUE})")
        items = tuple(_catalogue_item(JsonObject(r, f"items[{n}]")) for n, r in enumerate(raw))
        keys = [i.item for i in items]
        if len(set(keys)) != len(keys):
            raise PayloadError("catalogue lists an item twice")
        check_lanes(items)
        return Catalogue(store, obj.uint("version"), items)
    if kind == "cancel":
        return Cancel(obj.uint("order"), store, obj.text("reason")[:200])
    mode = obj.text("mode")
    if mode not in ORDER_MODES:
        raise PayloadError(f"payload.mode: {mode!r} is not one of {ORDER_MODES}")
    raw_lines = obj.array("lines")
    if not 1 <= len(raw_lines) <= MAX_LINES:
        raise PayloadError(f"payload.lines: 1 to {MAX_LINES} lines, got {len(raw_lines)}")
    lines = []
    for n, r in enumerate(raw_lines):
        ln = JsonObject(r, f"lines[{n}]")
        qty = ln.integer("qty")
        if not 1 <= qty <= 1000:
            raise PayloadError(f"lines[{n}].qty: {qty} out of range 1..1000")
        lines.append(OrderLine(check_item(ln.get("item"), f"lines[{n}].item"), qty))
    if len({ln.item for ln in lines}) != len(lines):
        raise PayloadError("payload.lines: an item appears twice")
    customer = obj.text("customer").strip()
    if not customer or len(customer) > 64 or not customer.isprintable():
        raise PayloadError("payload.customer: 1 to 64 characters")
    return Order(obj.uint("id"), store, mode, customer, obj.number("created"),
                 obj.number("expires"), tuple(lines))


def check_lanes(items: tuple[CatalogueItem, ...]) -> None:
    """One item per smart-fridge lane: the lane's weight is how pieces taken are counted,
    so two items in one lane would each be charged for the other's pieces."""
    seen: dict[tuple[str, int], str] = {}
    for i in items:
        if i.location is None:
            continue
        key = (i.location.fridge, i.location.lane)
        if key in seen:
            raise PayloadError(f"{i.item} and {seen[key]} are both placed in"
                               f" {key[0]} lane {key[1]}: one item per lane")
        seen[key] = i.item


def _catalogue_item(o: JsonObject) -> CatalogueItem:
    unit = o.text("unit")
    if unit not in UNITS:
        raise PayloadError(f"{o.where}.unit: {unit!r} is not one of {UNITS}")
    storage = o.text("storage")
    if storage not in STORAGE:
        raise PayloadError(f"{o.where}.storage: {storage!r} is not one of {STORAGE}")
    loc = None
    if o.get("location") is not None:
        lo = JsonObject(o.get("location"), f"{o.where}.location")
        lane = lo.integer("lane")
        grams = lo.integer("unit_grams")
        if not 0 <= lane < 64 or not 0 < grams < 100_000:
            raise PayloadError(f"{o.where}.location: lane 0..63 and unit_grams 1..99999")
        loc = Location(JsonObject.check_id(lo.get("fridge"), f"{o.where}.location.fridge"),
                       lane, grams)
    name = o.text("name").strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise PayloadError(f"{o.where}.name: 1 to 100 characters")
    days = o.integer("shelf_life_days")
    if not 0 <= days <= 3650:
        raise PayloadError(f"{o.where}.shelf_life_days: out of range")
    return CatalogueItem(check_item(o.get("item"), f"{o.where}.item"), name, unit, days,
                         storage, loc)


# ---------------------------------------------------------------- events up


@dataclass(frozen=True)
class Movement:
    """One line of the stock ledger (event type `stock`, device `ledger`)."""

    id: str  # unique per movement (uuid4 hex), so a re-entered movement is recognisable
    kind: str  # one of MOVEMENT_KINDS
    item: str
    qty: int  # signed change of pieces on hand
    grams: int | None = None  # weighed goods: weight moved (a magnitude; qty gives the sign)
    batch: str | None = None
    expiry: str | None = None  # YYYY-MM-DD
    order: int | None = None  # pickup and dispatch movements name their order
    note: str | None = None


@dataclass(frozen=True)
class OrderProgress:
    """A change of an order's state at the store (event type `order`, device `orders`)."""

    order: int
    state: str  # one of ORDER_STATES
    # Handover: what was taken differs from the order (item -> pieces taken minus ordered).
    differences: tuple[tuple[str, int], ...] = ()
    note: str | None = None


def movement_data(m: Movement) -> dict[str, Any]:
    parse_movement(_as_dict(m))  # refuse to write what the cloud would park
    return _as_dict(m)


def _as_dict(m: Movement) -> dict[str, Any]:
    return {"id": m.id, "kind": m.kind, "item": m.item, "qty": m.qty, "grams": m.grams,
            "batch": m.batch, "expiry": m.expiry, "order": m.order, "note": m.note}


def parse_movement(data: dict[str, Any]) -> Movement:
    o = JsonObject(data, "data")
    kind = o.text("kind")
    if kind not in MOVEMENT_KINDS:
        raise PayloadError(f"data.kind: {kind!r} is not one of {MOVEMENT_KINDS}")
    qty = o.integer("qty")
    if (qty <= 0 and kind in _POSITIVE) or (qty >= 0 and kind in _NEGATIVE) or qty == 0:
        raise PayloadError(f"data.qty: {qty} has the wrong sign for a {kind}")
    if abs(qty) > MAX_QTY:
        raise PayloadError(f"data.qty: {qty} is beyond +-{MAX_QTY}")
    ident = o.text("id")
    if not ids.is_movement_id(ident):
        raise PayloadError("data.id: 8 to 64 letters, digits, '-' or '_'")
    expiry = _opt_text(o, "expiry")
    if expiry is not None:
        try:
            date.fromisoformat(expiry)
        except ValueError:
            raise PayloadError(f"data.expiry: {expiry!r} is not YYYY-MM-DD") from None
    grams = None if o.get("grams") is None else o.integer("grams")
    if grams is not None and not 0 <= grams <= MAX_GRAMS:
        raise PayloadError(f"data.grams: {grams} is not a weight of 0..{MAX_GRAMS} g")
    order = None if o.get("order") is None else o.uint("order")
    if kind in ("pickup", "dispatch") and order is None:
        raise PayloadError(f"data.order: a {kind} names its order")
    return Movement(ident, kind, check_item(o.get("item"), "data.item"), qty, grams,
                    _opt_text(o, "batch"), expiry, order, _opt_text(o, "note"))


def progress_data(p: OrderProgress) -> dict[str, Any]:
    data = {"order": p.order, "state": p.state,
            "differences": [[item, delta] for item, delta in p.differences], "note": p.note}
    parse_progress(data)
    return data


def parse_progress(data: dict[str, Any]) -> OrderProgress:
    o = JsonObject(data, "data")
    state = o.text("state")
    if state not in ORDER_STATES:
        raise PayloadError(f"data.state: {state!r} is not one of {ORDER_STATES}")
    diffs = []
    for n, d in enumerate(o.array("differences")):
        if (not isinstance(d, list) or len(d) != 2 or isinstance(d[1], bool)
                or not isinstance(d[1], int)):
            raise PayloadError(f"data.differences[{n}]: expected [item, pieces]")
        diffs.append((check_item(d[0], f"data.differences[{n}][0]"), d[1]))
    return OrderProgress(o.uint("order"), state, tuple(diffs), _opt_text(o, "note"))


@dataclass(frozen=True)
class LaneCheck:
    """A lane's weight judged against what should have left it (`lane_check`, device =
    the fridge): after a handover, or a settled drop that no sale explains."""

    lane: int
    order: int | None
    expected_grams: int
    measured_grams: int
    verdict: str  # ok | mismatch
    note: str


@dataclass(frozen=True)
class ExpiryLine:
    item: str
    batch: str | None
    expiry: str  # YYYY-MM-DD
    qty: int


def lane_check_data(c: LaneCheck) -> dict[str, Any]:
    data = {"lane": c.lane, "order": c.order, "expected_grams": c.expected_grams,
            "measured_grams": c.measured_grams, "verdict": c.verdict, "note": c.note}
    parse_lane_check(data)
    return data


def parse_lane_check(data: dict[str, Any]) -> LaneCheck:
    o = JsonObject(data, "data")
    lane = o.integer("lane")
    if not 0 <= lane < 64:
        raise PayloadError(f"data.lane: {lane} out of range 0..63")
    verdict = o.text("verdict")
    if verdict not in ("ok", "mismatch"):
        raise PayloadError(f"data.verdict: {verdict!r} is not ok or mismatch")
    grams = {k: o.integer(k) for k in ("expected_grams", "measured_grams")}
    if any(abs(g) > MAX_GRAMS for g in grams.values()):
        raise PayloadError(f"data: grams beyond +-{MAX_GRAMS}")
    order = None if o.get("order") is None else o.uint("order")
    return LaneCheck(lane, order, grams["expected_grams"], grams["measured_grams"], verdict,
                     _opt_text(o, "note") or "")


def expiry_data(window_days: int, lines: list[ExpiryLine]) -> dict[str, Any]:
    data = {"window_days": window_days,
            "items": [{"item": x.item, "batch": x.batch, "expiry": x.expiry, "qty": x.qty}
                      for x in lines]}
    parse_expiry(data)
    return data


def parse_expiry(data: dict[str, Any]) -> tuple[int, tuple[ExpiryLine, ...]]:
    """The `expiry` event (device `ledger`): what expires within the window, first first."""
    o = JsonObject(data, "data")
    days = o.integer("window_days")
    if not 0 <= days <= 365:
        raise PayloadError(f"data.window_days: {days} out of range 0..365")
    lines = []
    for n, raw in enumerate(o.array("items")):
        x = JsonObject(raw, f"data.items[{n}]")
        expiry = x.text("expiry")
        try:
            date.fromisoformat(expiry)
        except ValueError:
            raise PayloadError(f"{x.where}.expiry: {expiry!r} is not YYYY-MM-DD") from None
        qty = x.integer("qty")
        if not 0 < qty <= MAX_QTY:
            raise PayloadError(f"{x.where}.qty: {qty} out of range")
        lines.append(ExpiryLine(check_item(x.get("item"), f"{x.where}.item"),
                                _opt_text(x, "batch"), expiry, qty))
    return days, tuple(lines)


PICKUP_REFUSALS = ("no_key", "malformed", "oversize", "wrong_store", "unknown_key", "bad_mac",
                   "expired", "already_redeemed", "unknown_order", "cancelled",
                   "order_expired", "not_pickup", "rate_limited")


def pickup_refusal_data(reason: str) -> dict[str, Any]:
    """A refused pickup code (`pickup`, device `counter`): the reason only, never the code."""
    data = {"result": "refused", "reason": reason}
    parse_pickup_refusal(data)
    return data


def parse_pickup_refusal(data: dict[str, Any]) -> str:
    o = JsonObject(data, "data")
    if o.text("result") != "refused":
        raise PayloadError(f"data.result: {o.text('result')!r} (only 'refused' is reported)")
    reason = o.text("reason")
    if reason not in PICKUP_REFUSALS:
        raise PayloadError(f"data.reason: unknown refusal {reason!r}")
    return reason


def _opt_text(o: JsonObject, key: str) -> str | None:
    v = o.get(key)
    if v is None:
        return None
    if not isinstance(v, str) or len(v) > 200:
        raise PayloadError(f"{o.where}.{key}: expected a string of at most 200 characters")
    if not v.isprintable():  # PostgreSQL text refuses NUL; no control codes in a ledger
        raise PayloadError(f"{o.where}.{key}: control characters are not allowed")
    return v


def _dump(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _load(payload: bytes) -> JsonObject:
    if len(payload) > max(MAX_PAYLOAD_BYTES, MAX_CATALOGUE_BYTES):
        raise PayloadError(f"payload of {len(payload)} bytes is too large")
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise PayloadError(f"payload is not UTF-8 JSON: {exc}") from None
    return JsonObject(body, "payload")
