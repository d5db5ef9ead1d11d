"""In-store variable-measure codes (GB/T 18283): layouts, check digits, TOML loading."""

from __future__ import annotations

from pathlib import Path

import pytest
from biip.checksums import gs1_standard_check_digit
from hypothesis import given
from hypothesis import strategies as st

from edge.scan import (
    DEFAULT_LAYOUT,
    ScanError,
    VariableMeasureLayout,
    VariableMeasureRule,
    parse_scan,
    price_weight_check_digit,
)
from edge.scan.variable_measure import decode, encode
from xiaodian.config import ConfigError, build, load_config

WEIGHT_28 = VariableMeasureRule(prefixes=("28",), measure="weight")
STRUCTURE_2 = VariableMeasureRule(prefixes=("22",), pattern="PPIIIIIKVVVVC")  # price + check
STORE = VariableMeasureLayout(
    rules=(
        VariableMeasureRule(prefixes=("20", "21")),
        STRUCTURE_2,
        VariableMeasureRule(prefixes=("23",), pattern="PPIIIIKVVVVVC"),
        WEIGHT_28,
    )
)


# Worked by hand (see price_weight_check_digit's docstring for the steps).
@pytest.mark.parametrize(
    ("value", "check"),
    [("0698", 2), ("2875", 9), ("01250", 7), ("00000", 0), ("0000", 0)],
)
def test_price_check_digit_worked_examples(value: str, check: int) -> None:
    assert price_weight_check_digit(value) == check


def test_default_layout_price_in_fen() -> None:
    # 20 | 12345 | 01250 | 9: EAN check by hand = 41 -> 9.
    assert gs1_standard_check_digit("201234501250") == 9
    scan = parse_scan("]E02012345012509")
    assert (scan.kind, scan.item, scan.price_fen, scan.weight_g) == (
        "variable_measure",
        "12345",
        1250,
        None,
    )
    assert scan.gtin == "02012345012509"


def test_every_in_store_prefix_uses_the_default_rule() -> None:
    for p in range(20, 30):
        code = encode(DEFAULT_LAYOUT.rules[0], str(p), "00042", 698)
        assert parse_scan(code).price_fen == 698


def test_weight_in_grams() -> None:
    # 28 | 00123 | 00450 | 7: EAN check by hand = 53 -> 7.
    assert gs1_standard_check_digit("280012300450") == 7
    scan = parse_scan("]E02800123004507", STORE)
    assert (scan.kind, scan.item, scan.weight_g, scan.price_fen) == (
        "variable_measure",
        "00123",
        450,
        None,
    )


def test_price_with_its_own_check_digit() -> None:
    # 22 | 00042 | K=2 for "0698" | 0698 | 1: EAN check by hand = 79 -> 1.
    assert gs1_standard_check_digit("220004220698") == 1
    assert encode(STRUCTURE_2, "22", "00042", 698) == "2200042206981"
    assert parse_scan("]E02200042206981", STORE).price_fen == 698


def test_wrong_price_check_digit() -> None:
    # K changed 2 -> 3 and the EAN check recomputed (+3 at that position: 79 -> 82 -> 8),
    # so only the price check catches it: a misprinted or tampered price.
    assert gs1_standard_check_digit("220004230698") == 8
    with pytest.raises(ScanError) as exc:
        parse_scan("]E02200042306988", STORE)
    assert exc.value.reason == "measure_check_digit"
    assert "expected 2" in exc.value.message


def test_wrong_ean_check_digit_on_in_store_code() -> None:
    with pytest.raises(ScanError) as exc:
        parse_scan("]E02012345012508")
    assert exc.value.reason == "check_digit"


def test_five_digit_value_with_check_digit() -> None:
    rule = STORE.rules[2]
    code = encode(rule, "23", "0042", 1250)
    assert code[6] == "7"  # "01250" -> 7, as worked by hand
    assert decode(code, rule).value == 1250


def test_prefix_without_rule_is_a_plain_in_store_product() -> None:
    code = "250000000001"
    code += str(gs1_standard_check_digit(code))
    scan = parse_scan(code, STORE)
    assert (scan.kind, scan.item) == ("product", None)


def test_unit_scales_the_value() -> None:
    rule = VariableMeasureRule(prefixes=("21",), unit=10)  # scale prints jiao
    code = encode(rule, "21", "7", 1230)
    assert decode(code, rule).value == 1230


@given(
    st.sampled_from(STORE.rules),
    st.integers(0, 9999),
    st.integers(0, 9999),
)
def test_encode_decode_round_trip(rule: VariableMeasureRule, item: int, value: int) -> None:
    prefix = rule.prefixes[0]
    width = rule.pattern.count("I")
    item_digits = str(item % 10**width).zfill(width)
    code = encode(rule, prefix, item_digits, value)
    scan = parse_scan(code, STORE)
    assert scan.item == item_digits
    assert (scan.price_fen if rule.measure == "price" else scan.weight_g) == value


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"prefixes": ("30",)}, "prefixes"),
        ({"prefixes": ()}, "prefixes"),
        ({"prefixes": ("20", "20")}, "prefixes"),
        ({"pattern": "PPIIIIIVVVVV"}, "pattern"),  # 12 long
        ({"pattern": "PPIIVVVVVIIIC"}, "pattern"),  # item split in two
        ({"pattern": "PPIIIIIIIVVVC"}, "pattern"),  # value of 3 digits
        ({"pattern": "PPIIIKVVVVVVC"}, "pattern"),  # K over 6 digits
        ({"pattern": "PPIIIIKKVVVVC"}, "pattern"),  # two K
        ({"unit": 0}, "unit"),
    ],
)
def test_rule_validation_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        VariableMeasureRule(**kwargs)  # type: ignore[arg-type]


def test_layout_refuses_a_prefix_in_two_rules() -> None:
    with pytest.raises(ValueError, match="rules: prefix 28"):
        VariableMeasureLayout(rules=(WEIGHT_28, VariableMeasureRule(prefixes=("28", "29"))))


def test_layout_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "layout.toml"
    path.write_text(
        '[[rules]]\nprefixes = ["20", "21"]\n\n'
        '[[rules]]\nprefixes = ["28"]\nmeasure = "weight"\npattern = "PPIIIIIVVVVVC"\n',
        encoding="utf-8",
    )
    layout = load_config(path, VariableMeasureLayout)
    assert layout.rules[1] == WEIGHT_28
    assert parse_scan("2800123004507", layout).weight_g == 450
    assert build({}, VariableMeasureLayout, "x.toml") == DEFAULT_LAYOUT


def test_layout_toml_error_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"rules\[0\]\.measure"):
        build({"rules": [{"prefixes": ["28"], "measure": "volume"}]}, VariableMeasureLayout, "l")
    with pytest.raises(ConfigError, match=r"rules\[0\]\.pattern"):
        build({"rules": [{"prefixes": ["28"], "pattern": "X"}]}, VariableMeasureLayout, "l")
