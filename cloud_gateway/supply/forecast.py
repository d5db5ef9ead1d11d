"""Walk-in demand per store x item and weekday, fitted with statsforecast and stored.

Fitting happens as sales arrive (nightly, say), never at the cutoff: the cutoff reads the
stored `WeekdayRates` and does array arithmetic only (netting.py). Each series is first
classified by how often it sells (Syntetos & Boylan: average days between sales, ADI):

- never sold: rate 0 (its pre-orders still bring it);
- intermittent (ADI > 1.32): TSB (Teunter, Syntetos & Babai), which, unlike Croston,
  lets the probability of a sale decay when the item stops selling, so a dead line stops
  being ordered; one flat daily rate;
- otherwise: seasonal exponential smoothing with a 7-day season, alpha fitted per series
  (statsforecast's SeasonalExponentialSmoothingOptimized): one rate per weekday.

Why statsforecast (measured on this 2-core machine, docs/supply.md): its models run in
its compiled extension, no numba, so there is no JIT warm-up; a fit costs 10-25 us per
series; importing it costs about 1.5 s (pandas, scipy, statsmodels), paid only by the code
that fits, which is why this module imports it inside `fit_rates`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from .model import SupplyError

# Syntetos-Boylan cut-off between smooth/erratic and intermittent/lumpy demand.
ADI_INTERMITTENT = 1.32
MIN_DAYS = 14  # two weeks: the seasonal model needs at least one season per weekday, twice
TSB_ALPHA = 0.1  # TSB's two smoothing constants (demand size, probability): slow, stable

METHOD_NONE, METHOD_TSB, METHOD_SEASONAL_ES, METHOD_MEAN = 0, 1, 2, 3
METHODS = ("none", "tsb", "seasonal_es", "mean")

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class WeekdayRates:
    """Stored forecasts: expected walk-in units per day, by weekday (Monday = 0)."""

    rates: FloatArray  # (series, 7)
    methods: npt.NDArray[np.int8]  # (series,): METHODS index
    fitted_through: date  # the last day of history they saw

    def over(self, days: list[date]) -> FloatArray:
        """Expected units per series on each of `days`: (series, len(days))."""
        return self.rates[:, [d.weekday() for d in days]]


def classify(history: FloatArray) -> npt.NDArray[np.int8]:
    """Which method each series (row) gets; pure, no library."""
    sold_days = (history > 0).sum(axis=1)
    methods = np.full(history.shape[0], METHOD_SEASONAL_ES, dtype=np.int8)
    if history.shape[1] < MIN_DAYS:
        methods[:] = METHOD_MEAN
    else:
        adi = history.shape[1] / np.maximum(sold_days, 1)
        methods[adi > ADI_INTERMITTENT] = METHOD_TSB
    methods[sold_days == 0] = METHOD_NONE
    return methods


def fit_rates(history: FloatArray, last_day: date) -> WeekdayRates:
    """Fit every series (row of daily walk-in units, oldest first, the last column being
    `last_day`) and return its rates for the week after `last_day`."""
    if history.ndim != 2:
        raise SupplyError("history: expected a 2-D array (series x days)")
    if np.any(history < 0) or not np.all(np.isfinite(history)):
        raise SupplyError("history: daily sales must be finite and not negative")
    from statsforecast.models import TSB, SeasonalExponentialSmoothingOptimized

    methods = classify(history)
    rates = np.zeros((history.shape[0], 7))
    # The weekday of each of the next 7 days, in forecast order.
    next_weekdays = [(last_day + timedelta(days=k)).weekday() for k in range(1, 8)]
    mean_rows = methods == METHOD_MEAN
    rates[mean_rows] = history[mean_rows].mean(axis=1, keepdims=True)
    tsb = TSB(alpha_d=TSB_ALPHA, alpha_p=TSB_ALPHA)
    seasonal = SeasonalExponentialSmoothingOptimized(season_length=7)
    for row in np.flatnonzero(methods == METHOD_TSB):
        rates[row, :] = _mean(tsb.forecast(history[row], h=1))[0]
    for row in np.flatnonzero(methods == METHOD_SEASONAL_ES):
        rates[row, next_weekdays] = _mean(seasonal.forecast(history[row], h=7))
    np.maximum(rates, 0.0, out=rates)  # smoothing can dip below zero after a run of zeros
    return WeekdayRates(rates, methods, last_day)


def _mean(result: dict[str, Any]) -> FloatArray:
    mean: FloatArray = np.asarray(result["mean"], dtype=np.float64)
    return mean
