"""GCJ-02 <-> WGS-84 on known points, the inverse's accuracy, distances."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud_gateway import geo

# (WGS-84 lat, lon) -> (GCJ-02 lat, lon): published reference pairs of the GCJ-02 formula
# (the eviltransform project's test points in Shanghai, Shenzhen and Beijing).
KNOWN = [
    ((31.1774276, 121.5272106), (31.17530398364597, 121.531541859215)),
    ((22.543847, 113.912316), (22.540796131694766, 113.9171764808363)),
    ((39.911954, 116.377817), (39.91334545536069, 116.38404722455657)),
]


@pytest.mark.parametrize(("wgs", "gcj"), KNOWN)
def test_known_points_both_ways(wgs: tuple[float, float], gcj: tuple[float, float]) -> None:
    got = geo.wgs84_to_gcj02(*wgs)
    assert got.lat == pytest.approx(gcj[0], abs=1e-9)
    assert got.lon == pytest.approx(gcj[1], abs=1e-9)
    back = geo.gcj02_to_wgs84(*gcj)
    # The inverse is iterative: within a centimetre (1e-7 degrees is about 1 cm).
    assert back.lat == pytest.approx(wgs[0], abs=1e-7)
    assert back.lon == pytest.approx(wgs[1], abs=1e-7)


def test_the_shift_in_shanghai_is_hundreds_of_metres() -> None:
    wgs = geo.Point(31.2304, 121.4737)
    gcj = geo.wgs84_to_gcj02(wgs.lat, wgs.lon)
    assert 300 < geo.distance_m(wgs, gcj) < 700


def test_outside_china_nothing_moves() -> None:
    assert geo.wgs84_to_gcj02(51.5, -0.12) == geo.Point(51.5, -0.12)
    assert geo.gcj02_to_wgs84(35.68, 139.76 + 0.5) == geo.Point(35.68, 140.26)


@given(st.floats(18.0, 53.0), st.floats(74.0, 134.0))
def test_inverse_round_trips(lat: float, lon: float) -> None:
    g = geo.wgs84_to_gcj02(lat, lon)
    w = geo.gcj02_to_wgs84(g.lat, g.lon)
    assert abs(w.lat - lat) < 1e-7 and abs(w.lon - lon) < 1e-7


def test_distance_and_bad_positions() -> None:
    # One degree of latitude is about 111.2 km on the mean sphere.
    assert geo.distance_m(geo.Point(30, 120), geo.Point(31, 120)) == pytest.approx(
        111_195, rel=1e-3)
    assert geo.distance_m(geo.Point(30, 120), geo.Point(30, 120)) == 0
    for lat, lon in ((91, 0), (0, 181), (math.nan, 0), (0, math.inf)):
        with pytest.raises(geo.GeoError):
            geo.to_stored(lat, lon, "gcj02")
    assert geo.to_stored(31.0, 121.0, "gcj02") == geo.Point(31.0, 121.0)
    assert geo.to_stored(31.0, 121.0, "wgs84") == geo.wgs84_to_gcj02(31.0, 121.0)
