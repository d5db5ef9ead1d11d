"""The fridge's volume cap on a store's delivery; pure, over arrays of stores x items."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .netting import FloatArray, IntArray, round_down_to_lot


def cap_to_volume(qty: IntArray, floor: IntArray, lot: IntArray, volume: FloatArray,
                  free: FloatArray) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    """Cut each store's delivery to the fridge volume it has free.

    `qty` (stores x items) is what netting asked for, `floor` the part of it that serves
    pre-orders (never cut: those orders were accepted within capacity, admission.py),
    `volume` the fridge volume per piece (0 for goods that do not go in the fridge) and
    `free` (stores,) the volume left once the stock still there at delivery is counted.
    The forecast part of every line of an over-full store is scaled by one factor and
    rounded down to its lot, so the result fits. Returns the capped quantities and, per
    store, whether even the pre-orders alone exceed the space (a capacity breach
    admission should have prevented).
    """
    extra = (qty - floor).astype(np.float64)
    floor_vol = (floor * volume[None, :]).sum(axis=1)
    extra_vol = (extra * volume[None, :]).sum(axis=1)
    room = free - floor_vol
    factor = np.ones_like(room)
    over = (extra_vol > 0) & (extra_vol > room + 1e-9)
    factor[over] = np.clip(room[over] / extra_vol[over], 0.0, 1.0)
    scaled = np.where(over[:, None] & (volume[None, :] > 0),
                      round_down_to_lot(extra * factor[:, None], lot[None, :]), extra)
    capped: IntArray = (floor + scaled).astype(np.int64)
    breach: npt.NDArray[np.bool_] = room < -1e-9
    return capped, breach
