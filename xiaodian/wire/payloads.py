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

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from . import ids

FORMAT_VERSION = 1
TOPIC_ROOT = "xd/v1"
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_RECORDS = 2000
# Deprecated: check ids with `xiaodian.wire.ids`. Kept for callers that still use `.match`;
# `\Z` (not `$`, which also matches before a final newline) makes that a full match too.
ID_PATTERN = re.compile(ids.DEVICE_ID.pattern + r"\Z")
EVENT_TYPES = frozenset(
    {
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
        # retail (xiaodian.wire.retail): stock ledger, order progress, lane checks, expiry list,
        # refused pickup codes
        "stock",
        "order",
        "lane_check",
        "expiry",
        "pickup",
    }
)
PROBE_STATUS = ("ok", "crc", "missing", "suspect")
ALERTS_DEVICE = "alerts"  # the stream of alert changes (data names the fridge)


def leaf_for(kind: Kind, device: str) -> str:
    """The topic leaf a stream is published on."""
    if kind == "readings":
        return "telemetry"
    return "alerts" if device == ALERTS_DEVICE else "events"

Kind = Literal["readings", "events"]


class PayloadError(ValueError):
    """A message the cloud will not ingest; `str()` is the reason stored with it."""


def topic(store: str, leaf: str) -> str:
    return f"{TOPIC_ROOT}/{store}/{leaf}"


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class Probe:
    index: int
    status: str  # one of PROBE_STATUS
    celsius: float | None  # None when the probe gave no usable value


@dataclass(frozen=True)
class Reading:
    seq: int
    fseq: int  # serial frame sequence number (u16) the reading arrived in
    dev_ms: int  # device monotonic time of the sample, ms since the device booted
    wall: float  # terminal wall clock (unix seconds) when the frame was received
    synced: bool  # whether that wall clock was NTP-synchronised at the time
    probes: tuple[Probe, ...]
    # An aggregate the edge made under disk pressure replaces readings seq..seq_last:
    # `probes` then holds each probe's mean, `agg` the detail.
    seq_last: int | None = None
    agg: Aggregate | None = None


@dataclass(frozen=True)
class ProbeStats:
    index: int
    minimum: float | None
    mean: float | None
    maximum: float | None
    n_ok: int  # readings with a usable value
    n: int  # readings in the interval


@dataclass(frozen=True)
class Aggregate:
    count: int  # readings it replaces
    dev_ms_last: int
    wall_last: float
    fseq_last: int
    probes: tuple[ProbeStats, ...]


@dataclass(frozen=True)
class Event:
    seq: int
    type: str  # one of EVENT_TYPES
    fseq: int | None
    dev_ms: int | None
    wall: float
    synced: bool
    data: dict[str, Any]


@dataclass(frozen=True)
class Batch:
    kind: Kind
    store: str
    device: str
    boot: int
    records: tuple[Reading, ...] | tuple[Event, ...]


@dataclass(frozen=True)
class State:
    store: str
    online: bool
    boot: int
    wall: float
    agent_version: str
    devices: tuple[str, ...]


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
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def state_payload(
    store: str, online: bool, boot: int, wall: float, agent_version: str, devices: list[str]
) -> bytes:
    body = {
        "v": FORMAT_VERSION,
        "kind": "state",
        "store": store,
        "online": online,
        "boot": boot,
        "wall": wall,
        "agent_version": agent_version,
        "devices": devices,
    }
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


# ---------------------------------------------------------------- cloud receipts
#
# PUBACK only says the broker has a message. A broker that restarts without its database,
# or a queue limit, can still lose it before any cloud worker stores it. So the cloud
# confirms what it has committed on `xd/v1/{s}/receipts`, and the edge deletes outbox rows
# only then; rows PUBACKed but not confirmed in time are published again (harmless: ids).


