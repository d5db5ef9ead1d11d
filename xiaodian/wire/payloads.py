"""The JSON messages between a store's edge agent and the cloud: built here, parsed here.

One module owns both directions so the two sides cannot drift apart. The parser is strict
and never trusts its input: anything it does not accept raises `PayloadError` with a reason
that the cloud stores beside the parked (dead-letter) message.

Topics (`{s}` is the store id, which is also the MQTT username and client certificate CN):
  xd/v1/{s}/telemetry  batched temperature readings of one fridge
  xd/v1/{s}/events     batched events of one device (door, compressor, power, scan, ...)
  xd/v1/{s}/alerts     the agent's alert changes: the event stream of device `alerts`, on a
                       topic of its own so it overtakes a backlog of other events
  xd/v1/{s}/state      retained birth message; the same topic carries the Will (death)
The retail messages (catalogue, orders; stock and order events) are in `xiaodian.wire.retail`.

Every record carries `seq`, its position in the stream `{kind}/{device}` of the agent boot
`boot`. (store, kind, device, boot, seq) identifies a record everywhere, so a replayed or
redelivered message is harmless: the cloud keeps the first copy and ignores the rest.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

import msgspec
from msgspec import Meta, Struct

from . import ids, jsonio
from .errors import CodeError
from .health import HEALTH_DEVICE, Vitals
from .ids import DeviceId, StoreId

FORMAT_VERSION = 1
TOPIC_ROOT = "xd/v1"
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_RECORDS = 2000
MAX_SPAN = 1_000_000  # most seqs one aggregate or one receipt range may cover
# Deprecated: check ids with `xiaodian.wire.ids`. Kept for callers that still use `.match`;
# `\Z` (not `$`, which also matches before a final newline) makes that a full match too.
ID_PATTERN = re.compile(ids.DEVICE_ID.pattern + r"\Z")
EventType = Literal[
    "hello",
    "heartbeat",
    "door",
    "compressor",
    "power",
    "defrost",
    "scan",
    "link",
    "storage",
    "alert",
    "command",
    # firmware: lane weights and the door lock (issue #3)
    "lanes",
    "lock",
    # a firmware update's outcome from the controller (docs/firmware_update.md, issue #17)
    "firmware",
    # an update the cloud started (the `update` command): state, percent, result
    "update",
    # retail (xiaodian.wire.retail): stock ledger, order progress, lane checks, expiry list,
    # refused pickup codes, deliveries received against their manifest
    "stock",
    "order",
    "lane_check",
    "expiry",
    "pickup",
    "receipt",
    # a fridge's hourly vitals (xiaodian.wire.health), only in the stream of device `health`
    "vitals",
]
EVENT_TYPES = frozenset(get_args(EventType))
ProbeStatus = Literal["ok", "crc", "missing", "suspect"]
PROBE_STATUS = get_args(ProbeStatus)
ALERTS_DEVICE = "alerts"  # the stream of alert changes (data names the fridge)

# Field types: every limit of the format is declared here, once.
U63 = Annotated[int, Meta(ge=0, le=2**63 - 1)]  # seqs, boots, device times: an SQLite INTEGER
U16 = Annotated[int, Meta(ge=0, le=0xFFFF)]  # serial frame numbers
ProbeIndex = Annotated[int, Meta(ge=0, lt=256)]
Celsius = Annotated[float, Meta(gt=-300.0, lt=3000.0)]
Count = Annotated[int, Meta(ge=0, le=MAX_SPAN)]
Seq = Annotated[int, Meta(ge=1, le=2**63 - 1)]  # seqs start at 1


def leaf_for(kind: Kind, device: str) -> str:
    """The topic leaf a stream is published on."""
    if kind == "readings":
        return "telemetry"
    return {ALERTS_DEVICE: "alerts", HEALTH_DEVICE: "health"}.get(device, "events")

Kind = Literal["readings", "events"]


class PayloadError(CodeError):
    """A message the cloud will not ingest; `str()` is the reason stored with it."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(reason, message)


