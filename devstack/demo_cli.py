"""`xiaodian demo`: a whole simulated store reporting to a local cloud, on this machine."""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from devstack.reconcile import compare
from devstack.stack import DEFAULT_SCENARIO, StackError, StoreStack, scenario_devices


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run a simulated store, broker and cloud together")
    p.add_argument(
        "--for",
        dest="duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="run unattended for this many real seconds, then stop",
    )
    p.add_argument(
        "--speed", type=float, default=60.0, help="simulated seconds per real second (default 60)"
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print only a JSON summary at the end (for scripts and CI)",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path(".xiaodian-demo"),
        help="where data, logs and certificates go (default ./.xiaodian-demo)",
    )
    p.add_argument(
        "--scenario", type=Path, default=DEFAULT_SCENARIO, help="simulator scenario file"
    )
    p.add_argument("--http-port", type=int, default=0, help="dashboard port (default: free)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    stack = StoreStack(
        args.workdir.resolve(), speed=args.speed, scenario=args.scenario, http_port=args.http_port,
        retail=True,
    )
    out = sys.stdout
    fridges, _ = scenario_devices(args.scenario)
    # SIGTERM (a service manager, `timeout`) stops the demo as Ctrl-C does: cleanly.
    signal.signal(signal.SIGTERM, _interrupt)
    retail: dict[str, Any] = {}
    try:
        stack.start()
        # Catalogue pushed, a delivery scanned in at the counter, two orders placed.
        retail = stack.seed_retail()
        if not args.json:
            _banner(stack, out)
            _retail_banner(retail, stack, out)
        started = time.monotonic()
        live = _LiveView(stack, fridges, out, enabled=not args.json)
        while args.duration is None or time.monotonic() - started < args.duration:
            for name, part in stack.parts.items():
                if not part.alive():
                    raise StackError(f"{name} stopped unexpectedly; see {part.log}")
            live.show()
            time.sleep(1.0)
    except KeyboardInterrupt:
        if not args.json:
            print("\nstopping...", file=out)
    except StackError as exc:
        print(f"xiaodian demo: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    except BaseException:
        # Anything else (a closed stdout, SIGTERM below): the parts run in sessions of
        # their own, so stop them here or they outlive us.
        stack.stop()
        raise
    try:
        settled = stack.settle()
    finally:
        stack.stop()
    summary = _summary(stack, settled)
    summary["retail"] = retail  # shown, not judged: "ok" is about the readings
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True), file=out)
    else:
        _print_summary(summary, out)
    return 0 if summary["ok"] else 1


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _banner(stack: StoreStack, out: TextIO) -> None:
    assert stack.broker is not None
    print(f"xiaodian demo: store {stack.store}, speed x{stack.speed:g}", file=out)
    print(
        f"  broker     mqtts://{stack.broker.host}:{stack.broker.port}  log "
        f"{stack.broker.log_path}",
        file=out,
    )
    for name, part in stack.parts.items():
        print(f"  {name:<10} log {part.log}", file=out)
    print(f"  data       {stack.workdir}", file=out)
    print(f"  dashboard  {stack.http_url}  (owner page: {stack.http_url}owner)", file=out)
    print(f"  log in     {stack.http_url}login  as owner or technician, password"
          f" {stack.demo_password!r}; operator API token in {stack.api_token_file}",
          file=out)
    print(f"  terminal   http://127.0.0.1:{stack.kiosk_port}/  (the shop's screen: alerts, buzzer)",
          file=out)
    print("Ctrl-C stops everything.\n", file=out)


def _retail_banner(retail: dict[str, Any], stack: StoreStack, out: TextIO) -> None:
    print(f"  counter    {retail['counter_url']}  (pickups, deliveries, expiring stock)",
          file=out)
    print(f"  catalogue  v{retail.get('catalogue_version', '?')} pushed"
          f" (format: {stack.workdir / 'cloud' / 'catalogue.toml'}); stock:"
          f" {stack.http_url}api/stores/{stack.store}/stock", file=out)
    for o in retail["orders"]:
        # A delivery order is handed to the courier from the delivery list, not by code.
        code = (f"  pickup code {o['pickup_code']}"
                if o.get("pickup_code") and o["mode"] == "pickup"
                else "  (on the counter's delivery list)")
        print(f"  order {o['id']:<4} {o['mode']:<9}{code}", file=out)
    for problem in retail["problems"]:
        print(f"  retail: {problem}", file=out)
    print("  (scan or type a pickup code into the counter page to hand an order over)\n",
          file=out)


