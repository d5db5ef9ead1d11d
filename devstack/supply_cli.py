"""`xiaodian supply simulate`: the market simulator from the command line (docs/supply.md).

Runs both policies on the same demand by default, so the baseline is always measured in
the same run; `--policy` picks one. `--json` prints the figures for scripts; otherwise a
table in the operator's language (zh-CN unless `--lang en`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloud_gateway import cli_supply
from cloud_gateway.supply.model import SupplyError
from devstack.market.market_file import DEFAULT_MARKET, MarketError, load_market
from xiaodian.i18n import N_, negotiate, translator

if TYPE_CHECKING:
    from devstack.market.simulate import Figures

# devstack.market.policies.POLICIES, spelled out: importing it (numpy, the engine) would
# add ~0.3 s to every `xiaodian` command's start.
POLICIES = ("ours", "whole-case")

# (figure, label): the table's rows, in this order.
ROWS = (
    ("waste_units_pct", N_("Waste, percent of units delivered")),
    ("waste_cost_pct", N_("Waste, percent of cost delivered")),
    ("fill_rate_pct", N_("Fill rate, percent of units asked for")),
    ("walk_in_fill_pct", N_("Walk-in fill rate, percent")),
    ("lost_sales_units", N_("Lost walk-in sales, units")),
    ("lost_sales_revenue", N_("Lost walk-in sales, revenue")),
    ("preorders_accepted", N_("Pre-orders accepted")),
    ("preorders_filled_pct", N_("Pre-orders filled, percent")),
    ("preorders_refused_capacity", N_("Pre-orders refused: store at capacity")),
    ("preorders_moved", N_("Pre-orders moved to another store (fridge alarm)")),
    ("preorders_refunded", N_("Pre-orders refunded (fridge alarm)")),
    ("chilled_lines_refused", N_("Chilled lines refused (fridge alarm)")),
    ("oversold_lines", N_("Oversold lines")),
    ("accepted_beyond_capacity", N_("Orders accepted beyond capacity")),
    ("delivered_units", N_("Units delivered")),
    ("gross_margin", N_("Gross margin (sales - cost delivered)")),
)
MONEY = {"lost_sales_revenue", "gross_margin"}


def register(sub: Any) -> None:
    p = sub.add_parser("supply", help="replenishment: order cycles, plans, manifests; simulate"
                       " a market of stores")
    cmds = p.add_subparsers(dest="supply_command", required=True, metavar="COMMAND")
    s = cmds.add_parser(
        "simulate", help="run our replenishment and the whole-case baseline over N days",
        description="Simulate a market day by day with the real replenishment engine and "
        "the edge's stock ledger; print waste, fill rate, lost sales, oversold lines and "
        "capacity refusals.")
    s.add_argument("--market", type=Path, default=DEFAULT_MARKET,
                   help="MARKET.toml (default: the market shipped with xiaodian)")
    s.add_argument("--demand", type=Path, default=None,
                   help="DEMAND.csv to replay (default: synthetic demand from --seed)")
    s.add_argument("--policy", choices=(*POLICIES, "both"), default="both",
                   help="ours, whole-case, or both in the same run (default)")
    s.add_argument("--days", type=int, default=60, help="days to simulate after the warm-up")
    s.add_argument("--seed", type=int, default=1, help="seed of the synthetic demand")
    s.add_argument("--json", action="store_true", help="print the figures as JSON")
    s.add_argument("--lang", default=None, help="table language: zh-CN (default) or en")
    s.add_argument("--write-demand", type=Path, default=None, metavar="CSV",
                   help="also write the demand used, in DEMAND.csv format")
    s.set_defaults(func=run_simulate)
    cli_supply.add(cmds)  # plan, cutoff, manifest, ...: the cycle in the cloud database


def run_simulate(args: argparse.Namespace) -> int:
    from devstack.market.demand import load_demand, synthetic, write_demand
    from devstack.market.simulate import simulate

    if args.days < 1:
        print("xiaodian supply simulate: --days must be at least 1", file=sys.stderr)
        return 2
    try:
        market = load_market(args.market)
        demand = (load_demand(args.demand, market) if args.demand is not None
                  else synthetic(market, market.warmup_days + args.days, args.seed))
        if args.write_demand is not None:
            write_demand(args.write_demand, demand)
        policies = POLICIES if args.policy == "both" else (args.policy,)
        results = [simulate(market, demand, p, args.days) for p in policies]
    except (MarketError, SupplyError) as exc:
        print(f"xiaodian supply simulate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        json.dump({"market": str(args.market), "demand": str(args.demand or "synthetic"),
                   "seed": args.seed, "results": [r.as_dict() for r in results]},
                  sys.stdout, indent=2)
        print()
        return 0
    print(table(results, args.lang))
    return 0


def table(results: list[Figures], lang: str | None) -> str:
    t = translator(negotiate(lang))
    first = results[0]
    head = t.gettext("%(days)s days from %(first)s") % {"days": first.days,
                                                        "first": first.first_day}
    names = {"ours": t.gettext("Ours"), "whole-case": t.gettext("Whole-case baseline")}
    rows = [[t.gettext(label)] + [_cell(t, key, r) for r in results] for key, label in ROWS]
    header = [head] + [names[r.policy] for r in results]
    widths = [max(_width(row[c]) for row in [header, *rows]) for c in range(len(header))]
    lines = []
    for k, row in enumerate([header, *rows]):
        cells = [_pad(row[0], widths[0], left=True)] + [
            _pad(c, w, left=False) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
    return "\n".join(lines)


def _cell(t: Any, key: str, r: Figures) -> str:
    value = r.as_dict()[key]
    if key in MONEY:
        return str(t.money(int(value)))
    if isinstance(value, float):
        return str(t.number(value, 1))
    return str(t.number(value, 0))


def _width(text: str) -> int:
    # CJK characters take two columns in a terminal.
    return sum(2 if "\u2e80" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef" else 1
               for ch in text)


def _pad(text: str, width: int, *, left: bool) -> str:
    gap = " " * (width - _width(text))
    return text + gap if left else gap + text
