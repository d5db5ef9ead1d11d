"""Replenishment against the whole-case baseline: `python -m bench.supply [--smoke]`.

Two markets, each simulated day by day (devstack.market: the real cloud_gateway.supply
engine, the edge's own stock ledger) under our policy and under the whole-case min/max
baseline on the same demand in the same run: the shipped default market and a seeded
random one. Then one cutoff of 1,000 stores x 300 items, timed: the plan with the why of
every line, from stored forecasts, pre-orders and the stock lots on hand; and the nightly
refit that stores those forecasts, per series.

Targets (issue #14): waste >= 35% below the baseline at equal or better fill rate, on both
markets; pre-orders filled >= 99.5%; 0 oversold lines; 0 orders accepted beyond capacity;
the cutoff planned in under 10 s. A missed target prints `FAILED ...` and exits 1.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import date, timedelta

import numpy as np

from bench.common import Table, check_figures, note
from cloud_gateway.supply.forecast import WeekdayRates, fit_rates
from cloud_gateway.supply.model import Cycle, FridgeState, Item, Store
from cloud_gateway.supply.planning import PreOrder, StockLot, plan_cutoff
from devstack.market.demand import synthetic
from devstack.market.market_file import DEFAULT_MARKET, Market, load_market
from devstack.market.random_market import random_market
from devstack.market.simulate import Figures, simulate

WASTE_CUT_PCT = 35.0
PREORDERS_FILLED_PCT = 99.5
PLAN_BUDGET_S = 10.0


def run_market(label: str, market: Market, days: int, seed: int,
               failed: list[str]) -> tuple[Figures, Figures]:
    demand = synthetic(market, market.warmup_days + days, seed)
    t0 = time.perf_counter()
    ours = simulate(market, demand, "ours", days)
    t1 = time.perf_counter()
    base = simulate(market, demand, "whole-case", days)
    t2 = time.perf_counter()
    o, b = ours.as_dict(), base.as_dict()
    rows = [(name, o[key], b[key]) for name, key in (
        ("waste % of units", "waste_units_pct"), ("waste % of cost", "waste_cost_pct"),
        ("fill rate %", "fill_rate_pct"), ("walk-in fill rate %", "walk_in_fill_pct"),
        ("lost walk-in units", "lost_sales_units"), ("pre-orders accepted", "preorders_accepted"),
        ("pre-orders filled %", "preorders_filled_pct"),
        ("pre-orders refused (capacity)", "preorders_refused_capacity"),
        ("pre-orders moved (fridge alarm)", "preorders_moved"),
        ("pre-orders refunded", "preorders_refunded"),
        ("chilled lines refused (alarm)", "chilled_lines_refused"),
        ("oversold lines", "oversold_lines"),
        ("accepted beyond capacity", "accepted_beyond_capacity"),
        ("units delivered", "delivered_units"))]
    rows.append(("simulation s", t1 - t0, t2 - t1))
    Table(f"{label}: {len(market.stores)} stores x {len(market.items)} items, {days} days "
          f"after {market.warmup_days} of history, seed {seed}",
          ("", "ours", "whole-case"), rows).print()
    for what, key in (("units", "waste_units_pct"), ("cost", "waste_cost_pct")):
        cut = 100.0 * (1 - o[key] / b[key]) if b[key] else 0.0
        note(f"{label}: waste ({what}) {cut:.1f}% below the baseline")
        if cut < WASTE_CUT_PCT:
            failed.append(f"{label}: waste ({what}) only {cut:.1f}% below the baseline")
    checks = (
        (o["fill_rate_pct"] >= b["fill_rate_pct"],
         f"fill rate {o['fill_rate_pct']} < baseline {b['fill_rate_pct']}"),
        (o["preorders_filled_pct"] >= PREORDERS_FILLED_PCT,
         f"pre-orders filled {o['preorders_filled_pct']}%"),
        (o["oversold_lines"] == 0, f"{o['oversold_lines']} oversold lines"),
        (o["accepted_beyond_capacity"] == 0 and b["accepted_beyond_capacity"] == 0,
         "orders accepted beyond capacity"),
    )
    failed += [f"{label}: {why}" for ok, why in checks if not ok]
    return ours, base


def big_cutoff(n_stores: int, n_items: int, fit_series: int, failed: list[str]
               ) -> tuple[float, float, float, int]:
    """One cutoff of n_stores x n_items; returns (plan s, lines s, fit us/series, lines)."""
    rng = random.Random(3)
    cut = date(2026, 12, 7)
    stores = [Store(f"S{k:04d}", float(rng.randrange(200, 420, 10)), rng.randrange(25, 60),
                    f"z{k % 50}") for k in range(n_stores)]
    items = [Item(f"I{k:03d}", rng.randint(1, 5), 2 if rng.random() < 0.15 else 1,
                  rng.choice((6, 8, 10, 12, 15, 20, 24)), rng.uniform(0.2, 1.2),
                  rng.randrange(150, 2500), rng.randrange(300, 4000), rng.random() < 0.8,
                  rng.random() < 0.08) for k in range(n_items)]
    # The nightly refit, timed on a sample of series of 8 weeks' sales; the cutoff reads
    # the stored rates, here the sample's rates repeated over every store x item.
    gen = np.random.default_rng(3)
    means = gen.gamma(0.8, 2.0, size=(fit_series, 1))
    history = gen.poisson(means * np.ones((1, 56))).astype(np.float64)
    history[: fit_series // 3] *= gen.random((fit_series // 3, 56)) < 0.3  # intermittent
    t0 = time.perf_counter()
    fitted = fit_rates(history, cut)
    fit_us = (time.perf_counter() - t0) / fit_series * 1e6
    n = n_stores * n_items
    reps = -(-n // fit_series)
    rates = WeekdayRates(np.tile(fitted.rates, (reps, 1))[:n],
                         np.tile(fitted.methods, reps)[:n], cut)
    pre = [PreOrder(str(k), stores[rng.randrange(n_stores)].id,
                    items[rng.randrange(n_items)].id, rng.randint(1, 3))
           for k in range(n_stores * 40)]
    lots = [StockLot(s.id, i.id, cut + timedelta(days=rng.randint(0, 4)), rng.randint(1, 6))
            for s in stores for i in items if rng.random() < 0.5]
    fridges = {s.id: FridgeState.OK for s in stores}
    for s in stores[:: max(1, n_stores // 20)]:
        fridges[s.id] = FridgeState.ALARM
    t0 = time.perf_counter()
    plan = plan_cutoff(cut, Cycle(), stores, items, pre, lots, rates, fridges)
    t1 = time.perf_counter()
    lines = plan.lines()
    t2 = time.perf_counter()
    Table(f"one cutoff: {n_stores:,} stores x {n_items} items, {len(pre):,} pre-orders, "
          f"{len(lots):,} lots on hand",
          ("", "value"),
          (("plan (arrays) s", t1 - t0), ("lines with their why s", t2 - t1),
           ("cutoff total s", t2 - t0), ("lines proposed", len(lines)),
           ("units proposed", int(plan.qty.sum())), ("pieces cut by fridge cap",
                                                      int(plan.cut.sum())),
           ("pre-orders refused (alarm)", len(plan.refused_preorders)),
           ("nightly refit us/series", fit_us),
           (f"nightly refit s, {n:,} series (from the sample)", fit_us * n / 1e6))).print()
    if t2 - t0 >= PLAN_BUDGET_S:
        failed.append(f"cutoff took {t2 - t0:.1f} s (budget {PLAN_BUDGET_S:g} s)")
    return t1 - t0, t2 - t0, fit_us, len(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--stores", type=int, default=1000, help="stores in the timed cutoff")
    ap.add_argument("--items", type=int, default=300, help="items in the timed cutoff")
    ap.add_argument("--smoke", action="store_true",
                    help="quick check (~15 s): 30 days; the same targets")
    args = ap.parse_args(argv)
    if args.smoke:
        args.days = 30
    failed: list[str] = []
    t0 = time.perf_counter()
    import statsforecast.models  # noqa: F401  (timed apart: the import, not the fits)

    note(f"statsforecast import {time.perf_counter() - t0:.2f} s (once per process)\n")
    default = load_market(DEFAULT_MARKET)
    ours_d, base_d = run_market("default market", default, args.days, args.seed, failed)
    seeded = random_market(args.seed + 6, stores=16, items=40)
    ours_r, base_r = run_market("random market", seeded, args.days, args.seed, failed)
    _, total_s, fit_us, _ = big_cutoff(args.stores, args.items, 20_000 if not args.smoke
                                       else 3_000, failed)
    for f in failed:
        note(f"FAILED {f}")

    def cut(o: Figures, b: Figures) -> float:
        return 100.0 * (1 - o.as_dict()["waste_units_pct"] / b.as_dict()["waste_units_pct"])

    code = check_figures([
        ("default waste cut %", cut(ours_d, base_d)),
        ("random waste cut %", cut(ours_r, base_r)),
        ("default fill rate ours %", ours_d.as_dict()["fill_rate_pct"]),
        ("default fill rate baseline %", base_d.as_dict()["fill_rate_pct"]),
        ("pre-orders filled %", min(ours_d.as_dict()["preorders_filled_pct"],
                                    ours_r.as_dict()["preorders_filled_pct"])),
        ("cutoff s", total_s),
        ("refit us/series", fit_us),
    ])
    return 1 if failed else code


if __name__ == "__main__":
    raise SystemExit(main())
