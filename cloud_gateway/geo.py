"""Positions on the map: the one datum the cloud stores (GCJ-02), the transform at the edge,
and distances.

Every coordinate the cloud keeps is GCJ-02 ("Mars coordinates"), the datum every map a
resident or an owner in China uses: WeChat's `wx.getLocation({type: 'gcj02'})`, Amap and
Tencent Maps (where an owner reads off the shop's position), and the map links the resident
pages open. A browser's `navigator.geolocation` answers in WGS-84, so the resident page says
so (`datum=wgs84`) and the position is converted here, once, as it enters. Outside China the
two datums are the same (the transform is the identity there).

The transform is the published GCJ-02 offset formula; the inverse has no closed form and is
found by fixed-point iteration (well under a millimetre after a few rounds). Distances are
great-circle (haversine) between GCJ-02 points: the offset changes by centimetres across a
town, far below a delivery radius.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Datum = Literal["gcj02", "wgs84"]
DATUMS: tuple[Datum, ...] = ("gcj02", "wgs84")
EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)
_A = 6378245.0  # the Krasovsky ellipsoid the GCJ-02 formula is written for
_EE = 0.00669342162296594323


class GeoError(ValueError):
    """A position that is not one: out of range, not a number."""


@dataclass(frozen=True)
class Point:
    """A GCJ-02 position in degrees."""

    lat: float
    lon: float


def check(lat: float, lon: float) -> tuple[float, float]:
    if not (math.isfinite(lat) and math.isfinite(lon)) or not (
            -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise GeoError("a position is a latitude -90..90 and a longitude -180..180")
    return lat, lon


def in_china(lat: float, lon: float) -> bool:
    """The rough box in which GCJ-02 differs from WGS-84 (the formula's own bounds)."""
    return 72.004 <= lon <= 137.8347 and 0.8293 <= lat <= 55.8271


def _offset(lat: float, lon: float) -> tuple[float, float]:
    x, y = lon - 105.0, lat - 35.0
    s = math.sqrt(abs(x))
    d_lat = (-100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * s
             + (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2 / 3
             + (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2 / 3
             + (160.0 * math.sin(y / 12.0 * math.pi) + 320 * math.sin(y * math.pi / 30.0))
             * 2 / 3)
    d_lon = (300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * s
             + (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2 / 3
             + (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2 / 3
             + (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi))
             * 2 / 3)
    rad = lat / 180.0 * math.pi
    magic = 1 - _EE * math.sin(rad) ** 2
    sq = math.sqrt(magic)
    d_lat = (d_lat * 180.0) / ((_A * (1 - _EE)) / (magic * sq) * math.pi)
    d_lon = (d_lon * 180.0) / (_A / sq * math.cos(rad) * math.pi)
    return d_lat, d_lon


def wgs84_to_gcj02(lat: float, lon: float) -> Point:
    check(lat, lon)
    if not in_china(lat, lon):
        return Point(lat, lon)
    d_lat, d_lon = _offset(lat, lon)
    return Point(lat + d_lat, lon + d_lon)


def gcj02_to_wgs84(lat: float, lon: float) -> Point:
    """The WGS-84 point whose GCJ-02 image is (lat, lon), by fixed-point iteration."""
    check(lat, lon)
    if not in_china(lat, lon):
        return Point(lat, lon)
    w_lat, w_lon = lat, lon
    for _ in range(30):
        g = wgs84_to_gcj02(w_lat, w_lon)
        e_lat, e_lon = g.lat - lat, g.lon - lon
        w_lat, w_lon = w_lat - e_lat, w_lon - e_lon
        if abs(e_lat) < 1e-10 and abs(e_lon) < 1e-10:
            break
    return Point(w_lat, w_lon)


def to_stored(lat: float, lon: float, datum: Datum) -> Point:
    """A position as it enters the system, in the datum the cloud stores (GCJ-02)."""
    if datum == "wgs84":
        return wgs84_to_gcj02(lat, lon)
    check(lat, lon)
    return Point(lat, lon)


def distance_m(a: Point, b: Point) -> float:
    """Great-circle distance in metres (haversine)."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))
