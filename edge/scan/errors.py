"""Errors raised by scan parsing: a reason for code, a message for people.

A pickup code's errors belong to the contract (`xiaodian.wire.pickup.PickupError`); both are
`CodeError`s, so "any refused scan" is `except CodeError`.
"""

from __future__ import annotations

from typing import Literal

from xiaodian.i18n import N_, Message
from xiaodian.wire.errors import CodeError
from xiaodian.wire.pickup import PickupError, PickupReason

__all__ = ["PickupError", "PickupReason", "PickupScanError", "ScanError", "ScanReason",
           "scan_words"]

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


# What the clerk reads for each reason (the exception's own message is for logs and the CLI).
SCAN_WORDS: dict[str, str] = {
    "empty": N_("Nothing was scanned."),
    "too_long": N_("Far too long for a barcode: scan it again."),
    "bad_symbology": N_("The scanner sent an incomplete barcode type: scan it again."),
    "check_digit": N_("The barcode's check digit is wrong: scan it again or type the number."),
    "measure_check_digit": N_("The price or weight on this scale label does not check out: "
                              "weigh the item again."),
    "malformed": N_("This is not a valid product barcode."),
    "malformed_gs1": N_("This GS1 barcode cannot be read (a wrong field or date)."),
    "unknown_format": N_("This code is neither a product nor a pickup code."),
}


def scan_words(reason: str) -> Message:
    return Message(SCAN_WORDS.get(reason, N_("This barcode cannot be used.")))