def topic(store: str, leaf: str) -> str:
    return f"{TOPIC_ROOT}/{store}/{leaf}"


def decode(payload: bytes, type_: type[jsonio.T], root: str = "payload",
           max_bytes: int | None = MAX_PAYLOAD_BYTES) -> jsonio.T:
    """`jsonio.decode` raising PayloadError, the error of this module's callers."""
    try:
        return jsonio.decode(payload, type_, root=root, max_bytes=max_bytes)
    except jsonio.JsonError as exc:
        raise PayloadError(exc.message, exc.reason) from None


def convert(data: Any, type_: type[jsonio.T], root: str = "data") -> jsonio.T:
    """An event's `data` (already parsed) as `type_`; PayloadError if it is not one."""
    try:
        return jsonio.convert(data, type_, root=root)
    except jsonio.JsonError as exc:
        raise PayloadError(exc.message, exc.reason) from None


# ---------------------------------------------------------------- records
#
# Frozen Structs: msgspec checks the field types and `Meta` limits while decoding;
# `__post_init__` holds the rules across fields (msgspec reports the PayloadError it
# raises, a ValueError, with the path of the record).


class Probe(Struct, frozen=True, array_like=True):
    """On the wire `[index, status, celsius]`."""

    index: ProbeIndex
    status: ProbeStatus
    celsius: Celsius | None  # None when the probe gave no usable value


class ProbeStats(Struct, frozen=True, array_like=True):
    """On the wire `[index, min, mean, max, n_ok, n]`."""

    index: ProbeIndex
    minimum: Celsius | None
    mean: Celsius | None
    maximum: Celsius | None
    n_ok: Count  # readings with a usable value
    n: Count  # readings in the interval

    def __post_init__(self) -> None:
        values = (self.minimum, self.mean, self.maximum)
        if self.n_ok:
            if (self.minimum is None or self.mean is None or self.maximum is None
                    or not self.minimum <= self.mean <= self.maximum):
                raise PayloadError("min <= mean <= max does not hold")
        elif values != (None, None, None):
            raise PayloadError("no usable readings but values given")
        if self.n_ok > self.n:
            raise PayloadError("counts do not add up")


class Aggregate(Struct, frozen=True, forbid_unknown_fields=True):
    count: Count  # readings it replaces
    dev_ms_last: U63
    wall_last: float
    fseq_last: U16
    probes: Annotated[tuple[ProbeStats, ...], Meta(max_length=256)]

    def __post_init__(self) -> None:
        if any(p.n > self.count for p in self.probes):
            raise PayloadError("counts do not add up")


class Reading(Struct, frozen=True, forbid_unknown_fields=True):
    seq: U63
    fseq: U16  # serial frame sequence number the reading arrived in
    dev_ms: U63  # device monotonic time of the sample, ms since the device booted
    wall: float  # terminal wall clock (unix seconds) when the frame was received
    synced: bool  # whether that wall clock was NTP-synchronised at the time
    probes: Annotated[tuple[Probe, ...], Meta(max_length=256)]
    # An aggregate the edge made under disk pressure replaces readings seq..seq_last:
    # `probes` then holds each probe's mean, `agg` the detail.
    seq_last: U63 | None = None
    agg: Aggregate | None = None

    def __post_init__(self) -> None:
        if self.seq_last is None and self.agg is None:
            return
        if self.seq_last is None or self.agg is None:
            raise PayloadError("seq_last and agg come together")
        if not self.seq < self.seq_last <= self.seq + MAX_SPAN:
            raise PayloadError(f"seq_last {self.seq_last} does not follow seq {self.seq}")
        span = self.seq_last - self.seq + 1
        if self.agg.count != span:
            raise PayloadError(f"agg.count: {self.agg.count} readings but seqs span {span}")


class Event(Struct, frozen=True, forbid_unknown_fields=True):
    seq: U63
    type: EventType
    wall: float
    synced: bool
    data: dict[str, Any]  # checked by the type's own parser (e.g. xiaodian.wire.retail)
    fseq: U16 | None = None
    dev_ms: U63 | None = None


