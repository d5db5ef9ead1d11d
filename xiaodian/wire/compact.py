"""The compact edge→cloud format (version 2): several streams of one store in one message,
readings as columns, MessagePack, then deflate. Built here, parsed here, like `payloads`.

Why: a store pays for its mobile data by the megabyte. JSON repeats every field name for
every reading and one message per stream multiplies the MQTT, TLS, TCP/IP and receipt
overhead; here a reading is a few bytes (docs/contracts.md, "The compact format").

Announced per message: MQTT 5 Content Type `CONTENT_TYPE`, and the payload's first byte
(high nibble the version, low nibble the compression). Sent on `xd/v1/{s}/bundle`; the
cloud answers its receipts in the same format. A message without that content type is the
JSON of `payloads` (version 1), so old and new agents share one cloud.

Layout (MessagePack arrays, `Struct(array_like=True)`), after the header byte:

    bundle   = [store, [readings columns...], [events columns...]]
    readings = [device, boot, seq, fseq, dev_ms, wall_ms, synced, probes, extra]
      seq      first seq, then the difference to the one before (1 for contiguous)
      fseq     first frame number, then differences modulo 65536
      dev_ms   first device time, then differences (ms)
      wall_ms  first terminal time in ms, then per reading what it differs from
               "previous wall + the device time elapsed" (small: the reader's jitter)
      synced   positions where `synced` flips, starting from true
      probes   per probe [index, status codes (empty: all ok), values]: the values in
               1/16 °C (the DS18B20's own unit), first absolute, then differences; nil
               where the reading has none
      extra    readings the columns cannot hold exactly (aggregates, a probe set that
               differs, a value not on the 1/16 °C grid), as version-1 records
    events   = [device, boot, seq, type, fseq, dev_ms, wall_ms, synced, data]
      seq, wall_ms as above (wall_ms: differences to the previous event's); fseq and
      dev_ms absolute or nil; data the event's JSON object (read back with the same strict
      JSON reader as version 1)
    receipts = [store, [[kind, device, boot, [first, last, first, last, ...]], ...]]

Terminal times travel to the millisecond (version 1 carries the float as it is).
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Sequence
from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta, Struct

from . import ids, jsonio, payloads
from .health import HEALTH_DEVICE, Vitals
from .payloads import (
    ALERTS_DEVICE,
    MAX_PAYLOAD_BYTES,
    MAX_RECORDS,
    Batch,
    Event,
    Kind,
    PayloadError,
    Probe,
    Reading,
    ReceiptEntry,
    convert,
    store_of_topic,
)

VERSION: Final = 2
CONTENT_TYPE: Final = "application/vnd.xiaodian.batch+msgpack;v=2"
LEAF: Final = "bundle"
PLAIN, DEFLATE = 0x0, 0x1  # the header's low nibble
MAX_INFLATED = 8 * 1024 * 1024  # a small message may not unpack into more than this
MAX_STREAMS = 256
STATUS_CODES: Final = ("ok", "crc", "missing", "suspect")
_STATUS = {s: i for i, s in enumerate(STATUS_CODES)}
UNITS = 16  # per °C: the probe's raw unit
_T16_LIMIT = 3000 * UNITS  # Celsius's bound in payloads

I64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
U63_MAX = 2**63 - 1


class CompactUnfit(ValueError):
    """The records cannot be put in this format (send them as version 1 instead)."""


class _ProbeColumn(Struct, array_like=True, forbid_unknown_fields=True):
    index: int
    status: list[int]
    t16: list[int | None]


class _Readings(Struct, array_like=True, forbid_unknown_fields=True):
    device: str
    boot: int
    seq: list[I64]
    fseq: list[I64]
    dev_ms: list[I64]
    wall_ms: list[I64]
    synced: list[int]
    probes: list[_ProbeColumn]
    extra: list[Reading]


class _Events(Struct, array_like=True, forbid_unknown_fields=True):
    device: str
    boot: int
    seq: list[I64]
    type: list[str]
    fseq: list[int | None]
    dev_ms: list[int | None]
    wall_ms: list[I64]
    synced: list[int]
    data: list[bytes]


class _Bundle(Struct, array_like=True, forbid_unknown_fields=True):
    store: str
    readings: Annotated[list[_Readings], Meta(max_length=MAX_STREAMS)]
    events: Annotated[list[_Events], Meta(max_length=MAX_STREAMS)]


class _Receipts(Struct, array_like=True, forbid_unknown_fields=True):
    store: str
    entries: list[tuple[str, str, int, list[int]]]


_encoder = msgspec.msgpack.Encoder()
_bundle_decoder = msgspec.msgpack.Decoder(_Bundle)
_receipts_decoder = msgspec.msgpack.Decoder(_Receipts)


# ---------------------------------------------------------------- envelope


def _seal(body: bytes, compress: bool) -> bytes:
    if compress:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: TLS checks integrity
        packed = packer.compress(body) + packer.flush()
        if len(packed) < len(body):
            return bytes([VERSION << 4 | DEFLATE]) + packed
    return bytes([VERSION << 4 | PLAIN]) + body


def _open(payload: bytes, what: str) -> bytes:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"{what} of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}",
                           "oversize")
    if not payload:
        raise PayloadError(f"{what} is empty")
    version, method = payload[0] >> 4, payload[0] & 0xF
    if version != VERSION:
        raise PayloadError(f"{what}: compact format version {version} is not {VERSION}")
    if method == PLAIN:
        return payload[1:]
    if method != DEFLATE:
        raise PayloadError(f"{what}: unknown compression {method}")
    inflater = zlib.decompressobj(-15)
    try:
        body = inflater.decompress(payload[1:], MAX_INFLATED + 1)
    except zlib.error as exc:
        raise PayloadError(f"{what}: not deflate data ({exc})") from None
    if inflater.unconsumed_tail or len(body) > MAX_INFLATED:
        raise PayloadError(f"{what} inflates to more than {MAX_INFLATED} bytes", "oversize")
    if not inflater.eof or inflater.unused_data:
        raise PayloadError(f"{what}: deflate stream truncated or followed by other bytes")
    return body


def _decode(decoder: msgspec.msgpack.Decoder[Any], body: bytes, what: str) -> Any:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise PayloadError(f"{what}: {exc}") from None
    except (msgspec.DecodeError, RecursionError):
        raise PayloadError(f"{what} is not MessagePack of the compact format") from None


# ---------------------------------------------------------------- building (edge side)


def _deltas(values: Sequence[int], modulo: int | None = None) -> list[int]:
    out = [values[0]]
    for a, b in itertools.pairwise(values):
        out.append((b - a) % modulo if modulo else b - a)
    return out


def _flips(flags: Sequence[bool]) -> list[int]:
    out, current = [], True
    for i, f in enumerate(flags):
        if f != current:
            out.append(i)
            current = f
    return out


def _ms(wall: float) -> int:
    if not math.isfinite(wall):
        raise CompactUnfit(f"wall {wall!r} is not a time")
    return round(wall * 1000)


def _t16(celsius: float | None) -> int | None:
    """`celsius` in 1/16 °C, or CompactUnfit when not exactly on that grid."""
    if celsius is None:
        return None
    scaled = celsius * UNITS
    if not (math.isfinite(scaled) and scaled == int(scaled) and abs(scaled) < _T16_LIMIT):
        raise CompactUnfit(f"{celsius!r} °C is not a whole number of 1/16 °C")
    return int(scaled)


def _columnar(record: dict[str, Any], layout: tuple[int, ...] | None) -> bool:
    if "agg" in record or "seq_last" in record:
        return False
    probes = record["probes"]
    if layout is not None and tuple(p[0] for p in probes) != layout:
        return False
    try:
        for _, status, celsius in probes:
            _t16(celsius)
            if status not in _STATUS:
                return False
    except CompactUnfit:
        return False
    return True


def _reading_columns(device: str, boot: int, records: Sequence[dict[str, Any]]) -> _Readings:
    layout: tuple[int, ...] | None = None
    rows: list[dict[str, Any]] = []
    extra: list[Reading] = []
    for r in records:
        if _columnar(r, layout):
            layout = tuple(p[0] for p in r["probes"])
            rows.append(r)
        else:
            extra.append(convert(r, Reading, root="record"))
    if not rows:
        return _Readings(device, boot, [], [], [], [], [], [], extra)
    dev = [r["dev_ms"] for r in rows]
    walls = [_ms(r["wall"]) for r in rows]
    wall_col = [walls[0]] + [walls[i] - walls[i - 1] - (dev[i] - dev[i - 1])
                             for i in range(1, len(rows))]
    probes = []
    for j, index in enumerate(layout or ()):
        codes = [_STATUS[r["probes"][j][1]] for r in rows]
        values = [_t16(r["probes"][j][2]) for r in rows]
        t16: list[int | None] = []
        last: int | None = None
        for v in values:
            t16.append(None if v is None else v if last is None else v - last)
            last = v if v is not None else last
        probes.append(_ProbeColumn(index, [] if not any(codes) else codes, t16))
    return _Readings(device, boot, _deltas([r["seq"] for r in rows]),
                     _deltas([r["fseq"] for r in rows], 0x10000), _deltas(dev), wall_col,
                     _flips([bool(r["synced"]) for r in rows]), probes, extra)


def _event_columns(device: str, boot: int, records: Sequence[dict[str, Any]]) -> _Events:
    walls = [_ms(e["wall"]) for e in records]
    try:
        data = [jsonio.encode(e["data"]) for e in records]
    except (TypeError, ValueError, OverflowError) as exc:
        raise CompactUnfit(f"event data: {exc}") from None
    return _Events(device, boot, _deltas([e["seq"] for e in records]),
                   [e["type"] for e in records], [e["fseq"] for e in records],
                   [e["dev_ms"] for e in records], _deltas(walls),
                   _flips([bool(e["synced"]) for e in records]), data)


def bundle_payload(store: str, streams: Sequence[tuple[Kind, str, int, Sequence[dict[str, Any]]]],
                   *, compress: bool = True) -> bytes:
    """One message for several streams: (kind, device, boot, records) each, records as
    `payloads.reading_record` / `event_record` build them. CompactUnfit if a value cannot
    be carried (the caller then sends those streams as version 1)."""
    readings: list[_Readings] = []
    events: list[_Events] = []
    if not streams or len(streams) > MAX_STREAMS:
        raise CompactUnfit(f"{len(streams)} streams in one message")
    for kind, device, boot, records in streams:
        if not records:
            raise CompactUnfit("a stream without records")
        if kind == "readings":
            readings.append(_reading_columns(device, boot, records))
        else:
            events.append(_event_columns(device, boot, records))
    try:
        body = _encoder.encode(_Bundle(store, readings, events))
    except (OverflowError, TypeError, ValueError) as exc:  # an int beyond 64 bits, ...
        raise CompactUnfit(str(exc)) from None
    return _seal(body, compress)


def receipts_payload(store: str, entries: Sequence[ReceiptEntry]) -> bytes:
    flat: list[tuple[str, str, int, list[int]]] = [
        (e.kind, e.device, e.boot, [s for r in e.ranges for s in r]) for e in entries]
    return _seal(_encoder.encode(_Receipts(store, flat)), compress=True)


# ---------------------------------------------------------------- parsing


def _undelta(values: list[int], modulo: int | None = None) -> list[int]:
    out = [values[0]]
    for d in values[1:]:
        out.append((out[-1] + d) % modulo if modulo else out[-1] + d)
    return out


def _synced(flips: list[int], n: int, where: str) -> list[bool]:
    if flips != sorted(set(flips)) or any(not 0 <= i < n for i in flips):
        raise PayloadError(f"{where}.synced: flip positions not increasing within 0..{n - 1}")
    out, current, k = [], True, 0
    for i in range(n):
        if k < len(flips) and flips[k] == i:
            current = not current
            k += 1
        out.append(current)
    return out


def _same_length(where: str, n: int, **columns: Sequence[Any]) -> None:
    for name, col in columns.items():
        if len(col) != n:
            raise PayloadError(f"{where}.{name}: {len(col)} values for {n} records")


def _readings_of(cols: _Readings, where: str) -> tuple[Reading, ...]:
    n = len(cols.seq)
    _same_length(where, n, fseq=cols.fseq, dev_ms=cols.dev_ms, wall_ms=cols.wall_ms)
    if n + len(cols.extra) == 0:
        raise PayloadError(f"{where}: a stream without records")
    if n + len(cols.extra) > MAX_RECORDS:
        raise PayloadError(f"{where}: more than {MAX_RECORDS} records")
    if n:
        seqs, dev = _undelta(cols.seq), _undelta(cols.dev_ms)
        fseqs = _undelta(cols.fseq, 0x10000)
        walls = [cols.wall_ms[0]]
        for i in range(1, n):
            walls.append(walls[-1] + (dev[i] - dev[i - 1]) + cols.wall_ms[i])
        synced = _synced(cols.synced, n, where)
        if min(seqs) < 0 or max(seqs) > U63_MAX or min(dev) < 0 or max(dev) > U63_MAX:
            raise PayloadError(f"{where}: seq or dev_ms out of range 0..2**63-1")
        columns: list[list[Probe]] = []
        for p in cols.probes:
            _same_length(f"{where}.probes[{p.index}]", n, t16=p.t16)
            if not 0 <= p.index < 256:
                raise PayloadError(f"{where}.probes: index {p.index} out of range 0..255")
            if p.status and len(p.status) != n:
                raise PayloadError(f"{where}.probes[{p.index}].status: {len(p.status)} codes"
                                   f" for {n} records")
            try:
                statuses = [STATUS_CODES[c] for c in p.status] if p.status else ["ok"] * n
            except IndexError:
                raise PayloadError(f"{where}.probes[{p.index}].status: unknown code") from None
            column: list[Probe] = []
            last: int | None = None
            seen: dict[tuple[str, int | None], Probe] = {}  # frozen: equal ones shared
            for v, status in zip(p.t16, statuses, strict=True):
                if v is not None:
                    last = v if last is None else last + v
                    if not -_T16_LIMIT < last < _T16_LIMIT:
                        raise PayloadError(f"{where}.probes[{p.index}]: {last / UNITS} °C"
                                           " out of range")
                value = None if v is None else last
                probe = seen.get((status, value))
                if probe is None:
                    probe = seen[(status, value)] = Probe(
                        p.index, status,  # type: ignore[arg-type]
                        None if value is None else value / UNITS)
                column.append(probe)
            columns.append(column)
        # Every field was range-checked above, column by column: the Structs are built
        # directly (msgspec checks `Meta` limits only when it decodes or converts).
        readings = [Reading(seqs[i], fseqs[i], dev[i], walls[i] / 1000, synced[i],
                            tuple(c[i] for c in columns)) for i in range(n)]
        return (*readings, *cols.extra)
    return tuple(cols.extra)


def _events_of(cols: _Events, where: str) -> tuple[Event, ...]:
    n = len(cols.seq)
    if not 1 <= n <= MAX_RECORDS:
        raise PayloadError(f"{where}: {n} records (1..{MAX_RECORDS})")
    _same_length(where, n, type=cols.type, fseq=cols.fseq, dev_ms=cols.dev_ms,
                 wall_ms=cols.wall_ms, data=cols.data)
    seqs, walls = _undelta(cols.seq), _undelta(cols.wall_ms)
    synced = _synced(cols.synced, n, where)
    records = []
    for i in range(n):
        try:
            data = jsonio.decode(cols.data[i], dict[str, Any], root=f"{where}[{i}].data")
        except jsonio.JsonError as exc:
            raise PayloadError(exc.message, exc.reason) from None
        records.append({"seq": seqs[i], "type": cols.type[i], "fseq": cols.fseq[i],
                        "dev_ms": cols.dev_ms[i], "wall": walls[i] / 1000,
                        "synced": synced[i], "data": data})
    events = convert(records, tuple[Event, ...], root=where)
    _check_event_stream(cols.device, events, where)
    return events


def _check_event_stream(device: str, events: tuple[Event, ...], where: str) -> None:
    """The same rules as version 1's topics: alert changes and vitals only in their own
    streams, and each vitals record a whole, valid `Vitals`."""
    if device == ALERTS_DEVICE and any(e.type != "alert" for e in events):
        raise PayloadError(f"{where}: stream {ALERTS_DEVICE!r} carries only alert events")
    if device != ALERTS_DEVICE and any(e.type == "alert" for e in events):
        raise PayloadError(f"{where}: alert events belong to stream {ALERTS_DEVICE!r}")
    if device == HEALTH_DEVICE:
        for i, e in enumerate(events):
            if e.type != "vitals":
                raise PayloadError(f"{where}: stream {HEALTH_DEVICE!r} carries only vitals")
            convert(e.data, Vitals, root=f"{where}[{i}].data")
    elif any(e.type == "vitals" for e in events):
        raise PayloadError(f"{where}: vitals events belong to stream {HEALTH_DEVICE!r}")


def _stream_id(device: str, boot: int, where: str) -> None:
    if not ids.is_device_id(device):
        raise PayloadError(f"{where}.device: {device!r} is not a device id")
    if not 0 <= boot <= 2**63 - 1:
        raise PayloadError(f"{where}.boot: {boot} out of range")


def parse_bundle(topic_name: str, payload: bytes) -> tuple[Batch, ...]:
    """The cloud's side: every stream of a compact message, or PayloadError (the whole
    message is parked: nothing of a bad message is half-stored)."""
    store, leaf = store_of_topic(topic_name)
    if leaf != LEAF:
        raise PayloadError(f"compact messages travel on topic {LEAF!r}, not {leaf!r}")
    body: _Bundle = _decode(_bundle_decoder, _open(payload, "payload"), "payload")
    if body.store != store:
        raise PayloadError(f"payload store {body.store!r} does not match topic store {store!r}")
    if not body.readings and not body.events:
        raise PayloadError("payload: a message without streams")
    batches: list[Batch] = []
    for i, r in enumerate(body.readings):
        where = f"payload.readings[{i}]"
        _stream_id(r.device, r.boot, where)
        batches.append(Batch("readings", store, r.device, r.boot, _readings_of(r, where)))
    for i, e in enumerate(body.events):
        where = f"payload.events[{i}]"
        _stream_id(e.device, e.boot, where)
        batches.append(Batch("events", store, e.device, e.boot, _events_of(e, where)))
    return tuple(batches)


def parse_receipts(topic_name: str, payload: bytes) -> tuple[ReceiptEntry, ...]:
    """The edge's side of a compact receipts message; PayloadError like `payloads`'."""
    store, leaf = store_of_topic(topic_name)
    if leaf != "receipts":
        raise PayloadError(f"not a receipts topic: {topic_name!r}")
    body: _Receipts = _decode(_receipts_decoder, _open(payload, "receipts"), "receipts")
    if body.store != store:
        raise PayloadError("receipts for another store")
    entries = []
    for kind, device, boot, flat in body.entries:
        if len(flat) % 2:
            raise PayloadError("receipts: a range without its end")
        ranges = [flat[i:i + 2] for i in range(0, len(flat), 2)]
        entries.append(convert({"kind": kind, "device": device, "boot": boot,
                                "ranges": ranges}, ReceiptEntry, root="receipts"))
    return tuple(entries)


def parse_any_receipts(topic_name: str, payload: bytes,
                       content_type: str | None) -> tuple[ReceiptEntry, ...]:
    """A receipts message in either format: the cloud answers a store in the format the
    store sent (MQTT 5 content type CONTENT_TYPE: compact; none: version-1 JSON)."""
    if content_type == CONTENT_TYPE:
        return parse_receipts(topic_name, payload)
    return payloads.parse_receipts(topic_name, payload)
