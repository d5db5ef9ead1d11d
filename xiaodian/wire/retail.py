"""Retail messages between the cloud and a store, built and parsed here so both sides agree.

Down (cloud -> store), QoS 1 into the store's persistent session:
  xd/v1/{s}/catalogue  the store's catalogue, retained: a new terminal gets it at once
  xd/v1/{s}/orders     one order, a cancellation or a delivery manifest per message

Up (store -> cloud): stock movements and order progress are *events* in the outbox
(`stock` and `order` on the devices `ledger` and `orders`), so they ride the same
exactly-once path as door events and are never compacted. Their `data` is built and
checked here; `xiaodian.wire.payloads` carries them.

Items are named by a key: a GTIN-14 for packaged goods ("06901234567892") or "in:" plus
the in-store item number for variable-measure goods weighed in the shop ("in:12345").
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal, Protocol, TypeVar, get_args

import msgspec
from msgspec import Meta, Struct

from xiaodian.wire import ids, jsonio
from xiaodian.wire.ids import DeviceId, ItemId, MovementId, OrderNumber, StoreId
from xiaodian.wire.payloads import (
    FORMAT_VERSION,
    MAX_PAYLOAD_BYTES,
    U63,
    PayloadError,
    convert,
    decode,
    store_of_topic,
)

Unit = Literal["piece", "weight"]  # sold by the piece, or weighed (price from a scale label)
UNITS = get_args(Unit)
Storage = Literal["chilled", "frozen", "ambient"]
STORAGE = get_args(Storage)
OrderMode = Literal["pickup", "delivery"]
ORDER_MODES = get_args(OrderMode)
# Signed change of stock on hand: delivery > 0; sale, waste, pickup, dispatch < 0; adjust != 0.
MovementKind = Literal["delivery", "sale", "waste", "adjust", "pickup", "dispatch"]
MOVEMENT_KINDS = get_args(MovementKind)
_POSITIVE = {"delivery"}
_NEGATIVE = {"sale", "waste", "pickup", "dispatch"}
# Store-side order states; the cloud adds its own "open" before the store has it.
OrderState = Literal[
    "received",  # the terminal stored it (pickup: waiting for the customer)
    "picked_up",  # handed over at the counter
    "packed",  # delivery: packed, stock moved (dispatch)
    "out_for_delivery",
    "delivered",
    "cancelled",
    "expired",  # not collected before its expiry
]
ORDER_STATES = get_args(OrderState)
MAX_LINES = 100
# A catalogue is one MQTT message: it must stay well under the broker's max_packet_size
# (512 KiB, devstack/broker.py), or the broker drops the connection that sends it. 256 KiB
# holds ~1500 items, several times a convenience store's chilled range.
MAX_CATALOGUE_BYTES = 256 * 1024
MAX_QTY = 1_000_000  # pieces in one movement: more is a typo or an attack, not a delivery
MAX_GRAMS = 10_000_000
MAX_CATALOGUE = 5000
MAX_NOTE_CHARS = 200

# Field types: the limits of the retail messages, declared once.
Qty = Annotated[int, Meta(ge=-MAX_QTY, le=MAX_QTY)]
Grams = Annotated[int, Meta(ge=-MAX_GRAMS, le=MAX_GRAMS)]
Lane = Annotated[int, Meta(ge=0, le=63)]
# Free text in a ledger: PostgreSQL text refuses NUL, so `_printable` refuses control codes.
Note = Annotated[str, Meta(max_length=MAX_NOTE_CHARS)]
IsoDate = Annotated[str, Meta(max_length=10)]  # YYYY-MM-DD, checked by `_check_date`


def check_item(v: Any, where: str) -> str:
    if not ids.is_item_id(v):
        raise PayloadError(f"{where}: bad item key {v!r} (a GTIN-14 or 'in:' + item number)")
    return v


def _printable(value: str | None, what: str) -> None:
    if value is not None and not value.isprintable():
        raise PayloadError(f"{what}: control characters are not allowed")


def _check_date(value: str | None, what: str) -> None:
    if value is None:
        return
    try:
        date.fromisoformat(value)
    except ValueError:
        raise PayloadError(f"{what}: {value!r} is not YYYY-MM-DD") from None


def _display_text(s: Struct, field: str, limit: int) -> None:
    """Trim a name shown to people, then insist on 1..limit printable characters."""
    text = getattr(s, field).strip()
    if not text or len(text) > limit or not text.isprintable():
        raise PayloadError(f"{field}: 1 to {limit} characters")
    msgspec.structs.force_setattr(s, field, text)


# ---------------------------------------------------------------- catalogue


class Location(Struct, frozen=True, forbid_unknown_fields=True):
    """Where an item lives: a lane of a smart fridge, and what one piece weighs there."""

    fridge: DeviceId
    lane: Lane
    unit_grams: Annotated[int, Meta(ge=1, le=99_999)]


class CatalogueItem(Struct, frozen=True, forbid_unknown_fields=True):
    item: ItemId
    name: Annotated[str, Meta(max_length=400)]  # 1..100 once trimmed
    unit: Unit
    shelf_life_days: Annotated[int, Meta(ge=0, le=3650)]
    storage: Storage
    location: Location | None = None

    def __post_init__(self) -> None:
        _display_text(self, "name", 100)


class _Downlink(Struct, frozen=True, forbid_unknown_fields=True, tag_field="type"):
    """Cloud -> store messages; `type` tells them apart."""


class Catalogue(_Downlink, tag="catalogue", frozen=True):
    store: StoreId
    version: U63  # increases with every change; a store ignores an older version
    items: Annotated[tuple[CatalogueItem, ...], Meta(max_length=MAX_CATALOGUE)]
    v: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        keys = {i.item for i in self.items}
        if len(keys) != len(self.items):
            raise PayloadError("catalogue lists an item twice")
        check_lanes(self.items)


# ---------------------------------------------------------------- orders


class OrderLine(Struct, frozen=True, forbid_unknown_fields=True):
    item: ItemId
    qty: Annotated[int, Meta(ge=1, le=1000)]  # pieces (for weighed goods: packs)


class Order(_Downlink, tag="order", frozen=True):
    id: OrderNumber
    store: StoreId
    mode: OrderMode
    customer: Annotated[str, Meta(max_length=256)]  # shown to the clerk ("Wang L."), 1..64
    created: float  # unix seconds
    expires: float  # unix seconds: pickup code and reservation end here
    lines: Annotated[tuple[OrderLine, ...], Meta(min_length=1, max_length=MAX_LINES)]
    v: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if len({ln.item for ln in self.lines}) != len(self.lines):
            raise PayloadError("lines: an item appears twice")
        _display_text(self, "customer", 64)


class Cancel(_Downlink, tag="cancel", frozen=True):
    order: OrderNumber
    store: StoreId
    reason: str
    v: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        # A reason is for the clerk's screen: an overlong one is cut, not refused.
        msgspec.structs.force_setattr(self, "reason", self.reason[:MAX_NOTE_CHARS])


# ---------------------------------------------------------------- delivery manifests
#
# What a wave's delivery brings a store (cloud_gateway/supply/dispatch.py), sent on the
# orders leaf like an order, so it rides the same persistent session and retries. The
# store keeps it by `id` (a redelivered manifest is recognised) for the clerk to receive
# the delivery against.

MAX_MANIFEST_LINES = 1000
MAX_MANIFEST_LOTS = 20  # lots of one item in one delivery
MAX_SERVES = 1000  # pre-orders one line serves
MAX_MANIFEST_BYTES = 256 * 1024  # one MQTT message, like a catalogue


class ManifestLot(Struct, frozen=True, forbid_unknown_fields=True):
    batch: Note
    expiry: IsoDate  # YYYY-MM-DD: the last day it may be sold
    qty: Annotated[int, Meta(ge=1, le=MAX_QTY)]

    def __post_init__(self) -> None:
        _check_date(self.expiry, "expiry")
        _printable(self.batch, "batch")


class Serves(Struct, frozen=True, forbid_unknown_fields=True):
    """Pieces of a line packed in a pre-order's bag; `from_stock`: pieces the store gives
    from its own shelf for the rest of that pre-order's line."""

    order: OrderNumber
    qty: Annotated[int, Meta(ge=0, le=1000)]
    from_stock: Annotated[int, Meta(ge=0, le=1000)] = 0


