"""The `receipt` event: a delivery received against its manifest, strict and consistent."""

from __future__ import annotations

from typing import Any

import pytest

from xiaodian.wire import retail
from xiaodian.wire.payloads import PayloadError

MILK = "06901234567892"
EGGS = "06901234567908"


def data(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "manifest": 7, "wave": "2026-12-07",
        "lines": [{"item": MILK, "expected": 5, "accepted": 3},
                  {"item": EGGS, "expected": 2, "accepted": 3}],
        "differences": [{"item": MILK, "issue": "short", "qty": 1},
                        {"item": MILK, "issue": "damaged", "qty": 1, "note": "破袋"},
                        {"item": EGGS, "issue": "over", "qty": 1}],
        "signed_by": "clerk-li", "signed_at": 1796600000.0}
    d.update(over)
    return d


def test_a_receipt_round_trips_through_its_builder() -> None:
    r = retail.parse_receipt(data())
    assert r.manifest == 7 and r.signed_by == "clerk-li"
    assert [(d.item, d.issue, d.qty) for d in r.differences] == [
        (MILK, "short", 1), (MILK, "damaged", 1), (EGGS, "over", 1)]
    assert retail.parse_receipt(retail.receipt_data(r)) == r


@pytest.mark.parametrize("over, match", [
    ({"lines": [{"item": MILK, "expected": 5, "accepted": 4},
                {"item": EGGS, "expected": 2, "accepted": 3}]}, "account for"),
    ({"differences": [{"item": EGGS, "issue": "short", "qty": 1}],
      "lines": [{"item": MILK, "expected": 5, "accepted": 5}]}, "not a line"),
    ({"differences": [{"item": MILK, "issue": "short", "qty": 1}] * 2,
      "lines": [{"item": MILK, "expected": 5, "accepted": 3}]}, "twice"),
    ({"lines": [{"item": MILK, "expected": 1, "accepted": 1}] * 2, "differences": []},
     "appears twice"),
    ({"differences": [{"item": MILK, "issue": "lost", "qty": 1}]}, "issue"),
    ({"wave": "2026-13-01"}, "wave"),
    ({"lines": []}, "lines"),
    ({"signed_by": "a\nb"}, "signed_by"),
])
def test_an_inconsistent_or_malformed_receipt_is_refused(over: dict[str, Any],
                                                          match: str) -> None:
    with pytest.raises(PayloadError, match=match):
        retail.parse_receipt(data(**over))
