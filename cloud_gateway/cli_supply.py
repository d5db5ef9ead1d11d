"""`xiaodian supply plan|cutoff|manifest|advance|received|tick|preorder|store|zone|item`: the
order cycle from the command line (docs/supply.md). Registered beside `supply simulate`
(devstack/supply_cli.py).

Every command takes the cloud database (`--db` or `--config`). Errors are one line on
stderr and exit 1 (a refused request) or 2 (bad input); output is JSON with `--json`,
otherwise in the operator's language (zh-CN unless `--lang en`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from xiaodian.i18n import negotiate, translator

from . import sql
from .cli_read import _db_path, _db_source
from .errors import CloudError

Handler = Callable[[argparse.Namespace], int]


def add(cmds: Any) -> None:
    """Add the cycle's commands to `xiaodian supply`'s subparsers."""
    p = cmds.add_parser("plan", help="what the engine would propose now, with the why",
                        description="Propose the delivery of a zone's wave without storing"
                        " anything: per store and item the quantity and why.")
    _zone_wave(p)
    p.add_argument("--store", default=None, help="only this store")
    p.add_argument("--json", action="store_true")
    p.add_argument("--lang", default=None, help="zh-CN (default) or en")
    p.set_defaults(func=_plan)
    c = cmds.add_parser("cutoff", help="close a zone's wave and store its plan (idempotent)",
                        description="Close the wave (default: the one whose cutoff passed"
                        " last) and store its plan; running it again changes nothing.")
    _zone_wave(c)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_cutoff)
    m = cmds.add_parser("manifest", help="a planned wave's manifests and the depot's pick"
                        " list, as CSV or printable HTML")
    _zone_wave(m)
    m.add_argument("--store", default=None, help="only this store")
    m.add_argument("--format", choices=("csv", "pick-csv", "html"), default="csv",
                   help="csv: the stores' manifests; pick-csv: the pick list, one bag per"
                   " pre-order; html: both, printable")
    m.add_argument("--out", type=Path, default=None, help="write here instead of stdout")
    m.add_argument("--lang", default=None, help="HTML language: zh-CN (default) or en")
    m.set_defaults(func=_manifest)
    a = cmds.add_parser("advance", help="mark a planned wave picked, dispatched or delivered")
    _zone_wave(a)
    a.add_argument("--to", required=True, choices=("picked", "dispatched", "delivered"))
    a.set_defaults(func=_advance)
    r = cmds.add_parser("received", help="a wave's receipts: differences and refunds per"
                        " store")
    _zone_wave(r)
    r.set_defaults(func=_received)
    k = cmds.add_parser("tick", help="run the supply tick once now: due cutoffs, pickup"
                        " reminders (what `xiaodian cloud run` does every 30 s)")
    _db_source(k)
    k.set_defaults(func=_tick)
    o = cmds.add_parser("preorder", help="place a pre-order on the wave open now")
    o.add_argument("store", metavar="STORE")
    o.add_argument("--item", action="append", required=True, metavar="ITEM:QTY")
    o.add_argument("--customer", required=True, help="the name the clerk sees")
    _db_source(o)
    o.set_defaults(func=_preorder)
    st = cmds.add_parser("store", help="a store's supply settings: zone, capacities")
    sts = st.add_subparsers(dest="supply_store_command", required=True, metavar="COMMAND")
    ss = sts.add_parser("set", help="set a store's zone, fridge and pickup capacity")
    ss.add_argument("store", metavar="STORE")
    ss.add_argument("--zone", default=None)
    ss.add_argument("--fridge", type=float, default=None, help="fridge volume (litres)")
    ss.add_argument("--pickup", type=int, default=None, help="pre-orders handed over a wave")
    _db_source(ss)
    ss.set_defaults(func=_store_set)
    z = cmds.add_parser("zone", help="a delivery zone's timetable")
    zs = z.add_subparsers(dest="supply_zone_command", required=True, metavar="COMMAND")
    zz = zs.add_parser("set", help="set a zone's cutoff, time zone, lead time, pickup window")
    zz.add_argument("zone", metavar="ZONE")
    zz.add_argument("--cutoff", default=None, help="local time HH:MM (default 23:00)")
    zz.add_argument("--tz", default=None, help="IANA time zone (default Asia/Shanghai)")
    zz.add_argument("--lead-days", type=int, default=None, dest="lead_days")
    zz.add_argument("--pickup-from", default=None, help="HH:MM on the delivery day")
    zz.add_argument("--pickup-until", default=None, help="HH:MM on the delivery day")
    _db_source(zz)
    zz.set_defaults(func=_zone_set)
    i = cmds.add_parser("item", help="the depot's item: lots, cases, shelf life, prices")
    its = i.add_subparsers(dest="supply_item_command", required=True, metavar="COMMAND")
    ii = its.add_parser("set", help="set an item's supply data")
    ii.add_argument("item", metavar="ITEM")
    ii.add_argument("--name", required=True)
    ii.add_argument("--shelf-life", type=int, required=True, dest="shelf_life")
    ii.add_argument("--unit-lot", type=int, default=1, dest="unit_lot")
    ii.add_argument("--case-pack", type=int, required=True, dest="case_pack")
    ii.add_argument("--case-only", action="store_true", dest="case_only")
    ii.add_argument("--volume", type=float, required=True, help="fridge volume per piece")
    ii.add_argument("--cost", type=int, required=True, help="fen per piece")
    ii.add_argument("--price", type=int, required=True, help="fen per piece")
    ii.add_argument("--ambient", action="store_true", help="not chilled")
    ii.add_argument("--presale-min", type=int, default=0, dest="presale_min",
                    help="pre-sale: cancel the wave's lines under this many pieces")
    _db_source(ii)
    ii.set_defaults(func=_item_set)


def _zone_wave(p: argparse.ArgumentParser) -> None:
    p.add_argument("--zone", required=True)
    p.add_argument("--wave", type=date.fromisoformat, default=None, metavar="YYYY-MM-DD",
                   help="the wave (its cutoff's local date)")
    _db_source(p)


def _fail(message: str, code: int = 1) -> int:
    print(f"xiaodian supply: {message}", file=sys.stderr)
    return code


def _with_db(args: argparse.Namespace, func: Callable[[Any], Any]) -> tuple[int, Any]:
    """Run `func` with the open database; (exit code, its result or None after saying why
    not)."""
    from .db import Database
    from .retail_tables import RetailError

    path = _db_path(args)
    try:
        with Database.open(path) as db:
            return 0, func(db)
    except RetailError as exc:
        return _fail(exc.message), None
    except CloudError as exc:
        return _fail(str(exc), 2), None
    except sql.ERRORS as exc:
        return _fail(f"cannot use {sql.describe(path)}: {exc}"), None


def _print(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=1, default=str))


def _run_and_print(args: argparse.Namespace, func: Callable[[Any], Any]) -> int:
    """`_with_db`, then the result printed as JSON: the shape of every setting command."""
    code, out = _with_db(args, func)
    if out is None:
        return code
    _print(out)
    return 0


# ---------------------------------------------------------------- plan, cutoff, manifest


def _plan(args: argparse.Namespace) -> int:
    from .supply import cutoff, settings

    def run(db: Any) -> Any:
        with db.transaction() as conn:
            wave = args.wave or settings.get_zone(conn, args.zone).wave_of(time.time())
            return cutoff.propose(conn, args.zone, wave)

    code, p = _with_db(args, run)
    if p is None:
        return code
    names = {i.item.id: i.name for i in p.items}
    lines = [ln for ln in p.plan.lines() if args.store in (None, ln.store)]
    if args.json:
        _print({"zone": p.zone, "wave": p.wave, "delivery": p.plan.delivery,
                "fridges": {k: v.value for k, v in p.fridges.items()},
                "below_minimum": p.below_minimum, "moved": p.moved, "refunded": p.refunded,
                "lines": [{"store": ln.store, "item": ln.item, "name": names[ln.item],
                           "qty": ln.qty, "why": ln.why._asdict()} for ln in lines]})
        return 0
    from .supply.why_text import why_message, why_parts

    t = translator(negotiate(args.lang))
    print(t.gettext("Zone %(zone)s, wave of %(wave)s, delivered %(day)s") % {
        "zone": p.zone, "wave": p.wave, "day": p.plan.delivery})
    for ln in lines:
        why = t.gettext("; ").join(t.render(m) for m in why_parts(ln.why._asdict()))
        print(f"{ln.store}  {names[ln.item]}  {ln.qty}  ({why})")
    if not lines:
        print(t.gettext("Nothing to deliver in this wave."))
    least = {i.item.id: i.presale_min for i in p.items}
    for item in p.below_minimum:
        print(t.gettext("%(name)s: pre-ordered less than its pre-sale minimum of %(min)s;"
                        " its lines are cancelled at the cutoff") % {
            "name": names[item], "min": least[item]})
    for order, src, to in p.moved:
        print(t.gettext("Pre-order No. %(order)s moves from %(source)s to %(target)s: %(why)s") % {
            "order": order, "source": src, "target": to,
            "why": t.render(why_message(cutoff.FRIDGE_REASON[p.fridges[src]]))})
    for order, src, reason in p.refunded:
        print(t.gettext("Pre-order No. %(order)s at %(store)s is refunded: %(why)s") % {
            "order": order, "store": src, "why": t.render(why_message(reason))})
    return 0


def _cutoff(args: argparse.Namespace) -> int:
    from .supply import cutoff, settings

    def run(db: Any) -> Any:
        now = time.time()
        with db.transaction() as conn:
            wave = args.wave or cutoff.default_wave(settings.get_zone(conn, args.zone), now)
            cyc, changed = cutoff.cutoff(conn, args.zone, wave, now, "cli")
            return {"cycle": cyc, "changed": changed,
                    "lines": len(cutoff.plan_rows(conn, args.zone, wave))}

    return _run_and_print(args, run)


def _manifest(args: argparse.Namespace) -> int:
    from .retail_tables import Refusal, RetailError
    from .supply import cutoff, manifest, settings, waves

    def run(db: Any) -> Any:
        conn = db.conn
        schedule = settings.get_zone(conn, args.zone)
        wave = args.wave or cutoff.default_wave(schedule, time.time())
        cyc = waves.get_cycle(conn, args.zone, wave)
        if cyc is None or not waves.reached(cyc["state"], "planned"):
            raise RetailError(Refusal.NOT_FOUND, f"zone {args.zone}'s wave of {wave} has no"
                              " plan yet (xiaodian supply cutoff)")
        ms = manifest.manifests(conn, args.zone, wave, args.store)
        if args.format == "csv":
            return manifest.manifest_csv(ms)
        if args.format == "pick-csv":
            return manifest.pick_list_csv(ms)
        return manifest.html(ms, translator(negotiate(args.lang)), args.zone, wave,
                             date.fromisoformat(cyc["delivery"]), schedule.tz)

    code, text = _with_db(args, run)
    if text is None:
        return code
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _advance(args: argparse.Namespace) -> int:
    from .supply import dispatch, waves

    def run(db: Any) -> Any:
        now = time.time()
        with db.transaction() as conn:
            if args.wave is None:
                raise CloudError("--wave: which wave (YYYY-MM-DD)")
            if args.to == "dispatched":
                changed = dispatch.dispatch(conn, args.zone, args.wave, now)
            else:
                changed = waves.advance(conn, args.zone, args.wave, args.to, now)
            return {"cycle": waves.get_cycle(conn, args.zone, args.wave), "changed": changed}

    return _run_and_print(args, run)


def _received(args: argparse.Namespace) -> int:
    from .supply import cutoff, receiving, settings

    def run(db: Any) -> Any:
        conn = db.conn
        cutoff.check_zone(conn, args.zone)
        wave = args.wave or cutoff.default_wave(settings.get_zone(conn, args.zone),
                                                time.time())
        return {"zone": args.zone, "wave": wave,
                "stores": receiving.wave_receiving(conn, args.zone, wave)}

    return _run_and_print(args, run)


def _tick(args: argparse.Namespace) -> int:
    from .supply import scheduler

    def run(db: Any) -> Any:
        rep = scheduler.tick(db, time.time(), "cli", scheduler.SchedulerSettings())
        return {"cut": rep.cut, "skipped": rep.skipped, "failed": rep.failed,
                "notices": rep.notices}

    return _run_and_print(args, run)


# ---------------------------------------------------------------- pre-orders and settings


def _preorder(args: argparse.Namespace) -> int:
    from . import retail
    from .supply import waves

    items = []
    for spec in args.item:
        item, _, qty = spec.rpartition(":")
        if not item or not qty.isdigit():
            return _fail(f"--item {spec!r}: ITEM:QTY, e.g. 06901234567892:2", 2)
        items.append({"item": item, "qty": int(qty)})

    def run(db: Any) -> Any:
        req = retail.parse_order_request({"items": items, "customer": args.customer})
        with db.transaction() as conn:
            order, wave = waves.place_preorder(conn, args.store, req, time.time(), "cli")
        return {"order": order.id, "store": order.store, "wave": wave,
                "expires": order.expires}

    return _run_and_print(args, run)


def _store_set(args: argparse.Namespace) -> int:
    from .supply import settings

    def run(db: Any) -> Any:
        with db.transaction() as conn:
            s = settings.set_store(conn, args.store, time.time(), zone=args.zone,
                                   fridge_capacity=args.fridge, pickup_capacity=args.pickup)
        return {"store": s.id, "zone": s.zone, "fridge_capacity": s.fridge_capacity,
                "pickup_capacity": s.pickup_capacity}

    return _run_and_print(args, run)


def _zone_set(args: argparse.Namespace) -> int:
    from .supply import settings

    def run(db: Any) -> Any:
        with db.transaction() as conn:
            s = settings.set_zone(conn, args.zone, time.time(), cutoff=args.cutoff, tz=args.tz,
                                  lead_time_days=args.lead_days,
                                  pickup_from=args.pickup_from,
                                  pickup_until=args.pickup_until)
        return {"zone": args.zone, **settings.schedule_text(s)}

    return _run_and_print(args, run)


def _item_set(args: argparse.Namespace) -> int:
    from .supply import settings

    def run(db: Any) -> Any:
        with db.transaction() as conn:
            it = settings.set_item(
                conn, args.item, time.time(), name=args.name, shelf_life_days=args.shelf_life,
                unit_lot=args.unit_lot, case_pack=args.case_pack, case_only=args.case_only,
                unit_volume=args.volume, cost=args.cost, price=args.price,
                chilled=not args.ambient, presale_min=args.presale_min)
        return settings.item_dict(it)

    return _run_and_print(args, run)
