"""Names, kinds and errors shared by the PKI modules, and the one clock allowance they all use.

`PkiError` is the package's one base error; `CsrError` is one too, and still a ValueError.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from xiaodian.wire import ids

Kind = Literal["server", "store", "service"]

# Tolerate clocks that run a little behind the issuing machine's.
BACKDATE = dt.timedelta(minutes=5)


class PkiError(Exception):
    """Existing PKI files that cannot be used as they are; the message names the file."""


class CsrError(PkiError, ValueError):
    """A certificate signing request the CA refuses to sign; the message says why."""


def check_name(name: str) -> str:
    """Return `name` if it can be a certificate CN, file name and MQTT username."""
    # A certificate name becomes a file name and, on the broker, the MQTT username the ACL
    # puts into topics (%u): exactly a store id of the contract, no "/", "+", "#" or ".".
    if not ids.is_store_id(name):
        raise ValueError(
            f"certificate name {name!r}: use 1-64 letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name
