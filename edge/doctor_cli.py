"""`xiaodian doctor`: the terminal checks itself for a technician, in seconds, without the cloud.

One line per check (ok / warning / failure) and, for anything not ok, what to do; Chinese
unless `--lang en`. `--json` for scripts. Exit status: 0 all ok, 1 warnings, 2 failures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from xiaodian.i18n import N_, translator
from xiaodian.i18n.core import negotiate

CONFIG_ENV = "XIAODIAN_EDGE_CONFIG"
_LEVEL_TEXT = {"ok": N_("ok"), "warning": N_("warning"), "failure": N_("failure")}


def register(sub: Any) -> None:
    doctor = sub.add_parser(
        "doctor", help="check this store terminal: ports, links, clock, certificate, broker, "
        "disk, database, devices, commands",
        description="One line per check with what to do. Exit status 0 all ok, 1 warnings, "
        "2 failures. Needs no cloud; the broker check is one TLS handshake (skip it with "
        "--no-network).")
    doctor.add_argument("--config", default=os.environ.get(CONFIG_ENV) or None,
                        help=f"edge TOML file (default ${CONFIG_ENV})")
    doctor.add_argument("--json", action="store_true", help="one JSON object")
    doctor.add_argument("--lang", default=None, help="zh-CN (default) or en")
    doctor.add_argument("--no-network", action="store_true", help="skip the broker check")
    doctor.set_defaults(func=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    from edge import config as edge_config
    from edge.doctor_checks import EXIT, diagnose, worst
    from edge.doctor_probe import gather
    from xiaodian.i18n import Message

    t = translator(negotiate(args.lang))
    if args.config is None:
        print(t.gettext("xiaodian doctor: give --config FILE (the edge config) or set"
                        " XIAODIAN_EDGE_CONFIG."), file=sys.stderr)
        return 2
    try:
        cfg = edge_config.load(args.config)
    except Exception as exc:  # the config itself is the first thing a doctor reports
        msg = t.render(Message(N_("The edge config %(path)s cannot be used: %(error)s"),
                               {"path": args.config, "error": str(exc)}))
        if args.json:
            print(json.dumps({"level": "failure", "checks": [
                {"check": "config", "level": "failure", "message": msg, "fix": None}]},
                ensure_ascii=False))
        else:
            print(f"[{t.gettext(_LEVEL_TEXT['failure'])}] {msg}")
        return 2
    from edge.status_text import render_message

    def render(m: Message) -> str:
        return render_message(t, m)

    verdicts = diagnose(gather(cfg, offline=args.no_network))
    level = worst(verdicts)
    if args.json:
        print(json.dumps({"level": level, "checks": [v.as_dict(render) for v in verdicts]},
                         ensure_ascii=False, indent=2))
        return EXIT[level]
    for v in verdicts:
        print(f"[{t.gettext(_LEVEL_TEXT[v.level])}] {render(v.message)}")
        if v.fix is not None and v.level != "ok":
            print(f"    → {render(v.fix)}")
    counts = {k: sum(v.level == k for v in verdicts) for k in ("ok", "warning", "failure")}
    print(t.render(Message(N_("%(ok)s ok, %(warning)s warnings, %(failure)s failures."),
                           counts)))
    return EXIT[level]