@dataclass(frozen=True)
class ReceiptEntry:
    kind: Kind
    device: str
    boot: int
    ranges: tuple[tuple[int, int], ...]  # inclusive (first, last) seq ranges

    def seqs(self) -> list[int]:
        return [s for a, b in self.ranges for s in range(a, b + 1)]


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
    body = {
        "v": FORMAT_VERSION,
        "kind": "receipts",
        "store": store,
        "receipts": [
            {
                "kind": e.kind,
                "device": e.device,
                "boot": e.boot,
                "ranges": [list(r) for r in e.ranges],
            }
            for e in entries
        ],
    }
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def parse_receipts(topic_name: str, payload: bytes) -> tuple[ReceiptEntry, ...]:
    """The edge's side: what the cloud confirms. Raises PayloadError like `parse`."""
    store, leaf = store_of_topic(topic_name)
    if leaf != "receipts":
        raise PayloadError(f"not a receipts topic: {topic_name!r}")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        body = json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise PayloadError("receipts payload is not JSON") from None
    obj = _Obj(body, "payload")
    if obj.integer("v") != FORMAT_VERSION or obj.text("kind") != "receipts":
        raise PayloadError("not a receipts message of a known version")
    if obj.text("store") != store:
        raise PayloadError("receipts for another store")
    entries = []
    for i, raw in enumerate(obj.array("receipts")):
        e = _Obj(raw, f"receipts[{i}]")
        kind = e.text("kind")
        if kind not in ("readings", "events"):
            raise PayloadError(f"receipts[{i}].kind: {kind!r}")
        ranges = []
        for r in e.array("ranges"):
            if (
                not isinstance(r, list)
                or len(r) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in r)
                or not 0 < r[0] <= r[1] < 2**63
                or r[1] - r[0] > 1_000_000
            ):
                raise PayloadError(f"receipts[{i}].ranges: bad range {r!r}")
            ranges.append((r[0], r[1]))
        entries.append(
            ReceiptEntry(
                kind,  # type: ignore[arg-type]
                _Obj.check_id(e.text("device"), f"receipts[{i}].device"),
                e.uint("boot"),
                tuple(ranges),
            )
        )
    return tuple(entries)


# ---------------------------------------------------------------- parsing (cloud side)


def store_of_topic(topic_name: str) -> tuple[str, str]:
    """Split `xd/v1/{store}/{leaf}` into (store, leaf) or raise PayloadError."""
    parts = topic_name.split("/")
    if len(parts) != 4 or f"{parts[0]}/{parts[1]}" != TOPIC_ROOT:
        raise PayloadError(f"unexpected topic {topic_name!r}")
    if not ids.is_store_id(parts[2]):
        raise PayloadError(f"bad store id in topic {topic_name!r}")
    return parts[2], parts[3]


def parse(topic_name: str, payload: bytes) -> Batch | State:
    store, leaf = store_of_topic(topic_name)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        body = json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise PayloadError("payload is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise PayloadError(f"payload is not JSON: {exc.msg} at char {exc.pos}") from None
    except RecursionError:
        raise PayloadError("payload nests too deeply") from None
    obj = _Obj(body, "payload")
    version = obj.integer("v")
    if version != FORMAT_VERSION:
        raise PayloadError(f"unsupported format version {version}")
    if obj.text("store") != store:
        raise PayloadError(
            f"payload store {obj.text('store')!r} does not match topic store {store!r}"
        )
    kind = obj.text("kind")
    expected = {"telemetry": "readings", "events": "events", "alerts": "events",
                "state": "state"}.get(leaf)
    if expected is None:
        raise PayloadError(f"no messages expected on topic leaf {leaf!r}")
    if kind != expected:
        raise PayloadError(f"kind {kind!r} on topic {leaf!r} (expected {expected!r})")
    if kind == "state":
        devices = obj.array("devices")
        names = tuple(_Obj.check_id(d, f"payload.devices[{i}]") for i, d in enumerate(devices))
        return State(
            store,
            obj.flag("online"),
            obj.uint("boot"),
            obj.number("wall"),
            obj.text("agent_version"),
            names,
        )
    device = _Obj.check_id(obj.text("device"), "payload.device")
    boot = obj.uint("boot")
    raw_records = obj.array("records")
    if not raw_records:
        raise PayloadError("payload.records is empty")
    if len(raw_records) > MAX_RECORDS:
        raise PayloadError(f"payload.records has {len(raw_records)} entries (max {MAX_RECORDS})")
    if kind == "readings":
        readings = tuple(_reading(_Obj(r, f"records[{i}]")) for i, r in enumerate(raw_records))
        return Batch("readings", store, device, boot, readings)
    events = tuple(_event(_Obj(r, f"records[{i}]")) for i, r in enumerate(raw_records))
    if leaf == "alerts" and (device != ALERTS_DEVICE or any(e.type != "alert" for e in events)):
        raise PayloadError(f"topic alerts carries only alert events of device {ALERTS_DEVICE!r}")
    return Batch("events", store, device, boot, events)


def _reject_constant(name: str) -> None:
    raise PayloadError(f"payload contains {name}, which is not a number")


def _reading(o: _Obj) -> Reading:
    probes = []
    for j, p in enumerate(o.array("probes")):
        where = f"{o.where}.probes[{j}]"
        if not isinstance(p, list) or len(p) != 3:
            raise PayloadError(f"{where}: expected [index, status, celsius]")
        index, status, celsius = p
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 256:
            raise PayloadError(f"{where}: bad probe index {index!r}")
        if status not in PROBE_STATUS:
            raise PayloadError(f"{where}: bad probe status {status!r}")
        if celsius is not None:
            if isinstance(celsius, bool) or not isinstance(celsius, int | float):
                raise PayloadError(f"{where}: celsius must be a number or null")
            if not -300.0 < float(celsius) < 3000.0:
                raise PayloadError(f"{where}: celsius {celsius} is not a temperature")
            celsius = float(celsius)
        probes.append(Probe(index, status, celsius))
    seq = o.uint("seq")
    seq_last: int | None = None
    agg: Aggregate | None = None
    if o.get("seq_last") is not None or o.get("agg") is not None:
        seq_last = o.uint("seq_last")
        if not seq < seq_last <= seq + 1_000_000:
            raise PayloadError(f"{o.where}.seq_last: {seq_last} does not follow seq {seq}")
        agg = _aggregate(_Obj(o.get("agg"), f"{o.where}.agg"), seq_last - seq + 1)
    return Reading(
        seq,
        o.u16("fseq"),
        o.uint("dev_ms"),
        o.number("wall"),
        o.flag("synced"),
        tuple(probes),
        seq_last,
        agg,
    )


def _aggregate(o: _Obj, span: int) -> Aggregate:
    count = o.uint("count")
    if count != span:
        raise PayloadError(f"{o.where}.count: {count} readings but seqs span {span}")
    stats = []
    for j, p in enumerate(o.array("probes")):
        where = f"{o.where}.probes[{j}]"
        if not isinstance(p, list) or len(p) != 6:
            raise PayloadError(f"{where}: expected [index, min, mean, max, n_ok, n]")
        index, lo, mean, hi, n_ok, n = p
        ints = (index, n_ok, n)
        if any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in ints):
            raise PayloadError(f"{where}: index and counts must be non-negative integers")
        values = (lo, mean, hi)
        if n_ok:
            if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
                raise PayloadError(f"{where}: min/mean/max must be numbers")
            if not (-300 < lo <= mean <= hi < 3000):
                raise PayloadError(f"{where}: min <= mean <= max does not hold")
        elif values != (None, None, None):
            raise PayloadError(f"{where}: no usable readings but values given")
        if n_ok > n or n > count:
            raise PayloadError(f"{where}: counts do not add up")
        stats.append(ProbeStats(index, lo, mean, hi, n_ok, n))
    return Aggregate(count, o.uint("dev_ms_last"), o.number("wall_last"), o.u16("fseq_last"),
                     tuple(stats))


