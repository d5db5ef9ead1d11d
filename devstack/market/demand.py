"""Demand: walk-in sales and pre-orders per store, item, day and hour, synthetic (seeded)
or read from a DEMAND.csv trace (docs/supply.md, "DEMAND.csv")."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from .market_file import Market, MarketError

WALK_IN, PREORDER = "walk_in", "preorder"
COLUMNS = ("store", "item", "date", "hour", "channel", "qty")
# Share of a day's walk-in sales per hour (morning, lunch and evening peaks; shut at night).
HOURLY = np.array([0, 0, 0, 0, 0, 0, 1, 4, 7, 5, 4, 6, 7, 5, 4, 4, 5, 8, 10, 9, 7, 5, 3, 1],
                  dtype=np.float64)
HOURLY /= HOURLY.sum()
# Weekday multipliers (Monday first): weekends busier.
WEEKDAY = np.array([0.9, 0.9, 0.95, 1.0, 1.1, 1.3, 1.25])


@dataclass(frozen=True)
class Event:
    hour: int
    channel: str
    store: str
    item: str
    qty: int


@dataclass(frozen=True)
class Demand:
    start: date  # day 0
    days: list[list[Event]]  # per day, in hour order

    def on(self, day: int) -> list[Event]:
        return self.days[day] if day < len(self.days) else []


def synthetic(market: Market, days: int, seed: int) -> Demand:
    """Walk-in and pre-order demand for `days` days from market.start. Smooth items sell
    Poisson(rate x weekday x store scale) a day; intermittent ones sell on some days only,
    several at a time, with the same mean. Each store-item also gets its own weekday
    profile around the common one, so seasonality differs between lines."""
    rng = np.random.default_rng(seed)
    stores, items = market.stores, market.items
    n_s, n_i = len(stores), len(items)
    scale = np.array([market.store_scale.get(s.id, 1.0) for s in stores])
    walk = np.array([market.demand[i.id].walk_in_per_day if i.id in market.demand else 0.0
                     for i in items])
    pre = np.array([market.demand[i.id].preorder_per_day if i.id in market.demand else 0.0
                    for i in items])
    inter = np.array([market.demand[i.id].intermittent if i.id in market.demand else False
                      for i in items])
    profile = WEEKDAY[None, None, :] * rng.uniform(0.85, 1.15, size=(n_s, n_i, 7))
    size = 3.0  # mean pieces when an intermittent item sells
    out: list[list[Event]] = []
    for d in range(days):
        wd = (market.start + timedelta(days=d)).weekday()
        mean = walk[None, :] * scale[:, None] * profile[:, :, wd]
        smooth = rng.poisson(mean)
        p_sell = np.minimum(mean / size, 1.0)
        lumpy = (rng.random((n_s, n_i)) < p_sell) * (1 + rng.poisson(size - 1, (n_s, n_i)))
        units = np.where(inter[None, :], lumpy, smooth)
        orders = rng.poisson(pre[None, :] * scale[:, None] * profile[:, :, wd])
        events: list[Event] = []
        for s, i in zip(*np.nonzero(units), strict=True):
            hours = rng.multinomial(int(units[s, i]), HOURLY)
            events += [Event(int(h), WALK_IN, stores[s].id, items[i].id, int(hours[h]))
                       for h in np.flatnonzero(hours)]
        for s, i in zip(*np.nonzero(orders), strict=True):
            for _ in range(int(orders[s, i])):
                qty = 1 + int(rng.random() < 0.3)
                events.append(Event(int(rng.integers(7, 23)), PREORDER, stores[s].id,
                                    items[i].id, qty))
        events.sort(key=lambda e: (e.hour, e.channel, e.store, e.item))
        out.append(events)
    return Demand(market.start, out)


def load_demand(path: Path, market: Market) -> Demand:
    """Read DEMAND.csv; every error names the file, line and column."""
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise MarketError(f"{path}: cannot read: {exc.strerror}") from None
    stores = {s.id for s in market.stores}
    items = {i.id for i in market.items}
    rows: list[tuple[date, Event]] = []
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise MarketError(f"{path}:1:1: empty file: expected the header "
                              f"{','.join(COLUMNS)}") from None
        except csv.Error as exc:
            raise MarketError(f"{path}:1:1: {exc}") from None
        if [h.strip() for h in header] != list(COLUMNS):
            raise MarketError(f"{path}:1:1: header {','.join(header)!r}: expected "
                              f"{','.join(COLUMNS)}")
        try:
            for row in reader:
                line = reader.line_num
                if not row or row == [""]:
                    continue
                rows.append(_row(path, line, row, stores, items))
        except csv.Error as exc:
            raise MarketError(f"{path}:{reader.line_num}:1: {exc}") from None
    if not rows:
        raise MarketError(f"{path}: no demand rows after the header")
    start = min(d for d, _ in rows)
    n = (max(d for d, _ in rows) - start).days + 1
    days: list[list[Event]] = [[] for _ in range(n)]
    for d, e in rows:
        days[(d - start).days].append(e)
    for events in days:
        events.sort(key=lambda e: (e.hour, e.channel, e.store, e.item))
    return Demand(start, days)


def _row(path: Path, line: int, row: list[str], stores: set[str], items: set[str]
         ) -> tuple[date, Event]:
    def bad(col: int, why: str) -> MarketError:
        return MarketError(f"{path}:{line}:{col + 1}: {COLUMNS[col]}: {why}")

    if len(row) != len(COLUMNS):
        raise MarketError(f"{path}:{line}:1: {len(row)} fields, expected {len(COLUMNS)} "
                          f"({','.join(COLUMNS)})")
    store, item, day_s, hour_s, channel, qty_s = (c.strip() for c in row)
    if store not in stores:
        raise bad(0, f"{store!r} is not a store of the market")
    if item not in items:
        raise bad(1, f"{item!r} is not an item of the market")
    try:
        day = date.fromisoformat(day_s)
    except ValueError:
        raise bad(2, f"{day_s!r}: expected YYYY-MM-DD") from None
    if not hour_s.isdigit() or not 0 <= int(hour_s) <= 23:
        raise bad(3, f"{hour_s!r}: expected an hour 0-23")
    if channel not in (WALK_IN, PREORDER):
        raise bad(4, f"{channel!r}: expected {WALK_IN} or {PREORDER}")
    if not qty_s.isdigit() or int(qty_s) < 1:
        raise bad(5, f"{qty_s!r}: expected a whole number of pieces, at least 1")
    return day, Event(int(hour_s), channel, store, item, int(qty_s))


def write_demand(path: Path, demand: Demand) -> None:
    """The trace format, so a synthetic market can be exported, edited and replayed."""
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for d, events in enumerate(demand.days):
            day = (demand.start + timedelta(days=d)).isoformat()
            for e in events:
                w.writerow((e.store, e.item, day, e.hour, e.channel, e.qty))
