"""Order-up-to arithmetic over arrays of stores x items; pure, no library but numpy.

For a cutoff on day d, lead time L and review period R, an item with shelf life s must
cover the days d+1 .. d+L+min(R, s)-1: the lead-time days (sold from stock on hand) and
the days until the next delivery, but never past the day the delivered lot expires (what
it cannot sell before then is waste, not service). Stock counts only if it is still
sellable on the last of those days: a lot expiring earlier is left out, never netted
(docs/supply.md, "Netting").
"""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Above this mean the normal approximation of the Poisson quantile is close enough.
POISSON_EXACT_MAX = 60.0


def covered_days(cutoff: date, lead_time_days: int, review_days: int,
                 shelf_life_days: IntArray) -> tuple[list[date], npt.NDArray[np.bool_]]:
    """The days any item covers (d+1 ..) and a mask (items x days) of those each covers."""
    horizon = lead_time_days + review_days - 1
    days = [cutoff + timedelta(days=k) for k in range(1, horizon + 1)]
    offsets = np.arange(1, horizon + 1)
    last = lead_time_days - 1 + np.minimum(review_days, shelf_life_days)
    return days, offsets[None, :] <= last[:, None]


def last_covered(cutoff: date, lead_time_days: int, review_days: int,
                 shelf_life_days: IntArray) -> IntArray:
    """Per item, the ordinal of the last day it covers: stock must last until then."""
    span = lead_time_days - 1 + np.minimum(review_days, shelf_life_days)
    return (cutoff.toordinal() + span).astype(np.int64)


def poisson_quantile(mean: FloatArray, q: float) -> FloatArray:
    """Smallest k with P(Poisson(mean) <= k) >= q, elementwise: how many pieces meet
    demand with probability q. Small means exactly (a shop's usual case); large means by
    the normal approximation with continuity correction."""
    out = np.zeros_like(mean)
    small = mean <= POISSON_EXACT_MAX
    m = mean[small]
    if m.size:
        pmf = np.exp(-m)
        cdf = pmf.copy()
        k_out = np.zeros_like(m)
        open_ = cdf < q
        k = 0
        kmax = int(POISSON_EXACT_MAX + 8 * math.sqrt(POISSON_EXACT_MAX)) + 1
        while open_.any() and k < kmax:
            k += 1
            pmf = pmf * m / k
            cdf = cdf + pmf
            k_out[open_] = k
            open_ &= cdf < q
        out[small] = k_out
    big = ~small
    if big.any():
        from statistics import NormalDist

        z = NormalDist().inv_cdf(q)
        out[big] = np.ceil(mean[big] + z * np.sqrt(mean[big]) - 0.5)
    return out


def round_up_to_lot(need: FloatArray, lot: IntArray) -> IntArray:
    """Pieces to order: `need` (clipped at 0) rounded up to a multiple of the lot."""
    lots = np.ceil(np.maximum(need, 0.0) / lot - 1e-9)
    qty: IntArray = (lots * lot).astype(np.int64)
    return qty


def round_down_to_lot(qty: FloatArray, lot: IntArray) -> IntArray:
    lots = np.floor(np.maximum(qty, 0.0) / lot + 1e-9)
    out: IntArray = (lots * lot).astype(np.int64)
    return out