class _Message(Struct, frozen=True, forbid_unknown_fields=True, tag_field="kind"):
    """What arrives on a store's topics; `kind` tells them apart."""


class ReadingsMessage(_Message, tag="readings", frozen=True):
    v: int
    store: StoreId
    device: DeviceId
    boot: U63
    records: Annotated[tuple[Reading, ...], Meta(min_length=1, max_length=MAX_RECORDS)]


class EventsMessage(_Message, tag="events", frozen=True):
    v: int
    store: StoreId
    device: DeviceId
    boot: U63
    records: Annotated[tuple[Event, ...], Meta(min_length=1, max_length=MAX_RECORDS)]


class State(_Message, tag="state", frozen=True):
    """Retained birth message (and Will): the agent and the devices it serves."""

    store: StoreId
    online: bool
    boot: U63
    wall: float
    agent_version: Annotated[str, Meta(max_length=64)]
    devices: Annotated[tuple[DeviceId, ...], Meta(max_length=1000)]
    v: int = FORMAT_VERSION
    # SHA-256 (hex) of the agent's effective configuration, secrets excluded
    # (edge/config_hash.py): which stores run the same settings. Absent from an older agent.
    config_hash: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$")] | None = None


class _KindOnly(Struct):
    """A message's kind alone, to name it when it is not what its topic carries."""

    kind: Any = None


class Batch(Struct, frozen=True):
    """One stream's records, as the cloud ingests them."""

    kind: Kind
    store: str
    device: str
    boot: int
    records: tuple[Reading, ...] | tuple[Event, ...]


# ---------------------------------------------------------------- building (edge side)


def reading_record(
    seq: int,
    fseq: int,
    dev_ms: int,
    wall: float,
    synced: bool,
    probes: list[tuple[int, str, float | None]],
) -> dict[str, Any]:
    return {
        "seq": seq,
        "fseq": fseq,
        "dev_ms": dev_ms,
        "wall": wall,
        "synced": synced,
        "probes": [[i, s, c] for i, s, c in probes],
    }


def event_record(
    seq: int,
    type_: str,
    fseq: int | None,
    dev_ms: int | None,
    wall: float,
    synced: bool,
    data: dict[str, Any],
) -> dict[str, Any]:
    return {
        "seq": seq,
        "type": type_,
        "fseq": fseq,
        "dev_ms": dev_ms,
        "wall": wall,
        "synced": synced,
        "data": data,
    }


def batch_payload(
    kind: Kind, store: str, device: str, boot: int, records: list[dict[str, Any]]
) -> bytes:
    body = {
        "v": FORMAT_VERSION,
        "kind": kind,
        "store": store,
        "device": device,
        "boot": boot,
        "records": records,
    }
    return jsonio.encode(body)


def state_payload(
    store: str, online: bool, boot: int, wall: float, agent_version: str, devices: list[str],
    config_hash: str | None = None,
) -> bytes:
    return jsonio.encode(State(store, online, boot, wall, agent_version, tuple(devices),
                               config_hash=config_hash))


# ---------------------------------------------------------------- cloud receipts
#
# PUBACK only says the broker has a message. A broker that restarts without its database,
# or a queue limit, can still lose it before any cloud worker stores it. So the cloud
# confirms what it has committed on `xd/v1/{s}/receipts`, and the edge deletes outbox rows
# only then; rows PUBACKed but not confirmed in time are published again (harmless: ids).


class ReceiptEntry(Struct, frozen=True, forbid_unknown_fields=True):
    kind: Kind
    device: DeviceId
    boot: U63
    ranges: tuple[tuple[Seq, Seq], ...]  # inclusive (first, last) seq ranges

    def __post_init__(self) -> None:
        for first, last in self.ranges:
            if not 0 <= last - first <= MAX_SPAN:
                raise PayloadError(f"bad range {[first, last]!r}")

    def seqs(self) -> list[int]:
        return [s for a, b in self.ranges for s in range(a, b + 1)]


