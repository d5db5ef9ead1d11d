"""The contract's one base error, `WireError`; `CodeError` is input refused with a reason."""

from __future__ import annotations


class WireError(Exception):
    """Raised on purpose by the wire contract: bad input or a bound reached."""


class CodeError(WireError, ValueError):
    """Something read off a wire, a scanner or a person that cannot be used.

    `reason` is a short machine word (tests and logs switch on it); `message` is for people.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
