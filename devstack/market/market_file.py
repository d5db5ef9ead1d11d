"""MARKET.toml: stores, items, the order cycle and the simulation's own settings.

Errors name the file, the line and the column: TOML syntax errors as tomllib finds them;
a wrong or missing value at the line of its key (or of its table when the key is missing).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from cloud_gateway.supply.model import Cycle, Item, Store, SupplyError
from devstack.process import StackError

DEFAULT_MARKET = Path(__file__).with_name("default_market.toml")
_TIME = re.compile(r"^([01]\d|2[0-3]):00$")


class MarketError(StackError):
    """A market or demand file is wrong; the message says where (file:line:column)."""


@dataclass(frozen=True)
class ItemDemand:
    """Synthetic walk-in and pre-order demand of an item in a store of scale 1."""

    walk_in_per_day: float
    preorder_per_day: float
    intermittent: bool  # sells on some days only, several at a time


@dataclass(frozen=True)
class Market:
    stores: tuple[Store, ...]
    items: tuple[Item, ...]
    cycle: Cycle
    start: date  # the first day of history (warm-up), when no trace says otherwise
    warmup_days: int  # days of history before the first simulated day
    preorder_fridge_share: float  # pre-orders may take this share of a fridge
    alarm_days: dict[str, frozenset[int]] = field(default_factory=dict)  # store: sim days
    store_scale: dict[str, float] = field(default_factory=dict)
    demand: dict[str, ItemDemand] = field(default_factory=dict)


def load_market(path: Path) -> Market:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MarketError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_market(text, str(path))


def parse_market(text: str, name: str) -> Market:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MarketError(f"{name}: {exc}") from None
    return _Reader(text, name).market(raw)


class _Reader:
    def __init__(self, text: str, name: str) -> None:
        self.lines = text.splitlines()
        self.name = name

    def fail(self, table: str, index: int | None, key: str | None, why: str) -> MarketError:
        line, col = self.locate(table, index, key)
        where = f"[[{table}]] #{index + 1}" if index is not None else f"[{table}]"
        what = f"{where} {key}" if key else where
        return MarketError(f"{self.name}:{line}:{col}: {what}: {why}")

    def locate(self, table: str, index: int | None, key: str | None) -> tuple[int, int]:
        """Line and column (1-based) of `key` in the table (the n-th of an array of
        tables), or of the table's header, or 1:1 when neither is written."""
        header = re.compile(r"^\s*\[\[\s*" + re.escape(table) + r"\s*\]\]" if index is not None
                            else r"^\s*\[\s*" + re.escape(table) + r"\s*\]")
        seen, start = -1, None
        for n, line in enumerate(self.lines):
            if header.match(line):
                seen += 1
                if index is None or seen == index:
                    start = n
                    break
        if start is None:
            return 1, 1
        if key is not None:
            keyline = re.compile(r"^(\s*)" + re.escape(key) + r"\s*=")
            for n in range(start + 1, len(self.lines)):
                if re.match(r"^\s*\[", self.lines[n]):
                    break
                m = keyline.match(self.lines[n])
                if m:
                    return n + 1, len(m.group(1)) + 1
        return start + 1, 1

    def market(self, raw: dict[str, Any]) -> Market:
        for key in raw:
            if key not in ("cycle", "simulation", "stores", "items"):
                raise self.fail(key, None, None, "unknown table (cycle, simulation, stores, "
                                "items)")
        cycle_raw = raw.get("cycle", {})
        sim_raw = raw.get("simulation", {})
        cutoff = self.get(cycle_raw, "cycle", None, "cutoff", str, "23:00")
        if not _TIME.match(cutoff):
            raise self.fail("cycle", None, "cutoff", f"{cutoff!r}: expected a whole hour "
                            "such as \"23:00\"")
        try:
            cycle = Cycle(int(cutoff[:2]),
                          self.get(cycle_raw, "cycle", None, "lead_time_days", int, 1),
                          self.get(cycle_raw, "cycle", None, "review_days", int, 1),
                          self.get(cycle_raw, "cycle", None, "service_level", float, 0.95),
                          self.get(cycle_raw, "cycle", None, "tz", str, "Asia/Shanghai"))
        except SupplyError as exc:
            raise self.fail("cycle", None, None, str(exc)) from None
        self.unknown(cycle_raw, "cycle", None, {"cutoff", "lead_time_days", "review_days",
                                                 "service_level", "tz"})
        start_s = self.get(sim_raw, "simulation", None, "start", str, "2026-03-02")
        try:
            start = date.fromisoformat(start_s)
        except ValueError:
            raise self.fail("simulation", None, "start", f"{start_s!r}: expected YYYY-MM-DD"
                            ) from None
        warmup = self.get(sim_raw, "simulation", None, "warmup_days", int, 28)
        if warmup < 7:
            raise self.fail("simulation", None, "warmup_days", "at least 7 days of history")
        share = self.get(sim_raw, "simulation", None, "preorder_fridge_share", float, 0.5)
        if not 0 < share <= 1:
            raise self.fail("simulation", None, "preorder_fridge_share", "must be in (0, 1]")
        self.unknown(sim_raw, "simulation", None, {"start", "warmup_days",
                                                   "preorder_fridge_share"})
        stores, alarms, scale = [], {}, {}
        for k, s in enumerate(self.tables(raw, "stores")):
            sid = self.get(s, "stores", k, "id", str)
            try:
                stores.append(Store(sid, self.get(s, "stores", k, "fridge_capacity", float),
                                    self.get(s, "stores", k, "pickup_capacity", int),
                                    self.get(s, "stores", k, "zone", str)))
            except SupplyError as exc:
                raise self.fail("stores", k, None, str(exc)) from None
            days = self.get(s, "stores", k, "alarm_days", list, [])
            if not all(isinstance(d, int) and d >= 0 for d in days):
                raise self.fail("stores", k, "alarm_days", "a list of day numbers (0 = the "
                                "first simulated day)")
            alarms[sid] = frozenset(days)
            scale[sid] = self.get(s, "stores", k, "demand_scale", float, 1.0)
            self.unknown(s, "stores", k, {"id", "fridge_capacity", "pickup_capacity", "zone",
                                          "alarm_days", "demand_scale"})
        items, demand = [], {}
        for k, i in enumerate(self.tables(raw, "items")):
            iid = self.get(i, "items", k, "id", str)
            g = self.get
            try:
                items.append(Item(iid, g(i, "items", k, "shelf_life_days", int),
                                  g(i, "items", k, "unit_lot", int, 1),
                                  g(i, "items", k, "case_pack", int),
                                  g(i, "items", k, "unit_volume", float),
                                  g(i, "items", k, "cost", int), g(i, "items", k, "price", int),
                                  g(i, "items", k, "chilled", bool),
                                  g(i, "items", k, "case_only", bool, False)))
            except SupplyError as exc:
                raise self.fail("items", k, None, str(exc)) from None
            demand[iid] = ItemDemand(g(i, "items", k, "walk_in_per_day", float, 0.0),
                                     g(i, "items", k, "preorder_per_day", float, 0.0),
                                     g(i, "items", k, "intermittent", bool, False))
            self.unknown(i, "items", k, {
                "id", "shelf_life_days", "unit_lot", "case_pack", "unit_volume", "cost",
                "price", "chilled", "case_only", "walk_in_per_day", "preorder_per_day",
                "intermittent", "name"})
        for what, seq in (("stores", stores), ("items", items)):
            ids = [x.id for x in seq]
            for k, x in enumerate(ids):
                if x in ids[:k]:
                    raise self.fail(what, k, "id", f"{x!r} appears twice")
        return Market(tuple(stores), tuple(items), cycle, start, warmup, share, alarms, scale,
                      demand)

    def tables(self, raw: dict[str, Any], name: str) -> list[dict[str, Any]]:
        value = raw.get(name)
        if not isinstance(value, list) or not value or not all(
                isinstance(v, dict) for v in value):
            raise self.fail(name, None, None, f"at least one [[{name}]] table is required")
        return value

    def get(self, table: dict[str, Any], name: str, index: int | None, key: str,
            kind: type[Any], default: Any = ...) -> Any:
        if key not in table:
            if default is ...:
                raise self.fail(name, index, None, f"{key} is required")
            return default
        value = table[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise self.fail(name, index, key, f"expected {_KINDS[kind]}, got {value!r}")
        return value

    def unknown(self, table: dict[str, Any], name: str, index: int | None,
                known: set[str]) -> None:
        for key in table:
            if key not in known:
                raise self.fail(name, index, key, f"unknown key (known: "
                                f"{', '.join(sorted(known))})")


_KINDS: dict[type[Any], str] = {int: "a whole number", float: "a number", str: "a string",
                                bool: "true or false", list: "a list"}
