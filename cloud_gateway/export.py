"""Export readings as CSV or JSON lines, streamed row by row in (boot, seq) order."""

from __future__ import annotations

import base64
import csv
import json
from collections.abc import Iterable
from typing import Any, Literal, TextIO

from .db.reads import GAP_FIELDS, READING_FIELDS, DeadLetter

Format = Literal["csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl")


def write_readings(rows: Iterable[dict[str, Any]], out: TextIO, fmt: Format) -> int:
    """Write `rows` (from Database.readings) to `out`; returns how many were written."""
    n = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(READING_FIELDS)
        for row in rows:
            writer.writerow([_csv_value(row[k]) for k in READING_FIELDS])
            n += 1
        return n
    for row in rows:
        record = {k: row[k] for k in READING_FIELDS}
        record["probes"] = row["probes"]
        out.write(json.dumps(record, separators=(",", ":")) + "\n")
        n += 1
    return n


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""  # a probe without a usable value
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def dead_letter_record(d: DeadLetter) -> dict[str, Any]:
    """A parked message as JSON: the payload as text when it is UTF-8, else base64."""
    record: dict[str, Any] = {"id": d.id, "received_at": d.received_at, "worker": d.worker,
                              "topic": d.topic, "reason": d.reason, "size": len(d.payload)}
    try:
        record["payload"] = d.payload.decode("utf-8")
    except UnicodeDecodeError:
        record["payload_base64"] = base64.b64encode(d.payload).decode("ascii")
    return record


def write_dead_letters(letters: Iterable[DeadLetter], out: TextIO, fmt: Literal["text", "jsonl"],
                       preview: int = 120) -> int:
    n = 0
    for d in letters:
        if fmt == "jsonl":
            out.write(json.dumps(dead_letter_record(d), ensure_ascii=False) + "\n")
        else:
            text = d.payload[:preview].decode("utf-8", "replace")
            text = text.replace("\n", "\\n").replace("\t", "\\t")
            more = "…" if len(d.payload) > preview else ""
            out.write(f"{d.id}\t{d.received_at:.3f}\t{d.worker}\t{d.topic}\t{d.reason}\t"
                      f"{text}{more}\n")
        n += 1
    return n


GAP_COLUMNS = ("state", "store", "device", "kind", "boot", "first_missing_seq",
               "last_missing_seq", "missing", "detected_at", "filled_at")


def write_gaps(rows: Iterable[dict[str, Any]], out: TextIO,
               fmt: Literal["text", "jsonl"]) -> int:
    """Write data gaps (from Database.gaps); returns how many were written."""
    n = 0
    if fmt == "text":
        out.write("\t".join(GAP_COLUMNS) + "\n")
    for row in rows:
        if fmt == "jsonl":
            record = {k: row[k] for k in (*GAP_FIELDS, "missing", "state")}
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
        else:
            out.write("\t".join("" if row[k] is None else str(row[k]) for k in GAP_COLUMNS)
                      + "\n")
        n += 1
    return n
