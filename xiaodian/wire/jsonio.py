"""The contract's one strict JSON reader (and its compact writer).

Every message type is a `msgspec.Struct` with its limits declared on its fields, so this
module only has to add what msgspec does not refuse by itself:

  NaN, Infinity      msgspec refuses them (not JSON), and a number too large for a float
                     ("1e400"), which Python's `json` would read as infinity.
  unknown fields     refused by the Structs (`forbid_unknown_fields=True`).
  bool for int, "1"  refused: decoding is strict.
  duplicate keys     msgspec keeps the last one silently; two readers that disagree on which
                     copy counts can be played against each other, so a second pass refuses
                     them (only on input msgspec accepted, so garbage costs one pass).

Errors are `JsonError` (a `CodeError`) naming the field as `{root}.records[3].seq`.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

import msgspec

from .errors import CodeError

T = TypeVar("T")

_NOT_NUMBERS = re.compile(rb"NaN|Infinity")
_FIELD_PROBLEM = re.compile(r"Object (missing required|contains unknown) field `(.*)`")
_encoder = msgspec.json.Encoder()
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


class JsonError(CodeError):
    """Input that is not a well-formed instance of the expected message.

    `reason`: oversize | not_utf8 | not_json | not_a_number (NaN, Infinity) |
    duplicate_key | not_whole (a fraction where only whole numbers are read) |
    invalid (shape or value).
    """


def decode(data: bytes, type_: type[T], *, root: str = "payload",
           max_bytes: int | None = None, whole_numbers: bool = False) -> T:
    """`data` as a `type_`, or JsonError with the reason and the field at fault.

    `whole_numbers` refuses any number with a fraction or exponent, even where `type_`
    says `Any` (the HTTP API's bodies: tenths of a degree, never 0.5).
    """
    if max_bytes is not None and len(data) > max_bytes:
        raise JsonError("oversize", f"{root} of {len(data)} bytes exceeds {max_bytes}")
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders.setdefault(type_, msgspec.json.Decoder(type_, strict=True))
    try:
        value: T = decoder.decode(data)
    except msgspec.ValidationError as exc:  # a DecodeError too: this clause first
        # msgspec stops at the first wrong value; broken JSON after it is the better reason.
        _syntax(data, root)
        raise JsonError("invalid", _where(root, str(exc))) from None
    except (msgspec.DecodeError, RecursionError):
        _syntax(data, root)
        raise JsonError("not_json", f"{root} is not JSON") from None
    _second_pass(data, root, whole_numbers)
    return value


def _syntax(data: bytes, root: str) -> None:
    """JsonError unless `data` is well-formed UTF-8 JSON (a value of any type)."""
    try:
        msgspec.json.decode(data)
    except RecursionError:
        raise JsonError("not_json", f"{root} is not JSON: nested too deeply") from None
    except msgspec.DecodeError as exc:
        try:
            bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise JsonError("not_utf8", f"{root} is not UTF-8") from None
        if _NOT_NUMBERS.search(data):  # the likely cause: say so
            raise JsonError("not_a_number", f"{root} is not JSON: {exc} (NaN and Infinity"
                                            " are not JSON numbers)") from None
        raise JsonError("not_json", f"{root} is not JSON: {exc}") from None


def convert(obj: Any, type_: type[T], *, root: str = "data") -> T:
    """An already-parsed JSON value (an event's `data`) as a `type_`, checked as strictly."""
    try:
        return msgspec.convert(obj, type_, strict=True)
    except msgspec.ValidationError as exc:
        raise JsonError("invalid", _where(root, str(exc))) from None


def encode(obj: Any) -> bytes:
    """Compact UTF-8 JSON of Structs, dicts, lists and scalars."""
    return _encoder.encode(obj)


def to_builtins(obj: Any) -> Any:
    """A Struct as plain dicts and lists (an event's `data` is stored and sent that way)."""
    return msgspec.to_builtins(obj)


def _where(root: str, message: str) -> str:
    """msgspec's "Expected `int`, got `str` - at `$.records[0].seq`" as
    "payload.records[0].seq: expected `int`, got `str`"."""
    text, sep, path = message.partition(" - at `")
    where = root + path.rstrip("`")[1:] if sep else root
    # A field's own name reads better in the path: "payload.records[0].seq: missing".
    m = _FIELD_PROBLEM.fullmatch(text)
    if m is not None:
        return f"{where}.{m[2]}: {'missing' if m[1] == 'missing required' else 'unknown field'}"
    return f"{where}: {text[:1].lower()}{text[1:]}"


def _second_pass(data: bytes, root: str, whole_numbers: bool) -> None:
    # The C scanner of `json` hands every object's members to the hook in order; msgspec
    # has already vouched for the syntax, so only these checks can fail here.
    text = data if isinstance(data, bytes | bytearray) else bytes(data)  # a memoryview too
    try:
        json.loads(text, object_pairs_hook=_unique,
                   parse_float=_refuse_fraction if whole_numbers else None)
    except _Duplicate as exc:
        raise JsonError("duplicate_key", f"{root}: duplicate key {exc.args[0]!r}") from None
    except _Fraction as exc:
        raise JsonError("not_whole", f"{root}: {exc.args[0]} is not a whole number") from None
    except (ValueError, RecursionError):
        raise JsonError("not_json", f"{root} is not JSON") from None


class _Duplicate(Exception):
    pass


class _Fraction(Exception):
    pass


def _refuse_fraction(text: str) -> None:
    raise _Fraction(text)


def _unique(pairs: list[tuple[str, Any]]) -> None:
    if len({k for k, _ in pairs}) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _Duplicate(k)
            seen.add(k)
