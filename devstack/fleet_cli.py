"""`xiaodian fleet run`: thousands of simulated stores against a real broker, two real cloud
workers and PostgreSQL, all started here (devstack.fleet_run; docs/fleet.md).

Prints the figures as a table in the operator's language (zh-CN unless `--lang en`), or
`--json`; exits 1 when the fleet was not sustained (anything lost or duplicated, a store
not connected, or publish->receipt p99 over 2 s).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from xiaodian.i18n import N_, negotiate, translator

DEFAULT_WORKDIR = Path(".xiaodian-fleet")


def register(sub: Any) -> None:
    p = sub.add_parser("fleet", help="load test: a fleet of simulated stores over TLS MQTT")
    cmds = p.add_subparsers(dest="fleet_command", required=True, metavar="COMMAND")
    r = cmds.add_parser(
        "run", help="N stores publishing the agent's bundles to a broker, 2 workers, PostgreSQL",
        description="Start Mosquitto (the project's config and ACL), a private PostgreSQL and "
        "cloud workers, connect N stores each with its own certificate, publish the agent's "
        "compact bundles at its cadence, drain, and report latency, rates, losses and CPU "
        "per process. Everything runs on this machine.")
    r.add_argument("--stores", type=int, required=True, help="simulated stores (connections)")
    r.add_argument("--minutes", type=float, default=10.0, help="publishing window (default 10)")
    r.add_argument("--speed", type=float, default=1.0,
                   help="time compression: each store sends its 240-s bundle every 240/SPEED s"
                   " (the load of STORES x SPEED stores; default 1, the real cadence)")
    r.add_argument("--procs", type=int, default=2, help="generator processes (default 2)")
    r.add_argument("--workers", type=int, default=2, help="cloud ingest workers (default 2)")
    r.add_argument("--drain-s", type=float, default=60.0,
                   help="after the window, how long to wait for the last receipts")
    r.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                   help=f"certificates (kept), broker and logs (default {DEFAULT_WORKDIR})")
    r.add_argument("--json", action="store_true", help="print the figures as JSON")
    r.add_argument("--lang", default=None, help="table language: zh-CN (default) or en")
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from devstack.fleet_run import FleetOptions, run_fleet

    try:
        opts = FleetOptions(args.workdir.resolve(), args.stores, args.minutes, args.speed,
                            args.procs, args.workers, args.drain_s)
    except ValueError as exc:
        print(f"xiaodian fleet run: {exc}", file=sys.stderr)
        return 2
    report = run_fleet(opts, say=lambda text: print(text, file=sys.stderr, flush=True))
    if args.json:
        json.dump(report.as_dict(), sys.stdout, indent=2)
        print()
    else:
        print(table(report, args.lang))
    return 0 if report.ok else 1


def table(report: Any, lang: str | None) -> str:
    """The report as label/value lines in the operator's language."""
    t = translator(negotiate(lang))

    def num(value: float, digits: int = 0) -> str:
        return "-" if math.isnan(value) else str(t.number(value, digits))

    rows: list[tuple[str, str]] = [
        (N_("Stores (TLS connections)"), num(report.stores)),
        (N_("Equivalent stores at the real cadence (stores x speed)"),
         num(report.equivalent_stores)),
        (N_("Publishing window, s"), num(report.window_s)),
        (N_("Certificates issued, and seconds it took"),
         f"{num(report.certs_issued)} / {num(report.cert_issue_s, 1)}"),
        (N_("Stores connected / client ids the broker accepted"),
         f"{num(report.connected)} / {num(report.accepted_ids)}"),
        (N_("A store publishing on another store's topic: broker's answer"),
         report.foreign_publish),
        (N_("Messages per second"), num(report.msgs_per_s, 1)),
        (N_("Readings per second"), num(report.readings_per_s)),
        (N_("Bytes per second at the TLS level (both directions)"),
         num(report.tls_bytes_per_s)),
        (N_("Publish to receipt p50 / p95 / p99 / max, s"),
         " / ".join(num(x, 3) for x in (report.p50_s, report.p95_s, report.p99_s,
                                        report.max_s))),
        (N_("Publish to the worker's received_at p99, s"), num(report.db_p99_s, 3)),
        (N_("Generator lateness p99, s"), num(report.lag_p99_s, 3)),
        (N_("Readings published / stored"),
         f"{num(report.readings_published)} / {num(report.readings_stored)}"),
        (N_("Events published / stored"),
         f"{num(report.events_published)} / {num(report.events_stored)}"),
        (N_("Lost / duplicated / still unconfirmed records"),
         f"{num(report.lost)} / {num(report.duplicates)} / {num(report.unconfirmed)}"),
        (N_("Bundles published again / disconnects"),
         f"{num(report.republished)} / {num(report.disconnects)}"),
    ]
    for name, pct in report.cpu.items():
        rows.append((t.gettext("CPU of %(part)s, percent of one core") % {"part": name},
                     num(pct, 1)))
    rows.append((t.gettext("Whole machine CPU, percent of %(cores)s cores")
                 % {"cores": report.cores}, num(report.machine_cpu_pct, 1)))
    rows.append((N_("Load average before the run"), num(report.load_before, 2)))
    verdict = (N_("Sustained: nothing lost, p99 within 2 s") if report.ok
               else N_("Not sustained"))
    lines = [t.gettext("Fleet load test: generator, broker, workers and PostgreSQL share this"
                       " machine")]
    width = max(_width(t.gettext(label)) for label, _ in rows)
    for label, value in rows:
        text = t.gettext(label)
        lines.append(f"{text}{' ' * (width - _width(text))}  {value}")
    lines.append(t.gettext(verdict))
    return "\n".join(lines)


def _width(text: str) -> int:
    # CJK characters take two columns in a terminal.
    return sum(2 if "\u2e80" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef" else 1
               for ch in text)