class ManifestLine(Struct, frozen=True, forbid_unknown_fields=True):
    """Pieces of an item the delivery brings, in lots, and the pre-orders they serve. A line
    of 0 pieces (no lots) brings nothing: it only says which pre-orders the store serves
    from its own stock (`from_stock`), so the store holds those pieces."""

    item: ItemId
    name: Annotated[str, Meta(max_length=400)]  # 1..100 once trimmed
    qty: Annotated[int, Meta(ge=0, le=MAX_QTY)]
    lots: Annotated[tuple[ManifestLot, ...], Meta(max_length=MAX_MANIFEST_LOTS)]
    serves: Annotated[tuple[Serves, ...], Meta(max_length=MAX_SERVES)] = ()

    def __post_init__(self) -> None:
        _display_text(self, "name", 100)
        if sum(lot.qty for lot in self.lots) != self.qty:
            raise PayloadError(f"{self.item}: the lots add up to"
                               f" {sum(lot.qty for lot in self.lots)}, not {self.qty}")
        if self.qty == 0 and not any(s.from_stock > 0 for s in self.serves):
            raise PayloadError(f"{self.item}: a line of 0 pieces serves a pre-order from"
                               " stock, or is left out")
        if sum(s.qty for s in self.serves) > self.qty:
            raise PayloadError(f"{self.item}: serves more pieces than it brings")
        if len({s.order for s in self.serves}) != len(self.serves):
            raise PayloadError(f"{self.item}: a pre-order is served twice")


