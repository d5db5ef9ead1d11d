"""Scanner lines to meaning: worked examples for each symbology and error, and a fuzz test."""

from __future__ import annotations

import contextlib
from datetime import date

import pytest
from biip.checksums import gs1_standard_check_digit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.scan import DEFAULT_LAYOUT, ScanError, parse_scan
from edge.scan.aim import split_aim

GS = "\x1d"
FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_worked_gtins_have_the_check_digits_we_claim() -> None:
    # Independent of parse_scan: biip's GS1 mod-10 over the payload.
    assert gs1_standard_check_digit("690123456789") == 2
    assert gs1_standard_check_digit("6901234") == 1
    assert gs1_standard_check_digit("03600029145") == 2


@pytest.mark.parametrize(
    ("line", "symbology", "gtin"),
    [
        ("]E06901234567892\r\n", "E0", "06901234567892"),  # EAN-13, CR LF still on
        ("]E0036000291452", "E0", "00036000291452"),  # UPC-A as 12 digits
        ("]E00036000291452", "E0", "00036000291452"),  # UPC-A as EAN-13 with leading 0
        ("]E469012341", "E4", "00000069012341"),  # EAN-8
        ("]E3690123456789212", "E3", "06901234567892"),  # EAN-13 + 2-digit add-on
        ("6901234567892", None, "06901234567892"),  # scanner without AIM identifiers
    ],
)
def test_products(line: str, symbology: str | None, gtin: str) -> None:
    scan = parse_scan(line)
    assert (scan.kind, scan.symbology, scan.gtin) == ("product", symbology, gtin)
    assert scan.price_fen is None and scan.weight_g is None


def test_bytes_are_accepted() -> None:
    assert parse_scan(b"]E06901234567892\r").gtin == "06901234567892"


@pytest.mark.parametrize(
    "line",
    ["]E06901234567893", "]E469012342", "]E0036000291453", "6901234567890", "]I116901234567890"],
)
def test_wrong_gtin_check_digit(line: str) -> None:
    with pytest.raises(ScanError) as exc:
        parse_scan(line)
    assert exc.value.reason == "check_digit"
    assert "expected" in exc.value.message


def test_gs1_128_with_gtin_expiry_batch_and_net_weight() -> None:
    line = f"]C101069012345678921726050010L2406A{GS}3103001250"
    scan = parse_scan(line)
    assert scan.kind == "gs1" and scan.symbology == "C1"
    assert scan.gtin == "06901234567892"
    assert scan.expiry == date(2026, 5, 31)  # GS1: day 00 means the last day of the month
    assert scan.batch == "L2406A"
    assert scan.weight_g == 1250  # 3103: kg with 3 decimals
    assert scan.elements == (
        ("01", "06901234567892"),
        ("17", "260500"),
        ("10", "L2406A"),
        ("3103", "001250"),
    )


def test_gs1_datamatrix_with_gs_separators_best_before_and_price() -> None:
    # Leading GS (FNC1 sent as GS by some scanners) and a GS after the variable-length batch.
    line = f"]d2{GS}0106901234567892{GS}1526123110BATCH7{GS}3922001299"
    scan = parse_scan(line)
    assert (scan.kind, scan.symbology, scan.gtin) == ("gs1", "d2", "06901234567892")
    assert scan.best_before == date(2026, 12, 31) and scan.expiry is None
    assert scan.batch == "BATCH7"
    assert scan.price_fen == 1299  # 3922: yuan with 2 decimals
    assert scan.symbology_name == "GS1 DataMatrix"


def test_gs1_qr_and_sub_gram_weight_rounding() -> None:
    scan = parse_scan("]Q301069012345678923105001235")  # 0.01235 kg = 12.35 g
    assert scan.weight_g == 12


def test_gs1_without_aim() -> None:
    assert parse_scan("01069012345678921726053110X1").batch == "X1"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("]C10106901234567893", "check_digit"),  # AI 01 with a wrong check digit
        ("]C1010690123456789217261399", "malformed_gs1"),  # month 13
        ("]C1ABC", "malformed_gs1"),
        (f"]C1{GS}", "malformed_gs1"),
        ("]C10106901234567892\x07", "malformed_gs1"),  # control character
        ("]d20106901234567892主", "malformed_gs1"),
        ("]E006901234567892", "malformed"),  # 14 digits under EAN-13
        ("]E069012345678A2", "malformed"),
        ("]E4", "malformed"),
        ("]E0٦٩٠١٢٣٤٥٦٧٨٩٢", "malformed"),  # Arabic-Indic digits are digits to Python only
        ("]Q1https://example.com/", "unknown_format"),
        ("hello", "unknown_format"),
        ("12345", "unknown_format"),
        ("]", "bad_symbology"),
        ("]E", "bad_symbology"),
        ("  \r\n", "empty"),
        ("9" * 600, "too_long"),
    ],
)
def test_errors(line: str, reason: str) -> None:
    with pytest.raises(ScanError) as exc:
        parse_scan(line)
    assert exc.value.reason == reason


def test_symbologies_we_do_not_interpret_pass_through() -> None:
    scan = parse_scan("]A0SHELF-12")
    assert (scan.kind, scan.symbology, scan.data) == ("unknown", "A0", "SHELF-12")
    assert scan.symbology_name == "Code 39"


def test_split_aim() -> None:
    assert split_aim("]E0123") == ("E0", "123")
    assert split_aim("123") == (None, "123")


def test_to_dict_is_json_ready() -> None:
    d = parse_scan("]C1010690123456789217260500").to_dict()
    assert d["expiry"] == "2026-05-31" and d["kind"] == "gs1" and d["pickup"] is None


# Material close to real scans finds more paths than uniform text.
_prefixes = st.sampled_from(
    ["", "]E0", "]E4", "]E3", "]C1", "]d2", "]Q1", "]Q3", "]I1", "]A0", "]"]
)
_bodies = st.one_of(
    st.text(max_size=80),
    st.text(alphabet="0123456789", max_size=40),
    st.text(alphabet="0123456789\x1dABCabc", max_size=60),
    st.builds(
        lambda s: "PK1:" + s, st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ234567=a", max_size=150)
    ),
    st.builds(lambda s: "2" + s, st.text(alphabet="0123456789", min_size=12, max_size=12)),
)


@FAST
@given(_prefixes, _bodies)
def test_never_raises_anything_but_scan_error(prefix: str, body: str) -> None:
    try:
        scan = parse_scan(prefix + body)
    except ScanError as exc:
        assert exc.reason and exc.message
    else:
        scan.to_dict()


@FAST
@given(st.binary(max_size=120))
def test_arbitrary_bytes_never_raise_anything_but_scan_error(raw: bytes) -> None:
    with contextlib.suppress(ScanError):
        parse_scan(raw, DEFAULT_LAYOUT)