class Receipts(Struct, frozen=True, forbid_unknown_fields=True, tag_field="kind",
               tag="receipts"):
    v: int
    store: StoreId
    receipts: tuple[ReceiptEntry, ...]


def seq_ranges(seqs: list[int]) -> list[tuple[int, int]]:
    """Compress sequence numbers into inclusive ranges: [1,2,3,7] -> [(1,3),(7,7)]."""
    out: list[tuple[int, int]] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


def receipts_payload(store: str, entries: list[ReceiptEntry]) -> bytes:
    return jsonio.encode(Receipts(FORMAT_VERSION, store, tuple(entries)))


def parse_receipts(topic_name: str, payload: bytes) -> tuple[ReceiptEntry, ...]:
    """The edge's side: what the cloud confirms. Raises PayloadError like `parse`."""
    store, leaf = store_of_topic(topic_name)
    if leaf != "receipts":
        raise PayloadError(f"not a receipts topic: {topic_name!r}")
    body = decode(payload, Receipts, "receipts")
    if body.v != FORMAT_VERSION:
        raise PayloadError("not a receipts message of a known version")
    if body.store != store:
        raise PayloadError("receipts for another store")
    return body.receipts


# ---------------------------------------------------------------- parsing (cloud side)


def store_of_topic(topic_name: str) -> tuple[str, str]:
    """Split `xd/v1/{store}/{leaf}` into (store, leaf) or raise PayloadError."""
    parts = topic_name.split("/")
    if len(parts) != 4 or f"{parts[0]}/{parts[1]}" != TOPIC_ROOT:
        raise PayloadError(f"unexpected topic {topic_name!r}")
    if not ids.is_store_id(parts[2]):
        raise PayloadError(f"bad store id in topic {topic_name!r}")
    return parts[2], parts[3]


# What each topic leaf carries; the Struct's tag is the message's `kind`.
_LEAF_TYPE: dict[str, type[ReadingsMessage] | type[EventsMessage] | type[State]] = {
    "telemetry": ReadingsMessage, "events": EventsMessage, "alerts": EventsMessage,
    "health": EventsMessage, "state": State}


def parse(topic_name: str, payload: bytes) -> Batch | State:
    store, leaf = store_of_topic(topic_name)
    type_ = _LEAF_TYPE.get(leaf)
    if type_ is None:
        raise PayloadError(f"no messages expected on topic leaf {leaf!r}")
    try:
        body = decode(payload, type_)
    except PayloadError as exc:
        if exc.message.startswith("payload.kind: "):
            kind = msgspec.json.decode(payload, type=_KindOnly).kind  # JSON, with a kind
            expected = type_.__struct_config__.tag
            raise PayloadError(f"kind {kind!r} on topic {leaf!r} (expected {expected!r})"
                               ) from None
        raise
    if body.v != FORMAT_VERSION:
        raise PayloadError(f"unsupported format version {body.v}")
    if body.store != store:
        raise PayloadError(f"payload store {body.store!r} does not match topic store {store!r}")
    if isinstance(body, State):
        return body
    if isinstance(body, ReadingsMessage):
        return Batch("readings", store, body.device, body.boot, body.records)
    if leaf == "alerts" and (body.device != ALERTS_DEVICE
                             or any(e.type != "alert" for e in body.records)):
        raise PayloadError(f"topic alerts carries only alert events of device {ALERTS_DEVICE!r}")
    # Vitals travel only on their own topic, and that topic carries nothing else; each
    # record's data must be a whole, valid `Vitals` (a bad one parks the message).
    if (leaf == "health") != (body.device == HEALTH_DEVICE):
        raise PayloadError(f"device {HEALTH_DEVICE!r} is sent on topic health, and only it")
    if leaf == "health":
        for i, e in enumerate(body.records):
            if e.type != "vitals":
                raise PayloadError("topic health carries only vitals events")
            convert(e.data, Vitals, root=f"payload.records[{i}].data")
    elif any(e.type == "vitals" for e in body.records):
        raise PayloadError("vitals events are sent on topic health only")
    return Batch("events", store, body.device, body.boot, body.records)