class Manifest(_Downlink, tag="manifest", frozen=True):
    id: U63  # the cloud's manifest number: a store ignores one it has
    store: StoreId
    zone: Annotated[str, Meta(min_length=1, max_length=32)]
    wave: IsoDate  # the wave (its cutoff's local date)
    delivery: IsoDate  # the day it arrives
    lines: Annotated[tuple[ManifestLine, ...], Meta(min_length=1, max_length=MAX_MANIFEST_LINES)]
    v: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        _check_date(self.wave, "wave")
        _check_date(self.delivery, "delivery")
        _printable(self.zone, "zone")
        if len({ln.item for ln in self.lines}) != len(self.lines):
            raise PayloadError("lines: an item appears twice")


def manifest_payload(m: Manifest) -> bytes:
    """The manifest message; PayloadError if it is too large to send as one message."""
    body = jsonio.encode(m)
    if len(body) > MAX_MANIFEST_BYTES:
        raise PayloadError(f"manifest of {len(m.lines)} lines is {len(body)} bytes; at most"
                           f" {MAX_MANIFEST_BYTES} fit in one message")
    return body


Downlink = Catalogue | Order | Cancel | Manifest
# What each topic leaf carries.
_LEAF_TYPE: dict[str, Any] = {"catalogue": Catalogue, "orders": Order | Cancel | Manifest}


def catalogue_payload(c: Catalogue) -> bytes:
    """The catalogue message; PayloadError if it is too large to send as one message."""
    body = jsonio.encode(c)
    if len(body) > MAX_CATALOGUE_BYTES:
        raise PayloadError(f"catalogue of {len(c.items)} items is {len(body)} bytes as a"
                           f" message; at most {MAX_CATALOGUE_BYTES} fit")
    return body


def order_payload(o: Order) -> bytes:
    return jsonio.encode(o)


def cancel_payload(c: Cancel) -> bytes:
    return jsonio.encode(c)


def parse_downlink(topic_name: str, payload: bytes) -> Downlink:
    """Parse a catalogue or order message strictly; PayloadError says what is wrong."""
    store, leaf = store_of_topic(topic_name)
    type_ = _LEAF_TYPE.get(leaf)
    if type_ is None:
        raise PayloadError(f"no messages expected on topic leaf {leaf!r}")
    body: Downlink = decode(payload, type_,
                            max_bytes=max(MAX_PAYLOAD_BYTES, MAX_CATALOGUE_BYTES))
    if body.v != FORMAT_VERSION:
        raise PayloadError(f"unsupported format version {body.v}")
    if body.store != store:
        raise PayloadError(f"payload store {body.store!r} does not match topic {store!r}")
    return body


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


# ---------------------------------------------------------------- events up
#
# The `data` of an event, already parsed by `payloads.parse`: checked with `convert`, as
# strictly as a message, then by the type's `rules` (across fields). Each builder checks
# what it builds the same way, so the edge never writes what the cloud would park; the
# rules are not in `__post_init__` because the edge builds first and asks after.