def _event(o: _Obj) -> Event:
    type_ = o.text("type")
    if type_ not in EVENT_TYPES:
        raise PayloadError(f"{o.where}.type: unknown event type {type_!r}")
    fseq = None if o.get("fseq") is None else o.u16("fseq")
    dev_ms = None if o.get("dev_ms") is None else o.uint("dev_ms")
    data = o.get("data")
    if not isinstance(data, dict):
        raise PayloadError(f"{o.where}.data: expected an object")
    return Event(o.uint("seq"), type_, fseq, dev_ms, o.number("wall"), o.flag("synced"), data)


class _Obj:
    """Typed access to one JSON object, with errors that say where."""

    def __init__(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise PayloadError(f"{where}: expected an object")
        self.value = value
        self.where = where

    def get(self, key: str) -> Any:
        return self.value.get(key)

    def _need(self, key: str) -> Any:
        if key not in self.value:
            raise PayloadError(f"{self.where}.{key}: missing")
        return self.value[key]

    def text(self, key: str) -> str:
        v = self._need(key)
        if not isinstance(v, str):
            raise PayloadError(f"{self.where}.{key}: expected a string")
        return v

    def flag(self, key: str) -> bool:
        v = self._need(key)
        if not isinstance(v, bool):
            raise PayloadError(f"{self.where}.{key}: expected true or false")
        return v

    def integer(self, key: str) -> int:
        v = self._need(key)
        if isinstance(v, bool) or not isinstance(v, int):
            raise PayloadError(f"{self.where}.{key}: expected an integer")
        return v

    def uint(self, key: str) -> int:
        v = self.integer(key)
        if not 0 <= v < 2**63:
            raise PayloadError(f"{self.where}.{key}: out of range")
        return v

    def u16(self, key: str) -> int:
        v = self.integer(key)
        if not 0 <= v <= 0xFFFF:
            raise PayloadError(f"{self.where}.{key}: out of range for u16")
        return v

    def number(self, key: str) -> float:
        v = self._need(key)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise PayloadError(f"{self.where}.{key}: expected a finite number")
        return float(v)

    def array(self, key: str) -> list[Any]:
        v = self._need(key)
        if not isinstance(v, list):
            raise PayloadError(f"{self.where}.{key}: expected a list")
        return v

    @staticmethod
    def check_id(v: Any, where: str) -> str:
        if not ids.is_device_id(v):
            raise PayloadError(f"{where}: bad id {v!r}")
        return v


JsonObject = _Obj  # for the other message modules (xiaodian.wire.retail)
