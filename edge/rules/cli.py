"""`xiaodian rules replay TRACE`: would we have alerted? The alert lifecycle as JSON lines."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge.rules.config import RulesConfig
from edge.rules.engine import RuleEngine
from edge.rules.trace import TraceError, read_trace, replay
from xiaodian.config import load_config


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rules = subparsers.add_parser("rules", help="cold-chain alert rules")
    commands = rules.add_subparsers(dest="rules_command", required=True, metavar="SUBCOMMAND")
    rp = commands.add_parser(
        "replay",
        help="evaluate a recorded trace and print the alert lifecycle as JSON lines",
        description=(
            "Replay a CSV or JSON-lines trace (docs/alerts.md) through the cold-chain rules "
            "and print one JSON object per alert change. Exit 0; 1 for an unreadable or "
            "malformed trace (the message names the line); 2 for a bad rules file."
        ),
    )
    rp.add_argument("trace", metavar="TRACE", type=Path, help="trace file (.csv or .jsonl)")
    rp.add_argument("--config", metavar="RULES.toml", type=Path, help="rules configuration")
    rp.add_argument(
        "--format", choices=("auto", "csv", "jsonl"), default="auto", help="trace format"
    )
    rp.set_defaults(func=replay_command)


def replay_command(args: argparse.Namespace) -> int:
    config = load_config(args.config, RulesConfig) if args.config else RulesConfig()
    try:
        rows = read_trace(args.trace, args.format)
    except TraceError as exc:
        print(f"xiaodian rules replay: {exc}", file=sys.stderr)
        return 1
    except (OSError, UnicodeDecodeError) as exc:
        print(f"xiaodian rules replay: {args.trace}: cannot read: {exc}", file=sys.stderr)
        return 1
    iso = bool(rows) and rows[0].iso
    out = sys.stdout
    for change in replay(rows, RuleEngine(config)):
        out.write(json.dumps(change.to_dict(iso_times=iso), ensure_ascii=False) + "\n")
    out.flush()
    return 0