class Movement(Struct, frozen=True, forbid_unknown_fields=True):
    """One line of the stock ledger (event type `stock`, device `ledger`)."""

    id: MovementId  # unique per movement (uuid4 hex), so a re-entered movement is recognisable
    kind: MovementKind
    item: ItemId
    qty: Qty  # signed change of pieces on hand
    # Weighed goods: weight moved (a magnitude; qty gives the sign).
    grams: Annotated[int, Meta(ge=0, le=MAX_GRAMS)] | None = None
    batch: Note | None = None
    expiry: IsoDate | None = None  # YYYY-MM-DD
    order: OrderNumber | None = None  # pickup and dispatch movements name their order
    note: Note | None = None

    def rules(self) -> None:
        qty, kind = self.qty, self.kind
        if (qty <= 0 and kind in _POSITIVE) or (qty >= 0 and kind in _NEGATIVE) or qty == 0:
            raise PayloadError(f"data.qty: {qty} has the wrong sign for a {kind}")
        _check_date(self.expiry, "data.expiry")
        if kind in ("pickup", "dispatch") and self.order is None:
            raise PayloadError(f"data.order: a {kind} names its order")
        _printable(self.batch, "data.batch")
        _printable(self.note, "data.note")


class OrderProgress(Struct, frozen=True, forbid_unknown_fields=True):
    """A change of an order's state at the store (event type `order`, device `orders`)."""

    order: OrderNumber
    state: OrderState
    # Handover: what was taken differs from the order (item -> pieces taken minus ordered).
    differences: tuple[tuple[ItemId, int], ...] = ()
    note: Note | None = None
    # A smart-fridge pickup the clerk confirmed before its lanes were weighed: why (the
    # counter's reason code, e.g. "taken_by_hand"). Absent otherwise, and from older stores.
    unweighed: Note | None = None

    def rules(self) -> None:
        _printable(self.note, "data.note")
        _printable(self.unweighed, "data.unweighed")
        if self.unweighed is not None and self.state != "picked_up":
            raise PayloadError("data.unweighed: only a picked-up order is handed over")


def movement_data(m: Movement) -> dict[str, Any]:
    return _checked(m)


def parse_movement(data: dict[str, Any]) -> Movement:
    return _parse(data, Movement)


def progress_data(p: OrderProgress) -> dict[str, Any]:
    data = _checked(p)
    if data.get("unweighed") is None:
        # Left out unless set, so a cloud that predates the field still takes the event.
        data.pop("unweighed", None)
    return data


def parse_progress(data: dict[str, Any]) -> OrderProgress:
    return _parse(data, OrderProgress)


LaneVerdict = Literal["ok", "mismatch"]


class LaneCheck(Struct, frozen=True, forbid_unknown_fields=True):
    """A lane's weight judged against what should have left it (`lane_check`, device =
    the fridge): after a handover, or a settled drop that no sale explains."""

    lane: Lane
    order: OrderNumber | None
    expected_grams: Grams
    measured_grams: Grams
    verdict: LaneVerdict
    note: Note = ""

    def rules(self) -> None:
        _printable(self.note, "data.note")


class ExpiryLine(Struct, frozen=True, forbid_unknown_fields=True):
    item: ItemId
    batch: Note | None
    expiry: IsoDate  # YYYY-MM-DD
    qty: Annotated[int, Meta(ge=1, le=MAX_QTY)]


class _Expiry(Struct, frozen=True, forbid_unknown_fields=True):
    """The `expiry` event (device `ledger`): what expires within the window, first first."""

    window_days: Annotated[int, Meta(ge=0, le=365)]
    items: tuple[ExpiryLine, ...]

    def rules(self) -> None:
        for n, x in enumerate(self.items):
            _check_date(x.expiry, f"data.items[{n}].expiry")
            _printable(x.batch, f"data.items[{n}].batch")


def lane_check_data(c: LaneCheck) -> dict[str, Any]:
    return _checked(c)


def parse_lane_check(data: dict[str, Any]) -> LaneCheck:
    return _parse(data, LaneCheck)


def expiry_data(window_days: int, lines: list[ExpiryLine]) -> dict[str, Any]:
    return _checked(_Expiry(window_days, tuple(lines)))


def parse_expiry(data: dict[str, Any]) -> tuple[int, tuple[ExpiryLine, ...]]:
    """The `expiry` event (device `ledger`): what expires within the window, first first."""
    e = _parse(data, _Expiry)
    return e.window_days, e.items


ReceiptIssue = Literal["short", "over", "damaged", "wrong_item", "expired"]
RECEIPT_ISSUES = get_args(ReceiptIssue)