class _LiveView:
    """One line per fridge: product/air temperature, door, compressor, sent/acknowledged."""

    def __init__(self, stack: StoreStack, fridges: list[str], out: TextIO, enabled: bool) -> None:
        self.stack = stack
        self.fridges = fridges
        self.out = out
        self.enabled = enabled
        self.tty = out.isatty()
        self.drawn = 0
        self.last_plain = 0.0

    def show(self) -> None:
        if not self.enabled:
            return
        if not self.tty and time.monotonic() - self.last_plain < 5.0:
            return
        lines = [self._line(f) for f in self.fridges]
        if self.tty and self.drawn:
            self.out.write(f"\x1b[{self.drawn}F")  # back to the first line we drew
        for line in lines:
            self.out.write(("\x1b[2K" if self.tty else "") + line + "\n")
        self.out.flush()
        self.drawn = len(lines)
        self.last_plain = time.monotonic()

    def _line(self, fridge: str) -> str:
        try:
            info = _edge_view(self.stack.edge_db, fridge)
        except sqlite3.Error as exc:
            return f"{fridge:<10} (edge database busy: {exc})"
        cloud = _cloud_view(self.stack.cloud_db, self.stack.store, fridge)
        temps = info.get("probes", {})
        air = _fmt_c(temps.get(0))
        product = _fmt_c(temps.get(1))
        door = {True: "OPEN  ", False: "closed", None: "?     "}[info.get("door")]
        comp = {True: "on ", False: "off", None: "?  "}[info.get("compressor")]
        stored = info.get("stored", 0)
        acked = stored - info.get("pending", 0)
        alerts = info.get("alerts", [])
        names = ", ".join(f"{a['rule']} ({a['severity']})" for a in alerts)
        flag = f"  ALERT {names}" if alerts else ""
        return (
            f"{fridge:<10} product {product}  air {air}  door {door}  compressor {comp}  "
            f"readings stored {stored:>5}  acked {acked:>5}  in cloud {cloud:>5}{flag}"
        )


def _fmt_c(value: float | None) -> str:
    return "   --  " if value is None else f"{value:5.1f}°C"


def _edge_view(db: Path, fridge: str) -> dict[str, Any]:
    if not db.exists():
        return {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)
    try:
        out: dict[str, Any] = {}
        row = con.execute(
            "SELECT probes FROM readings WHERE device=? ORDER BY boot DESC, seq DESC LIMIT 1",
            (fridge,),
        ).fetchone()
        if row:
            out["probes"] = {int(i): c for i, _s, c in json.loads(row[0])}
        for type_, key in (("door", "open"), ("compressor", "on")):
            ev = con.execute(
                "SELECT data FROM events WHERE device=? AND type=? ORDER BY "
                "boot DESC, seq DESC LIMIT 1",
                (fridge, type_),
            ).fetchone()
            if ev:
                out[type_] = bool(json.loads(ev[0]).get(key))
        out["stored"] = con.execute(
            "SELECT count(*) FROM readings WHERE device=?", (fridge,)
        ).fetchone()[0]
        st = con.execute("SELECT status FROM device_status WHERE device=?", (fridge,)).fetchone()
        if st:
            out["alerts"] = json.loads(st[0]).get("alerts", [])
        out["pending"] = con.execute(
            "SELECT count(*) FROM outbox WHERE kind='readings' AND device=?", (fridge,)
        ).fetchone()[0]
        return out
    finally:
        con.close()


def _cloud_view(db: Path, store: str, fridge: str) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)
        try:
            return int(
                con.execute(
                    "SELECT count(*) FROM readings WHERE store=? AND device=?", (store, fridge)
                ).fetchone()[0]
            )
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _summary(stack: StoreStack, settled: bool) -> dict[str, Any]:
    per_fridge = compare(stack.truth, stack.edge_db, stack.cloud_db, stack.store)
    fridges = {d: v for d, v in per_fridge.items()}
    bad = sum(
        v["missing"] + v["duplicated"] + v["altered"] + v["unexpected"] for v in fridges.values()
    )
    emitted = sum(v["emitted"] for v in fridges.values())
    return {
        "store": stack.store,
        "speed": stack.speed,
        "settled": settled,
        "fridges": fridges,
        "ok": settled and bad == 0 and emitted > 0,
        "logs": str(stack.logs),
    }


def _print_summary(summary: dict[str, Any], out: TextIO) -> None:
    print("\nsummary (readings):", file=out)
    for fridge, v in summary["fridges"].items():
        print(
            f"  {fridge:<10} emitted {v['emitted']:>5}  edge {v['edge_stored']:>5}  "
            f"cloud {v['cloud_stored']:>5}  missing {v['missing']}  duplicated "
            f"{v['duplicated']}  altered {v['altered']}",
            file=out,
        )
    print(
        "  all delivered exactly once" if summary["ok"] else "  NOT all delivered: see logs",
        file=out,
    )
