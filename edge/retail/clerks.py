"""The clerks' own accounts at the terminal: an account name and a PIN, kept as a salted
PBKDF2 hash in the edge TOML (`[[retail.clerks]]`). A receipt is signed off by one of
them, so the cloud knows who counted the delivery (house rule: per-person accounts).

Make a hash with `python -m edge.retail.clerks`: it asks for the PIN and prints the line.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import os

SCHEME = "pbkdf2_sha256"
ITERATIONS = 200_000  # ~0.1 s on the terminal: a sign-off a minute, not a login a second


def hash_pin(pin: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, iterations)
    return "$".join((SCHEME, str(iterations), base64.b64encode(salt).decode(),
                     base64.b64encode(digest).decode()))


def check_hash(stored: str) -> None:
    """ValueError unless `stored` is a hash this module made."""
    parts = stored.split("$")
    if len(parts) != 4 or parts[0] != SCHEME or not parts[1].isdigit():
        raise ValueError(f"pin_hash: expected {SCHEME}$ITERATIONS$SALT$HASH"
                         " (python -m edge.retail.clerks)")
    base64.b64decode(parts[2], validate=True)
    base64.b64decode(parts[3], validate=True)


def pin_matches(stored: str, pin: str) -> bool:
    _, iterations, salt, digest = stored.split("$")
    got = hashlib.pbkdf2_hmac("sha256", pin.encode(), base64.b64decode(salt), int(iterations))
    return hmac.compare_digest(got, base64.b64decode(digest))


if __name__ == "__main__":  # pragma: no cover - a person at a keyboard
    first = getpass.getpass("PIN: ")
    if len(first) < 4 or first != getpass.getpass("again: "):
        raise SystemExit("the PINs differ, or are shorter than 4")
    print(f'pin_hash = "{hash_pin(first)}"')
