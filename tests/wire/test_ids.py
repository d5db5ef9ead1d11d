"""Identifier syntax (xiaodian.wire.ids): one set of full-match checks used by every end."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xiaodian.wire import ids, payloads, retail
from xiaodian.wire.commands import CommandVerifier
from xiaodian.wire.payloads import PayloadError, store_of_topic
from xiaodian.wire.pickup import PickupCodec

KEY = bytes(range(32))

# Refused as every kind of id: a trailing newline (`$` with `match` let it through),
# unicode digits and letters, empty, too long, and characters with a meaning in topics,
# paths or shells.
REFUSED_EVERYWHERE = [
    "store-001\n",
    "store-001\r\n",
    "\nstore-001",
    "١٢٣",  # Arabic-Indic digits: str.isdigit() says yes
    "store-٠٠١",
    "ｓｔｏｒｅ",  # fullwidth letters
    "storé",
    "",
    "a" * 65,
    "a/b",
    "a+b",
    "a#b",
    "a b",
    "a\x00b",
    "-leading-dash",
    "_leading",
    ".leading",
]


@pytest.mark.parametrize("value", REFUSED_EVERYWHERE)
def test_refused_as_store_device_command_id_and_name(value: str) -> None:
    assert not ids.is_store_id(value)
    assert not ids.is_device_id(value)
    assert not ids.is_command_id(value)
    assert not ids.is_name(value)


@pytest.mark.parametrize("value", ["store-001", "S1", "a", "a" * 64, "north_7", "0x"])
def test_valid_store_ids(value: str) -> None:
    assert ids.is_store_id(value)
    assert ids.is_device_id(value)  # every store id would also do as a device id


def test_a_store_id_has_no_dot_but_a_device_id_may() -> None:
    # A store id is a certificate CN and MQTT username, and the PKI certifies no dots.
    assert not ids.is_store_id("a.b")
    assert not ids.is_store_id("store.001")
    assert ids.is_device_id("fridge.1")
    assert ids.is_command_id("cmd.2026-12-07")


def test_non_strings_are_not_ids() -> None:
    for value in (None, 1, b"store-001", ["store-001"]):
        assert not ids.is_store_id(value)
        assert not ids.is_device_id(value)
        assert not ids.is_order_id(value)


@pytest.mark.parametrize("value", ["a", "0123456789abcdef", "k.1_-", "a" * 64, "-x", ".x"])
def test_key_ids(value: str) -> None:
    assert ids.is_key_id(value)


@pytest.mark.parametrize("value", ["", "a" * 65, "k\n", "k/1", "ｋ"])
def test_bad_key_ids(value: str) -> None:
    assert not ids.is_key_id(value)


@pytest.mark.parametrize("value", ["0", "7", "123456789012345678"])
def test_order_ids(value: str) -> None:
    assert ids.is_order_id(value)


@pytest.mark.parametrize(
    "value", ["", "-1", "+1", " 1", "1\n", "1e3", "0x1", "١", "1234567890123456789", "1_000"]
)
def test_bad_order_ids(value: str) -> None:
    assert not ids.is_order_id(value)


def test_item_and_movement_ids() -> None:
    assert ids.is_item_id("06901234567892")
    assert ids.is_item_id("in:12345")
    for bad in ("0690123456789", "06901234567892\n", "٠٦٩٠١٢٣٤٥٦٧٨٩٢", "in:", "in:12345678901",
                "IN:1", "in:1\n"):
        assert not ids.is_item_id(bad), bad
    assert ids.is_movement_id("0123456789abcdef0123456789abcdef")
    for bad in ("short", "a" * 65, "abcdefgh\n", "abcd.efgh", "abcdéfgh"):
        assert not ids.is_movement_id(bad), bad


# ---------------------------------------------------------------- properties

_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
store_ids = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(_ALNUM),
    st.text(alphabet=_ALNUM + "_-", max_size=63),
)


@given(store_ids)
def test_generated_store_ids_pass_everywhere(store: str) -> None:
    assert ids.is_store_id(store)
    assert store_of_topic(f"xd/v1/{store}/events") == (store, "events")
    PickupCodec(store, KEY)


@given(store_ids, st.sampled_from(["\n", "\r", " ", ".", "/", "\x00", "٣", "é", "\u200b"]))
def test_one_stray_character_makes_a_store_id_invalid(store: str, stray: str) -> None:
    assert not ids.is_store_id(store + stray)
    assert not ids.is_store_id(stray + store)


@given(st.text(max_size=80))
def test_the_checks_agree_with_an_ascii_reference(value: str) -> None:
    ascii_alnum = re.compile(r"[A-Za-z0-9]", re.ASCII)
    def ref(extra: str) -> bool:
        return (1 <= len(value) <= 64 and bool(ascii_alnum.fullmatch(value[0]))
                and all(c in _ALNUM + extra for c in value))
    assert ids.is_store_id(value) == ref("_-")
    assert ids.is_device_id(value) == ref("_.-")


# ---------------------------------------------------------------- the wire modules use them


@pytest.mark.parametrize("store", ["store-001\n", "a.b", "١٢٣", "", "a" * 65])
def test_wire_modules_refuse_bad_store_ids(store: str) -> None:
    with pytest.raises(PayloadError):
        store_of_topic(f"xd/v1/{store}/events")
    with pytest.raises(ValueError, match="store id"):
        PickupCodec(store, KEY)
    with pytest.raises(ValueError, match="store id"):
        CommandVerifier({}, store, lambda: 0.0, None)  # type: ignore[arg-type]


def test_payload_device_ids_are_full_matches() -> None:
    def state(device: str) -> bytes:
        return payloads.state_payload("store-001", True, 1, 1.7e9, "0.1.0", [device])

    with pytest.raises(PayloadError, match=r"devices\[0\]: expected `str` matching regex"):
        payloads.parse("xd/v1/store-001/state", state("fridge-1\n"))
    parsed = payloads.parse("xd/v1/store-001/state", state("fridge.1"))
    assert isinstance(parsed, payloads.State) and parsed.devices == ("fridge.1",)
    with pytest.raises(PayloadError, match="bad item key"):
        retail.check_item("06901234567892\n", "item")


def test_legacy_id_pattern_match_is_a_full_match() -> None:
    # ID_PATTERN stays for callers still using `.match`; it must not accept a trailing "\n".
    assert payloads.ID_PATTERN.match("store-001")
    assert not payloads.ID_PATTERN.match("store-001\n")
    assert not payloads.ID_PATTERN.match("store-001/x")
