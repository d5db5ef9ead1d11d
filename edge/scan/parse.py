"""What a scanner line means (pure): product, in-store variable-measure item, GS1 data, pickup.

`parse_scan` never raises anything but ScanError (PickupError is one), whatever the line.
The AIM identifier decides how the data is read; a line without one is tried as a pickup
code, a bare GTIN, then a GS1 element string. GS1 parsing and check digits are biip's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from biip import ParseConfig, ParseError
from biip.checksums import gs1_standard_check_digit
from biip.gs1_messages import GS1Message
from biip.gtin import Gtin, GtinFormat

from edge.scan import variable_measure
from edge.scan.aim import GS1_SYMBOLOGIES, GTIN_SYMBOLOGIES, TEXT_SYMBOLOGIES, split_aim
from edge.scan.aim import symbology_name as _symbology_name
from edge.scan.errors import PickupError, PickupScanError, ScanError
from edge.scan.variable_measure import DEFAULT_LAYOUT, VariableMeasureLayout
from xiaodian.wire.pickup import PREFIX as PICKUP_PREFIX
from xiaodian.wire.pickup import PickupBody, decode_pickup

Kind = Literal["product", "variable_measure", "gs1", "pickup", "unknown"]

# Real barcodes, even GS1 DataMatrix, are far shorter; matches edge.interpret's line bound.
MAX_LINE = 512
GS = "\x1d"  # what scanners send for FNC1 between GS1 element strings
_GTIN_LENGTHS = {"E0": (12, 13), "E3": (13,), "E4": (8,), "I1": (14,), None: (8, 12, 13, 14)}
_GS1_CONFIG = ParseConfig(separator_chars=(GS,))


@dataclass(frozen=True)
class Scan:
    """One scan's meaning. Money is integer fen (分), weight integer grams.

    `gtin` is always the 14-digit form (GS1's advice for storing GTINs); for a
    variable-measure code it is the code as printed, and `item` is the store's item number.
    `pickup` is the code's structure only: check it with a PickupCodec before trusting it.
    `kind == "unknown"` is a read from a symbology we do not interpret (Code 39, plain
    Code 128...), passed on as `data`.
    """

    kind: Kind
    symbology: str | None  # AIM code character + modifier, e.g. "E0"; None without AIM
    data: str  # the line after the AIM identifier
    gtin: str | None = None
    item: str | None = None
    weight_g: int | None = None
    price_fen: int | None = None
    expiry: date | None = None
    best_before: date | None = None
    batch: str | None = None
    pickup: PickupBody | None = None
    elements: tuple[tuple[str, str], ...] = ()  # GS1 (AI, value) pairs in scan order

    @property
    def symbology_name(self) -> str | None:
        return _symbology_name(self.symbology)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (dates ISO 8601) for events and the CLI."""
        return {
            "kind": self.kind,
            "symbology": self.symbology,
            "symbology_name": self.symbology_name,
            "data": self.data,
            "gtin": self.gtin,
            "item": self.item,
            "weight_g": self.weight_g,
            "price_fen": self.price_fen,
            "expiry": None if self.expiry is None else self.expiry.isoformat(),
            "best_before": None if self.best_before is None else self.best_before.isoformat(),
            "batch": self.batch,
            "elements": [list(e) for e in self.elements],
            "pickup": None if self.pickup is None else pickup_dict(self.pickup),
        }


def pickup_dict(body: PickupBody) -> dict[str, Any]:
    return {
        "order_id": body.order_id,
        "expires_at": body.expires_at,
        "expires": datetime.fromtimestamp(body.expires_at, UTC).isoformat(),
        "key_id": body.key_id,
        "nonce": body.nonce,
        "scheme": body.scheme,
        "verified": False,
    }


def parse_scan(line: str | bytes, layout: VariableMeasureLayout = DEFAULT_LAYOUT) -> Scan:
    """The meaning of one scanner line (CR/LF may still be on it), or ScanError."""
    text = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
    # Not str.strip(): Python counts GS (0x1D) as whitespace, and GS is data here.
    text = text.strip(" \t\r\n")
    if not text:
        raise ScanError("empty", "empty scan")
    if len(text) > MAX_LINE:
        raise ScanError("too_long", f"scan of {len(text)} characters is too long")
    symbology, data = split_aim(text)
    if data.startswith(PICKUP_PREFIX):
        try:
            return Scan("pickup", symbology, data, pickup=decode_pickup(data))
        except PickupError as exc:
            raise PickupScanError(exc.reason, exc.message) from None  # type: ignore[arg-type]
    if symbology in GTIN_SYMBOLOGIES:
        return _gtin(symbology, data, layout)
    if symbology in GS1_SYMBOLOGIES:
        return _gs1(symbology, data)
    if symbology in TEXT_SYMBOLOGIES:
        raise ScanError("unknown_format", "this code is neither a product nor a pickup code")
    if symbology is not None:
        return Scan("unknown", symbology, data)
    if _digits(data) and len(data) in _GTIN_LENGTHS[None]:
        return _gtin(None, data, layout)
    if _digits(data[:2]):
        try:
            return _gs1(None, data)
        except ScanError as exc:
            if exc.reason == "check_digit":
                raise
    raise ScanError("unknown_format", f"unrecognised barcode {data[:40]!r}")


def _digits(s: str) -> bool:
    # isdigit() alone accepts "²" and "١"; barcodes carry ASCII digits only.
    return s.isascii() and s.isdigit()


def _gtin(symbology: str | None, data: str, layout: VariableMeasureLayout) -> Scan:
    if symbology == "E3" and _digits(data) and len(data) in (15, 18):
        data = data[:13]  # EAN-13 + 2- or 5-digit add-on (periodicals): keep the GTIN
    if not _digits(data) or len(data) not in _GTIN_LENGTHS[symbology]:
        raise ScanError("malformed", f"{data[:40]!r} is not a GTIN for this symbology")
    expected = gs1_standard_check_digit(data[:-1])
    if int(data[-1]) != expected:
        raise ScanError(
            "check_digit", f"wrong check digit in {data}: expected {expected}, got {data[-1]}"
        )
    try:
        gtin = Gtin.parse(data)
    except ParseError as exc:
        raise ScanError("malformed", str(exc)) from None
    gtin14 = gtin.as_gtin_14()
    rule = layout.rule_for(data) if gtin.format == GtinFormat.GTIN_13 else None
    if rule is None:
        return Scan("product", symbology, data, gtin=gtin14)
    vm = variable_measure.decode(data, rule)
    return Scan(
        "variable_measure",
        symbology,
        data,
        gtin=gtin14,
        item=vm.item,
        price_fen=vm.value if vm.measure == "price" else None,
        weight_g=vm.value if vm.measure == "weight" else None,
    )


def _gs1(symbology: str | None, data: str) -> Scan:
    body = data.lstrip(GS)  # some scanners send the leading FNC1 as GS too
    if not body or not body.isascii() or not body.replace(GS, "").isprintable():
        raise ScanError("malformed_gs1", "GS1 data must be printable ASCII")
    try:
        message = GS1Message.parse(body, config=_GS1_CONFIG)
    except (ParseError, ValueError) as exc:
        raise ScanError("malformed_gs1", str(exc)) from None
    fields: dict[str, Any] = {}
    pairs: list[tuple[str, str]] = []
    for es in message.element_strings:
        ai = es.ai.ai
        pairs.append((ai, es.value))
        if ai in ("01", "02"):
            if es.gtin is None:
                raise ScanError("check_digit", es.gtin_error or f"bad GTIN {es.value}")
            fields.setdefault("gtin", es.gtin.as_gtin_14())
        elif ai == "17":
            fields.setdefault("expiry", es.date)  # biip applies "day 00 = end of month"
        elif ai == "15":
            fields.setdefault("best_before", es.date)
        elif ai == "10":
            fields.setdefault("batch", es.value)
        elif ai.startswith("310") and es.decimal is not None:
            fields.setdefault("weight_g", _scaled(es.decimal, 1000))  # kg -> g
        elif ai.startswith("392") and es.decimal is not None:
            fields.setdefault("price_fen", _scaled(es.decimal, 100))  # yuan -> fen
    return Scan("gs1", symbology, data, elements=tuple(pairs), **fields)


def _scaled(value: Decimal, factor: int) -> int:
    # 3104/3105 (0.1 g, 0.01 g) and 3923 (0.1 fen) round to the nearest whole unit.
    return int((value * factor).quantize(Decimal(1), rounding=ROUND_HALF_UP))
