"""Chinese in-store variable-measure codes (GB/T 18283): EAN-13 with prefix 20-29.

A scale prints an EAN-13 whose first two digits say "in-store code", followed by the
store's item number and the price (fen) or weight (grams) of this pack, sometimes
with a check digit over the price/weight, then the usual EAN-13 check digit. Where
each part sits is a store decision (it is set in the scale), so it is a layout table
here, written as a 13-character pattern:

    P  prefix (the first two digits, matched against `prefixes`)
    I  item number (contiguous)
    V  value: price in fen or weight in grams, times `unit` (contiguous, 4-6 digits)
    K  check digit over V (GB/T 18283 appendix A = GS1 General Specifications 7.9.3/7.9.4;
       only for a 4- or 5-digit V)
    X  a digit we ignore
    C  EAN-13 check digit (always last)

The default is the format Chinese retail label scales commonly print: `PPIIIIIVVVVVC`,
2-digit flag + 5-digit item (PLU) + 5-digit total price in fen + check, for every prefix
20-29: `2012345012509` is item 12345 at 12.50 yuan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from biip.checksums import gs1_price_weight_check_digit, gs1_standard_check_digit

from edge.scan.errors import ScanError

Measure = Literal["price", "weight"]

IN_STORE_PREFIXES = tuple(f"2{d}" for d in range(10))
DEFAULT_PATTERN = "PPIIIIIVVVVVC"
_PATTERN = re.compile(r"PP(?:[IVKX])+C")


def price_weight_check_digit(value: str) -> int:
    """Check digit over a 4- or 5-digit price/weight field (GB/T 18283 appendix A).

    The digits are weighted per position by lookup tables ("2-", "3", "5+", "5-") rather
    than plain multiplication, so that any single-digit error and most transpositions
    change the result. The algorithm is the GS1 one, which biip implements; we call it.

    4 digits, weights 2- 2- 3 5-, check = (3 * sum) mod 10.  "0698" (6.98 yuan):
    2-(0)=0, 2-(6)=1, 3*9=27->7, 5-(8)=6; sum 14; 3*14 = 42 -> 2.
    5 digits, weights 5+ 2- 5- 5+ 2-, check = the d with 5-(d) = (10 - sum mod 10) mod 10.
    "01250" (12.50 yuan): 0 + 2 + 9 + 7 + 0 = 18 -> 2; 5-(7) = 2 -> 7.
    """
    return gs1_price_weight_check_digit(value)


@dataclass(frozen=True)
class VariableMeasureRule:
    """How one group of prefixes is laid out; see the module docstring for the pattern."""

    prefixes: tuple[str, ...] = IN_STORE_PREFIXES
    pattern: str = DEFAULT_PATTERN
    measure: Measure = "price"
    unit: int = 1  # V * unit = fen or grams (10 when a scale prints jiao or 10-gram steps)

    def __post_init__(self) -> None:
        if not self.prefixes:
            raise ValueError("prefixes: at least one prefix")
        for p in self.prefixes:
            if p not in IN_STORE_PREFIXES:
                raise ValueError(f"prefixes: {p!r} is not an in-store prefix 20-29")
        if len(set(self.prefixes)) != len(self.prefixes):
            raise ValueError("prefixes: listed twice")
        if len(self.pattern) != 13 or not _PATTERN.fullmatch(self.pattern):
            raise ValueError(
                f"pattern: {self.pattern!r} must be 13 of P I V K X C, 'PP' first, 'C' last"
            )
        for part in "IV":
            span = self._span(part)
            if span is None or self.pattern[span[0] : span[1]] != part * (span[1] - span[0]):
                raise ValueError(f"pattern: {self.pattern!r} needs one contiguous run of {part}")
        start, end = self._span("V") or (0, 0)
        if not 4 <= end - start <= 6:
            raise ValueError("pattern: the value (V) must be 4 to 6 digits")
        if self.pattern.count("K") > 1:
            raise ValueError("pattern: at most one K")
        if "K" in self.pattern and end - start not in (4, 5):
            raise ValueError("pattern: a value check digit (K) needs a 4- or 5-digit value")
        if self.measure not in ("price", "weight"):
            raise ValueError(f"measure: expected 'price' or 'weight', got {self.measure!r}")
        if self.unit < 1:
            raise ValueError("unit: must be a positive integer")

    def _span(self, part: str) -> tuple[int, int] | None:
        if part not in self.pattern:
            return None
        return self.pattern.index(part), self.pattern.rindex(part) + 1

    def digits(self, code: str, part: str) -> str:
        span = self._span(part)
        return "" if span is None else code[span[0] : span[1]]


@dataclass(frozen=True)
class VariableMeasureLayout:
    """A store's table of in-store code layouts; prefixes not listed are plain in-store items."""

    rules: tuple[VariableMeasureRule, ...] = (VariableMeasureRule(),)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for rule in self.rules:
            clash = seen.intersection(rule.prefixes)
            if clash:
                raise ValueError(f"rules: prefix {min(clash)} is in two rules")
            seen.update(rule.prefixes)

    def rule_for(self, gtin13: str) -> VariableMeasureRule | None:
        for rule in self.rules:
            if gtin13[:2] in rule.prefixes:
                return rule
        return None


DEFAULT_LAYOUT = VariableMeasureLayout()


@dataclass(frozen=True)
class VariableMeasure:
    """What an in-store code says: the item, and its price in fen or weight in grams."""

    item: str
    measure: Measure
    value: int  # fen when measure == "price", grams when "weight"


def decode(gtin13: str, rule: VariableMeasureRule) -> VariableMeasure:
    """Split a 13-digit code (EAN-13 check digit already verified) by `rule`."""
    value_digits = rule.digits(gtin13, "V")
    check = rule.digits(gtin13, "K")
    if check:
        expected = price_weight_check_digit(value_digits)
        if int(check) != expected:
            raise ScanError(
                "measure_check_digit",
                f"wrong {rule.measure} check digit in {gtin13}: "
                f"expected {expected} for {value_digits}, got {check}",
            )
    return VariableMeasure(rule.digits(gtin13, "I"), rule.measure, int(value_digits) * rule.unit)


def encode(rule: VariableMeasureRule, prefix: str, item: str, value: int) -> str:
    """The 13-digit code a scale would print (for tests, label printing and the simulator)."""
    if prefix not in rule.prefixes:
        raise ValueError(f"prefix {prefix!r} is not in this rule")
    if value % rule.unit:
        raise ValueError(f"value {value} is not a multiple of unit {rule.unit}")
    fields = {"I": item, "V": str(value // rule.unit)}
    out = list(rule.pattern)
    out[0:2] = prefix
    for part, digits in fields.items():
        span = rule._span(part)
        assert span is not None
        width = span[1] - span[0]
        if not (digits.isascii() and digits.isdigit()) or len(digits.zfill(width)) != width:
            raise ValueError(f"{part}: {digits!r} does not fit {width} digits")
        out[span[0] : span[1]] = digits.zfill(width)
    if "K" in rule.pattern:
        v = fields["V"].zfill(rule.pattern.count("V"))
        out[rule.pattern.index("K")] = str(price_weight_check_digit(v))
    text = "".join(out).replace("X", "0")
    return text[:12] + str(gs1_standard_check_digit(text[:12]))
