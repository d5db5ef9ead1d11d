"""Errors raised by scan parsing and pickup-code checks: a reason for code, a message for people."""

from __future__ import annotations

from typing import Literal

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

PickupReason = Literal[
    "malformed",  # not a well-formed PK1 code (prefix, alphabet, length, padding bits)
    "oversize",  # longer than any code we issue: refused before decoding
    "wrong_store",  # issued for another store
    "unknown_key",  # signed with a key id this terminal does not hold
    "bad_mac",  # MAC or signature does not match: forged or altered
    "expired",  # past its expiry
    "already_redeemed",  # this order was already handed over
]


class ScanError(Exception):
    """A scanner line that cannot be used, with a machine `reason` and a readable message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class PickupError(ScanError):
    """A pickup code that is refused; `redeemed_at` is set for `already_redeemed`."""

    def __init__(
        self, reason: PickupReason, message: str, redeemed_at: float | None = None
    ) -> None:
        super().__init__(reason, message)
        self.redeemed_at = redeemed_at