class ReceiptDifference(Struct, frozen=True, forbid_unknown_fields=True):
    """One difference found while receiving a manifest line. `short`: pieces missing;
    `over`: pieces more than the manifest; `damaged`, `expired` (on arrival) and
    `wrong_item` (something else came in its place): pieces that arrived but are not sellable
    as this item, so they are not taken into stock."""

    item: ItemId  # the manifest line's item
    issue: ReceiptIssue
    qty: Annotated[int, Meta(ge=1, le=MAX_QTY)]
    note: Note = ""


class ReceiptLine(Struct, frozen=True, forbid_unknown_fields=True):
    item: ItemId
    expected: Annotated[int, Meta(ge=0, le=MAX_QTY)]  # the manifest's quantity (0: not on it)
    accepted: Annotated[int, Meta(ge=0, le=MAX_QTY)]  # pieces taken into stock


class Receipt(Struct, frozen=True, forbid_unknown_fields=True):
    """A delivery received against its manifest and signed off at the counter (event type
    `receipt`, device `ledger`); sent once per manifest. Its stock comes in as ordinary
    `delivery` movements; this says what differed, which the cloud turns into short
    pre-order lines and refunds (docs/supply.md)."""

    manifest: U63
    wave: IsoDate
    lines: Annotated[tuple[ReceiptLine, ...], Meta(min_length=1, max_length=MAX_MANIFEST_LINES)]
    differences: Annotated[tuple[ReceiptDifference, ...],
                           Meta(max_length=MAX_MANIFEST_LINES * len(RECEIPT_ISSUES))] = ()
    signed_by: Annotated[str, Meta(min_length=1, max_length=64)] = "clerk"  # the account
    signed_at: float = 0.0  # unix seconds

    def rules(self) -> None:
        _check_date(self.wave, "data.wave")
        _printable(self.signed_by, "data.signed_by")
        lines = {}
        for n, line in enumerate(self.lines):
            if line.item in lines:
                raise PayloadError(f"data.lines[{n}]: {line.item} appears twice")
            lines[line.item] = line
        seen: set[tuple[str, str]] = set()
        missing: dict[str, int] = {}
        for n, d in enumerate(self.differences):
            _printable(d.note, f"data.differences[{n}].note")
            if d.item not in lines:
                raise PayloadError(f"data.differences[{n}]: {d.item} is not a line of the receipt")
            if (d.item, d.issue) in seen:
                raise PayloadError(f"data.differences[{n}]: {d.issue} of {d.item} given twice")
            seen.add((d.item, d.issue))
            missing[d.item] = missing.get(d.item, 0) + (-d.qty if d.issue == "over" else d.qty)
        for n, line in enumerate(self.lines):
            # What was expected and not accepted is exactly what the differences explain.
            if line.expected - line.accepted != missing.get(line.item, 0):
                raise PayloadError(
                    f"data.lines[{n}]: {line.item} expected {line.expected}, accepted"
                    f" {line.accepted}, but the differences account for"
                    f" {missing.get(line.item, 0)}")


def receipt_data(r: Receipt) -> dict[str, Any]:
    return _checked(r)


def parse_receipt(data: dict[str, Any]) -> Receipt:
    return _parse(data, Receipt)


PickupRefusal = Literal["no_key", "malformed", "oversize", "wrong_store", "unknown_key",
                        "bad_mac", "expired", "already_redeemed", "unknown_order",
                        "cancelled", "order_expired", "not_pickup", "rate_limited"]
PICKUP_REFUSALS = get_args(PickupRefusal)


class _PickupRefused(Struct, frozen=True, forbid_unknown_fields=True):
    result: Literal["refused"]  # only refusals are reported
    reason: PickupRefusal


def pickup_refusal_data(reason: str) -> dict[str, Any]:
    """A refused pickup code (`pickup`, device `counter`): the reason only, never the code."""
    return _checked(_PickupRefused("refused", reason))  # type: ignore[arg-type]


def parse_pickup_refusal(data: dict[str, Any]) -> str:
    return convert(data, _PickupRefused).reason


class _EventData(Protocol):
    def rules(self) -> None: ...


_D = TypeVar("_D", bound=_EventData)


def _parse(data: dict[str, Any], type_: type[_D]) -> _D:
    value = convert(data, type_)
    value.rules()
    return value


def _checked(s: Struct) -> dict[str, Any]:
    """`s` as event data, after checking it as the cloud will (building a Struct checks
    no field types)."""
    data: dict[str, Any] = jsonio.to_builtins(s)
    rules = getattr(convert(data, type(s)), "rules", None)
    if rules is not None:
        rules()
    return data
