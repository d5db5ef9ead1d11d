"""`xiaodian edge ...`: run the store agent, or look at its database."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from edge import config as edge_config


def register(sub: Any) -> None:
    edge = sub.add_parser("edge", help="the store terminal's agent")
    cmds = edge.add_subparsers(dest="edge_command", required=True, metavar="COMMAND")
    run = cmds.add_parser("run", help="read the fridges and scanner, keep and forward the data")
    run.add_argument("--config", required=True, help="edge TOML file")
    run.set_defaults(func=_run)
    status = cmds.add_parser("status", help="per device: link, probes, door, compressor, open "
                             "alerts and the likely cause; --json: counts, latest values and "
                             "retail (orders, deliveries, expiring stock, lane mismatches, "
                             "pickup refusals)")
    status.add_argument("--config", required=True, help="edge TOML file")
    status.add_argument("--json", action="store_true", help="everything, as JSON")
    status.add_argument("--lang", default=None, help="zh-CN (default) or en")
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
        latest = {d: store.latest(d) for d in cfg.device_ids}
        out = {"counts": store.counts(), "devices": latest,
               "retail": retail_status(store.db, wall, local_date(wall, cfg.edge.tz),
                                       cfg.retail.expiry_window_days)}
    finally:
        store.close()
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    from edge import status_text
    from xiaodian.i18n import negotiate, translator

    kinds = {f.id: "fridge" for f in cfg.fridges} | {s.id: "scanner" for s in cfg.scanners}
    devices = {d: (kinds[d], latest[d]) for d in cfg.device_ids}
    sys.stdout.write(status_text.render(translator(negotiate(args.lang)), devices))
    return 0
