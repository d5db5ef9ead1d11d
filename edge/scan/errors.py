"""Errors raised by scan parsing: a reason for code, a message for people.

A pickup code's errors belong to the contract (`xiaodian.wire.pickup.PickupError`); both are
`CodeError`s, so "any refused scan" is `except CodeError`.
"""

from __future__ import annotations

from typing import Literal

from xiaodian.wire.errors import CodeError
from xiaodian.wire.pickup import PickupError, PickupReason

__all__ = ["PickupError", "PickupReason", "PickupScanError", "ScanError", "ScanReason"]

ScanReason = Literal[
    "empty",  # nothing but whitespace
    "too_long",  # longer than any barcode we read
    "bad_symbology",  # "]" without a complete AIM identifier after it
    "check_digit",  # GTIN / EAN / UPC check digit wrong
    "measure_check_digit",  # the price/weight check digit inside an in-store code is wrong
    "malformed",  # content impossible for its symbology (letters in an EAN, wrong length)
    "malformed_gs1",  # GS1 element string that does not parse (bad AI, bad date, ...)
    "unknown_format",  # a symbology we read, carrying content that is none of ours
]


class ScanError(CodeError):
    """A scanner line that cannot be used, with a machine `reason` and a readable message."""


class PickupScanError(ScanError, PickupError):
    """A scanned line that is no well-formed pickup code: both a ScanError (`parse_scan`
    raises nothing else) and the contract's PickupError (the counter's refusal words)."""
