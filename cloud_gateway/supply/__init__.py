"""Replenishment: what each store receives at the next delivery (issue #14).

A pure core, time injected: `planning.plan_cutoff` takes the cutoff's date and everything
it needs as values (stores, items, pre-orders, stock lots, stored forecasts, fridge states)
and proposes, per store x item, a quantity with the reason for it as data (docs/supply.md).

- `model`: stores, items, the order cycle; the one `SupplyError`.
- `forecast`: walk-in demand per weekday, fitted with statsforecast (TSB for intermittent
  series, seasonal exponential smoothing otherwise) as sales arrive or nightly, stored;
  the cutoff only reads the stored rates.
- `netting`: the order-up-to arithmetic over arrays (stores x items): pre-orders + forecast
  + safety - stock still sellable, rounded up to the order lot.
- `capacity`: the fridge's volume cap, pre-orders before forecast.
- `admission`: pre-orders accepted only within a store's pickup and fridge capacity; the
  pre-orders of a store that cannot take chilled goods offered to another store or refunded.
"""
