"""Recorded traces (CSV or JSON lines) and their replay through the rule engine.

A trace row is one moment of one fridge: probe values (a reading) and/or the state of the
door, compressor, mains and defrost. State columns are levels, not events: a row whose door
column differs from that fridge's previous value is a door event; an empty value means
"unchanged". The format is documented in docs/alerts.md.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge.rules.alerts import AlertChange
from edge.rules.engine import RuleEngine

from ..errors import EdgeError

COLUMNS = (
    "timestamp",
    "fridge",
    "air_c",
    "product_c",
    "air_status",
    "product_status",
    "door",
    "compressor",
    "mains",
    "defrost",
)
STATUSES = ("ok", "crc", "missing", "suspect")
# State column -> (event type, event field, words for true, words for false).
STATE_COLUMNS = {
    "door": ("door", "open", ("open", "1", "true"), ("closed", "0", "false")),
    "compressor": ("compressor", "on", ("on", "1", "true"), ("off", "0", "false")),
    "mains": ("power", "mains", ("on", "1", "true", "ok"), ("off", "0", "false", "lost")),
    "defrost": ("defrost", "active", ("on", "1", "true", "active"), ("off", "0", "false")),
}


class TraceError(EdgeError):
    """A trace line that cannot be used; the message names the source and line."""

    def __init__(self, source: str, line: int, problem: str) -> None:
        self.source = source
        self.line = line
        self.problem = problem
        super().__init__(f"{source} line {line}: {problem}")


@dataclass(frozen=True)
class TraceRow:
    line: int
    t: float
    iso: bool  # the timestamp was ISO-8601 (replay prints times the same way)
    fridge: str
    air_c: float | None = None
    product_c: float | None = None
    air_status: str | None = None
    product_status: str | None = None
    door: bool | None = None
    compressor: bool | None = None
    mains: bool | None = None
    defrost: bool | None = None

    @property
    def has_reading(self) -> bool:
        return any(
            v is not None
            for v in (self.air_c, self.product_c, self.air_status, self.product_status)
        )


def read_trace(path: Path, fmt: str = "auto") -> list[TraceRow]:
    """All rows of a trace file; `fmt` is csv, jsonl or auto (by suffix, else by content)."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    if fmt == "auto":
        if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
            fmt = "jsonl"
        elif path.suffix.lower() == ".csv":
            fmt = "csv"
        else:
            first = next((s.strip() for s in lines if s.strip() and not s.startswith("#")), "")
            fmt = "jsonl" if first.startswith("{") else "csv"
    parse = parse_jsonl if fmt == "jsonl" else parse_csv
    return list(parse(lines, str(path)))


def parse_csv(lines: Iterable[str], source: str = "trace") -> Iterator[TraceRow]:
    header: list[str] | None = None
    for number, text in enumerate(lines, start=1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        try:
            fields = next(csv.reader([text]))
        except csv.Error as exc:
            raise TraceError(source, number, f"not valid CSV: {exc}") from None
        fields = [f.strip() for f in fields]
        if header is None:
            unknown = [f for f in fields if f not in COLUMNS]
            if unknown:
                raise TraceError(
                    source, number, f"unknown column {unknown[0]!r} (known: {', '.join(COLUMNS)})"
                )
            for required in ("timestamp", "fridge"):
                if required not in fields:
                    raise TraceError(source, number, f"header needs a {required!r} column")
            header = fields
            continue
        if len(fields) != len(header):
            raise TraceError(source, number, f"expected {len(header)} fields, got {len(fields)}")
        yield _row(source, number, {k: v for k, v in zip(header, fields, strict=True) if v})
    if header is None:
        raise TraceError(source, 1, "empty trace: no header line")


def parse_jsonl(lines: Iterable[str], source: str = "trace") -> Iterator[TraceRow]:
    for number, text in enumerate(lines, start=1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TraceError(source, number, f"not valid JSON: {exc.msg}") from None
        if not isinstance(obj, dict):
            raise TraceError(source, number, "expected a JSON object")
        unknown = [k for k in obj if k not in COLUMNS]
        if unknown:
            raise TraceError(source, number, f"unknown key {unknown[0]!r}")
        yield _row(source, number, {k: v for k, v in obj.items() if v is not None and v != ""})


def _row(source: str, line: int, raw: dict[str, Any]) -> TraceRow:
    def fail(key: str, problem: str) -> TraceError:
        return TraceError(source, line, f"{key}: {problem}")

    if "timestamp" not in raw:
        raise fail("timestamp", "missing")
    if "fridge" not in raw or not isinstance(raw["fridge"], str):
        raise fail("fridge", "missing or not a string")
    t, iso = _timestamp(raw["timestamp"], fail)
    values: dict[str, Any] = {}
    for key in ("air_c", "product_c"):
        if key in raw:
            values[key] = _number(raw[key], key, fail)
    for key in ("air_status", "product_status"):
        if key in raw:
            if raw[key] not in STATUSES:
                raise fail(key, f"expected one of {', '.join(STATUSES)}, got {raw[key]!r}")
            values[key] = raw[key]
    for key, (_, _, yes, no) in STATE_COLUMNS.items():
        if key in raw:
            values[key] = _state(raw[key], key, yes, no, fail)
    return TraceRow(line=line, t=t, iso=iso, fridge=raw["fridge"], **values)


def _timestamp(value: Any, fail: Any) -> tuple[float, bool]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        iso = False
    elif isinstance(value, str):
        try:
            number, iso = float(value), False
        except ValueError:
            try:
                stamp = datetime.fromisoformat(value)
            except ValueError:
                raise fail("timestamp", f"not ISO-8601 or unix seconds: {value!r}") from None
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=UTC)  # documented: no offset means UTC
            number, iso = stamp.timestamp(), True
    else:
        raise fail("timestamp", f"not ISO-8601 or unix seconds: {value!r}")
    if not math.isfinite(number):
        raise fail("timestamp", f"not a finite time: {value!r}")
    return number, iso


def _number(value: Any, key: str, fail: Any) -> float:
    if isinstance(value, bool):
        raise fail(key, f"not a number: {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise fail(key, f"not a number: {value!r}") from None
    if not math.isfinite(number):
        raise fail(key, f"not a finite number: {value!r}")
    return number


def _state(value: Any, key: str, yes: tuple[str, ...], no: tuple[str, ...], fail: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in yes:
        return True
    if word in no:
        return False
    raise fail(key, f"expected one of {', '.join(yes + no)}, got {value!r}")


def replay(rows: Iterable[TraceRow], engine: RuleEngine) -> Iterator[AlertChange]:
    """Feed rows to the engine in file order; the trace's own time is the present.

    Each row first ticks the engine to its time (so silence from one fridge is noticed at
    the rows of others, or at its own next row), then applies its state changes, then its
    reading: a door that opens in the same row as a reading was open for that reading.
    """
    last: dict[tuple[str, str], bool] = {}
    for row in rows:
        yield from engine.tick(row.t)
        for column, (event_type, flag, _, _) in STATE_COLUMNS.items():
            value: bool | None = getattr(row, column)
            if value is None or last.get((row.fridge, column)) == value:
                continue
            last[(row.fridge, column)] = value
            yield from engine.on_event(row.fridge, row.t, event_type, {flag: value})
        if row.has_reading:
            yield from engine.on_reading(
                row.fridge, row.t, row.air_c, row.product_c, row.air_status, row.product_status
            )
