"""Scanner lines to meaning: GTINs, GS1 data, in-store variable-measure codes, pickup codes.

Pure parsing (`parse_scan`), the store's variable-measure layout table, and pickup codes
verified offline (`PickupCodec`, `RedeemedCodes`). Formats are in docs/scanning.md.
"""

from edge.scan.errors import PickupError, ScanError
from edge.scan.parse import Scan, parse_scan
from edge.scan.redeemed import RedeemedCodes
from edge.scan.variable_measure import (
    DEFAULT_LAYOUT,
    VariableMeasureLayout,
    VariableMeasureRule,
    price_weight_check_digit,
)
from xiaodian.wire.pickup import (
    Ed25519PickupCodec,
    PickupBody,
    PickupCodec,
    PickupTicket,
    decode_pickup,
)

__all__ = [
    "DEFAULT_LAYOUT",
    "Ed25519PickupCodec",
    "PickupBody",
    "PickupCodec",
    "PickupError",
    "PickupTicket",
    "RedeemedCodes",
    "Scan",
    "ScanError",
    "VariableMeasureLayout",
    "VariableMeasureRule",
    "decode_pickup",
    "parse_scan",
    "price_weight_check_digit",
]
