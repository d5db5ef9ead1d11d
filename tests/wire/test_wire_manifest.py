"""The delivery manifest message: strict, limits declared, on the orders leaf."""

from __future__ import annotations

import json
from typing import Any

import pytest

from xiaodian.wire import retail
from xiaodian.wire.payloads import PayloadError

TOPIC = "xd/v1/store-001/orders"
MILK = "06901234567892"


def body(**over: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "type": "manifest", "v": 1, "id": 7, "store": "store-001", "zone": "north",
        "wave": "2026-12-07", "delivery": "2026-12-08",
        "lines": [{"item": MILK, "name": "鲜牛奶", "qty": 5,
                   "lots": [{"batch": "D20261208", "expiry": "2026-12-12", "qty": 5}],
                   "serves": [{"order": 41, "qty": 2}, {"order": 42, "qty": 1,
                                                        "from_stock": 1}]}]}
    msg.update(over)
    return msg


def parse(msg: dict[str, Any]) -> retail.Downlink:
    return retail.parse_downlink(TOPIC, json.dumps(msg).encode())


def test_a_manifest_round_trips_on_the_orders_leaf() -> None:
    m = parse(body())
    assert isinstance(m, retail.Manifest)
    assert m.lines[0].serves[1] == retail.Serves(42, 1, 1)
    assert parse(json.loads(retail.manifest_payload(m))) == m


@pytest.mark.parametrize(("change", "error"), [
    ({"lines": []}, "length"),
    ({"zone": ""}, "length"),
    ({"wave": "2026-13-01"}, "YYYY-MM-DD"),
    ({"store": "store-002"}, "does not match"),
    ({"extra": 1}, "unknown field"),
])
def test_bad_manifests_are_refused(change: dict[str, Any], error: str) -> None:
    with pytest.raises(PayloadError, match=error):
        parse(body(**change))


def line(**over: Any) -> dict[str, Any]:
    ln: dict[str, Any] = body()["lines"][0]
    ln.update(over)
    return ln


@pytest.mark.parametrize(("ln", "error"), [
    (line(qty=6), "add up to 5, not 6"),
    (line(serves=[{"order": 41, "qty": 6}]), "serves more"),
    (line(serves=[{"order": 41, "qty": 1}, {"order": 41, "qty": 1}]), "served twice"),
    (line(lots=[]), "add up to 0, not 5"),
    # A line of 0 pieces is only for pre-orders served from the store's stock.
    (line(qty=0, lots=[], serves=[]), "0 pieces"),
    (line(qty=0, lots=[], serves=[{"order": 41, "qty": 0, "from_stock": 0}]), "0 pieces"),
    (line(qty=0, serves=[{"order": 41, "qty": 0, "from_stock": 2}]), "add up to 5, not 0"),
    (line(qty=0, lots=[], serves=[{"order": 41, "qty": 1, "from_stock": 2}]), "serves more"),
    (line(qty=-1, lots=[]), "expected `int` >= 0"),
    (line(lots=[{"batch": "B", "expiry": "2026-12-12", "qty": 1}] * 21), "length"),
    (line(lots=[{"batch": "B\x00", "expiry": "2026-12-12", "qty": 5}]), "control"),
    (line(item="milk"), "item"),
    (line(name=" "), "name"),
])
def test_bad_lines_are_refused(ln: dict[str, Any], error: str) -> None:
    with pytest.raises(PayloadError, match=error):
        parse(body(lines=[ln]))


def test_a_line_of_0_pieces_says_what_the_store_serves_from_its_stock() -> None:
    """The store's stock covers a pre-order in full: nothing comes, the line is there so
    the store holds the pieces (docs/contracts.md, "Delivery manifests")."""
    zero = line(item="06901234567823", name="豆腐", qty=0, lots=[],
                serves=[{"order": 43, "qty": 0, "from_stock": 3}])
    m = parse(body(lines=[line(), zero]))
    assert isinstance(m, retail.Manifest)
    assert (m.lines[1].qty, m.lines[1].lots, m.lines[1].serves) == (
        0, (), (retail.Serves(43, 0, 3),))
    assert parse(json.loads(retail.manifest_payload(m))) == m
    only = parse(body(lines=[zero]))  # a manifest may bring nothing at all
    assert isinstance(only, retail.Manifest) and only.lines[0].qty == 0


def test_an_item_listed_twice_is_refused() -> None:
    with pytest.raises(PayloadError, match="twice"):
        parse(body(lines=[line(), line()]))


def test_a_manifest_too_large_for_one_message_is_refused_before_sending() -> None:
    lots = (retail.ManifestLot("B" * 200, "2026-12-12", 1),)
    lines = tuple(retail.ManifestLine(f"in:{k}", "x" * 100, 1, lots,
                                      tuple(retail.Serves(k * 1000 + j, 0) for j in range(10)))
                  for k in range(1000))
    m = retail.Manifest(1, "store-001", "north", "2026-12-07", "2026-12-08", lines)
    with pytest.raises(PayloadError, match="at most"):
        retail.manifest_payload(m)
