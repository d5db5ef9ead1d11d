"""Identifier syntax: the one definition every end checks ids against.

Every check is a full match on a `str` (`re.fullmatch`, never `match` with `$`, which lets a
trailing newline through) and every class is spelled out in ASCII, so "store-001\\n", "١٢٣"
(Arabic-Indic digits) and "ｓｔｏｒｅ" are refused everywhere. Ids go into MQTT topics, file
names, SQL rows and URLs, so none may hold "/", "+", "#", whitespace or control characters.

  store id    1-64 of A-Z a-z 0-9 _ -, first a letter or digit. No ".": a store id is the
              CN of the store's client certificate and its MQTT username, and `xiaodian.pki`
              certifies no name with a dot in it.
  device id   1-64 of A-Z a-z 0-9 . _ -, first a letter or digit: fridges, scanners and the
              agent's own streams ("alerts"). Also command ids and configuration names
              (cloud worker, shared-subscription group, alert contacts).
  key id      1-64 of A-Z a-z 0-9 . _ -: the `kid` of a command-signing key.
  order id    the decimal text of an order number: 1-18 ASCII digits (below 2**63, an
              SQLite INTEGER); in JSON an order id is an integer.
  movement id 8-64 of A-Z a-z 0-9 _ -: a stock movement's id (a uuid4 hex on the edge).
  item id     a GTIN-14 (14 digits) or a store's own item, "in:" and 1-10 digits.
"""

from __future__ import annotations

import re
from typing import Annotated, TypeGuard

import msgspec

MAX_ID_CHARS = 64

STORE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
COMMAND_ID = DEVICE_ID
NAME = DEVICE_ID
KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
ORDER_ID = re.compile(r"[0-9]{1,18}")
MOVEMENT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
ITEM_ID = re.compile(r"[0-9]{14}|in:[0-9]{1,10}")


def _full(pattern: re.Pattern[str], value: object) -> TypeGuard[str]:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def is_store_id(value: object) -> TypeGuard[str]:
    """A store id: what `xiaodian.pki` can certify and the broker's ACL can substitute."""
    return _full(STORE_ID, value)


def is_device_id(value: object) -> TypeGuard[str]:
    """A device id (fridge, scanner, or one of the agent's own streams)."""
    return _full(DEVICE_ID, value)


def is_command_id(value: object) -> TypeGuard[str]:
    return _full(COMMAND_ID, value)


def is_name(value: object) -> TypeGuard[str]:
    """A configuration name: a cloud worker, a shared-subscription group, an alert contact."""
    return _full(NAME, value)


def is_key_id(value: object) -> TypeGuard[str]:
    """The id of a command-signing key (`kid`)."""
    return _full(KEY_ID, value)


def is_order_id(value: object) -> TypeGuard[str]:
    """The decimal text of an order id, as in a URL path or a command line."""
    return _full(ORDER_ID, value)


def is_movement_id(value: object) -> TypeGuard[str]:
    return _full(MOVEMENT_ID, value)


def is_item_id(value: object) -> TypeGuard[str]:
    return _full(ITEM_ID, value)


# ---------------------------------------------------------------- as field types
#
# The same rules as msgspec field constraints, for the message Structs of the contract.
# msgspec applies `pattern` with `re.search`, hence the anchors; `\Z` (not `$`) refuses a
# trailing newline.


def _field(pattern: re.Pattern[str]) -> msgspec.Meta:
    return msgspec.Meta(pattern=rf"\A(?:{pattern.pattern})\Z")


StoreId = Annotated[str, _field(STORE_ID)]
DeviceId = Annotated[str, _field(DEVICE_ID)]
ItemId = Annotated[str, _field(ITEM_ID)]
MovementId = Annotated[str, _field(MOVEMENT_ID)]
# An order id in JSON: an integer below 2**63 (an SQLite INTEGER).
OrderNumber = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
