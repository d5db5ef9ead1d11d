"""`xiaodian edge ...`: run the store agent, or look at its database."""

from __future__ import annotations

import argparse
import json
from typing import Any

from edge import config as edge_config


def register(sub: Any) -> None:
    edge = sub.add_parser("edge", help="the store terminal's agent")
    cmds = edge.add_subparsers(dest="edge_command", required=True, metavar="COMMAND")
    run = cmds.add_parser("run", help="read the fridges and scanner, keep and forward the data")
    run.add_argument("--config", required=True, help="edge TOML file")
    run.set_defaults(func=_run)
    status = cmds.add_parser("status", help="per-device counts and latest values, and retail "
                             "(orders, deliveries, expiring stock, lane mismatches, pickup "
                             "refusals), as JSON")
    status.add_argument("--config", required=True, help="edge TOML file")
    status.set_defaults(func=_status)


def _run(args: argparse.Namespace) -> int:
    from edge.agent import Agent

    cfg = edge_config.load(args.config)
    agent = Agent(cfg)
    agent.install_signal_handlers()
    agent.run()
    return 0


def _status(args: argparse.Namespace) -> int:
    import time

    from edge.retail.service import local_date
    from edge.retail.status import retail_status
    from edge.store import EdgeStore

    cfg = edge_config.load(args.config)
    store = EdgeStore.open_readonly(cfg.edge.db_path)
    try:
        wall = time.time()
        out = {"counts": store.counts(), "devices": {d: store.latest(d) for d in cfg.device_ids},
               "retail": retail_status(store.db, wall, local_date(wall, cfg.edge.tz),
                                       cfg.retail.expiry_window_days)}
    finally:
        store.close()
    print(json.dumps(out, indent=2, sort_keys=True))
    return 0
