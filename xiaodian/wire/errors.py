"""The contract's one base error: input refused, with a reason for code and words for people."""

from __future__ import annotations


class CodeError(ValueError):
    """Something read off a wire, a scanner or a person that cannot be used.

    `reason` is a short machine word (tests and logs switch on it); `message` is for people.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
