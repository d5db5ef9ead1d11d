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

from devstack import demo_text
from devstack.reconcile import compare
from devstack.resident_seed import seed_residents
from devstack.stack import DEFAULT_SCENARIO, StackError, StoreStack, scenario_devices
from xiaodian.i18n import Translator, negotiate, translator


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
    p.add_argument("--lang", choices=("zh-CN", "en"), default="zh-CN",
                   help="language of what the demo prints (default zh-CN); the pages have"
                   " their own switch, and the banner's inbox link opens in this language")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    stack = StoreStack(
        args.workdir.resolve(), speed=args.speed, scenario=args.scenario, http_port=args.http_port,
        retail=True, owner_inbox=True,
    )
    t = translator(negotiate(args.lang))
    out = sys.stdout
    fridges, _ = scenario_devices(args.scenario)
    # SIGTERM (a service manager, `timeout`) stops the demo as Ctrl-C does: cleanly.
    signal.signal(signal.SIGTERM, _interrupt)
    retail: dict[str, Any] = {}
    try:
        stack.start()
        # Catalogue pushed, a delivery scanned in at the counter, two orders placed.
        retail = stack.seed_retail()
        # The store as residents find it (address, position, hours, prices): the resident
        # app is part of the cloud, it needs only a store to show.
        retail["residents"] = seed_residents(stack)
        if not args.json:
            demo_text.banner(stack, retail, t, out, _first_alert_s(args))
        started = time.monotonic()
        live = _LiveView(stack, fridges, out, t, enabled=not args.json)
        while args.duration is None or time.monotonic() - started < args.duration:
            for name, part in stack.parts.items():
                if not part.alive():
                    raise StackError(f"{name} stopped unexpectedly; see {part.log}")
            live.show()
            time.sleep(1.0)
    except KeyboardInterrupt:
        if not args.json:
            print("\n" + t.gettext("stopping..."), file=out)
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
    summary["owner"] = demo_text.owner_facts(stack)
    summary["inbox"] = _inbox_summary(stack)
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True, ensure_ascii=False), file=out)
    else:
        demo_text.summary(summary, t, out)
    return 0 if summary["ok"] else 1


# The demo scenario's fridge-2 starts at 10 °C: the edge raises `hot` (critical, the owner
# is told) after 15 simulated minutes above 8 °C (docs/design.md, "Cold chain").
DEMO_FIRST_ALERT_SIM_S = 15 * 60


def _first_alert_s(args: argparse.Namespace) -> float | None:
    if args.scenario.resolve() != DEFAULT_SCENARIO.resolve():
        return None
    return DEMO_FIRST_ALERT_SIM_S / float(args.speed)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class _LiveView:
    """One line per fridge: product/air temperature, door, compressor, sent/acknowledged."""

    def __init__(self, stack: StoreStack, fridges: list[str], out: TextIO, t: Translator,
                 enabled: bool) -> None:
        self.stack = stack
        self.t = t
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
            return self.t.gettext("%(fridge)s (terminal database busy: %(error)s)") % {
                "fridge": f"{fridge:<10}", "error": exc}
        cloud = _cloud_view(self.stack.cloud_db, self.stack.store, fridge)
        return demo_text.live_line(fridge, info, cloud, self.t)


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


def _inbox_summary(stack: StoreStack) -> dict[str, Any] | None:
    """What the owner's inbox received: one entry per notice, in order of arrival."""
    if stack.inbox is None:
        return None
    return {"url": stack.inbox.url, "refused": stack.inbox.inbox.refused, "notices": [
        {"delivery": n.delivery, "kind": n.kind, "alert": n.alert["key"],
         "severity": n.alert["severity"], "received_at": n.received_at}
        for n in stack.inbox.inbox.notices()]}
