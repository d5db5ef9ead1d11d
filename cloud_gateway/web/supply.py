"""The operator's order-cycle page: zones with their cycle and cutoff countdown, the plan
per store with the why of each line, pick lists (printable, CSV), and once received the
store's receiving differences and the refunds they caused. Operators only
(`ops.read`: the page spans every store of a zone).

Before its cutoff a wave shows what the engine would propose now (nothing stored); once
planned, the plan the cutoff stored.
"""

from __future__ import annotations

from datetime import date
from http import HTTPStatus
from typing import Any

from starlette.routing import Route

from xiaodian.i18n import N_

from ..supply import cutoff, manifest, receiving, settings, waves
from ..supply.cycles import STATES, Schedule
from ..supply.model import SupplyError
from ..supply.why_text import CLOSED, OUTCOMES, why_message, why_parts
from .core import Call, Reply
from .owner import who_or_refusal
from .page import html_reply, message_page, page, reader
from .resource import route

STATE_WORDS = {"open": N_("Taking pre-orders"), "cutoff": N_("Cut off, planning"),
               "planned": N_("Planned"), "picked": N_("Picked"),
               "dispatched": N_("On its way"), "delivered": N_("Delivered")}
FORMATS = ("html", "csv", "pick-csv")
ISSUE_WORDS = {"short": N_("short"), "over": N_("over"), "damaged": N_("damaged"),
               "expired": N_("expired on arrival"), "wrong_item": N_("wrong item")}
REFUND_WORDS = {"recorded": N_("recorded"), "requested": N_("requested"),
                "done": N_("paid back"), "failed": N_("failed")}


def supply_page(call: Call) -> Reply:
    """The order cycle of each delivery zone (HTML, operators).
    ---
    parameters:
      - {name: zone, in: query, schema: {type: string}}
      - {name: wave, in: query, schema: {type: string, format: date}}
      - {name: lang, in: query, schema: {enum: [zh-CN, en]}}
    """
    t = reader(call)
    query = call.query("zone", "wave", "lang")
    got = who_or_refusal(call, t, "ops.read")
    if isinstance(got, Reply):
        return got
    now = call.api.now()
    with call.api.read() as db:
        conn = db.conn
        zones: list[dict[str, Any]] = []
        for z in settings.zones(conn):
            sched = settings.get_zone(conn, z)
            wave = sched.wave_of(now)
            cyc = waves.get_cycle(conn, z, wave)
            zones.append({"zone": z, "schedule": sched, "open_wave": wave,
                          "state": cyc["state"] if cyc else "open",
                          "cutoff_at": sched.cutoff_at(wave),
                          "left_s": sched.seconds_to_cutoff(wave, now),
                          "recent": waves.cycles(conn, z, 4)})
        if not zones:
            return page(call, "supply.html", t, who=got, zones=[], now=now, view=None)
        zone = query.get("zone") or zones[0]["zone"]
        current = next((z for z in zones if z["zone"] == zone), None)
        if current is None:
            return message_page(call, HTTPStatus.NOT_FOUND, t.gettext(
                "There is no delivery zone %(zone)s.") % {"zone": zone[:40]}, t)
        try:
            wave = date.fromisoformat(query["wave"]) if "wave" in query else _shown_wave(
                current)
        except ValueError:
            return message_page(call, HTTPStatus.BAD_REQUEST, t.gettext(
                "The wave must be written as YYYY-MM-DD."), t)
        view = _view(conn, zone, wave, current["schedule"])
    return page(call, "supply.html", t, who=got, zones=zones, now=now, view=view,
                states=STATES, state_words=STATE_WORDS, closed_words=CLOSED,
                outcome_words=OUTCOMES, why_parts=why_parts, why_message=why_message,
                issue_words=ISSUE_WORDS, refund_words=REFUND_WORDS)


def _shown_wave(z: dict[str, Any]) -> date:
    """The wave the page opens on: the newest one past its cutoff and not yet delivered,
    else the one taking orders."""
    for c in z["recent"]:
        if c["state"] not in ("open", "delivered"):
            return date.fromisoformat(c["wave"])
    wave: date = z["open_wave"]
    return wave


def _view(conn: Any, zone: str, wave: date, sched: Schedule) -> dict[str, Any]:
    cyc = waves.get_cycle(conn, zone, wave)
    state = cyc["state"] if cyc else "open"
    stores = settings.zone_stores(conn, zone)
    adm = waves.admission_for(conn, zone, wave)
    load = {s.id: {"orders": adm.orders.get(s.id, 0), "pickup": s.pickup_capacity,
                   "volume": adm.volume.get(s.id, 0.0),
                   "share": s.fridge_capacity * adm.fridge_share,
                   # Full or not matters only while the wave takes pre-orders.
                   "closed": adm.refusal(s.id, []) if state == "open" else None}
            for s in stores}
    outcomes = {r[0]: int(r[1]) for r in conn.execute(
        "SELECT outcome, COUNT(*) FROM wave_orders WHERE zone = ? AND wave = ?"
        " GROUP BY outcome", (zone, wave.isoformat()))}
    planned = waves.reached(state, "planned")
    lines: list[dict[str, Any]] = []
    fridges: dict[str, str] = {}
    coming: dict[str, Any] = {"below": [], "moved": [], "refunded": []}
    error = None
    if planned:
        lines = cutoff.plan_rows(conn, zone, wave)
    else:
        try:
            p = cutoff.propose(conn, zone, wave)
        except SupplyError as exc:
            error = str(exc)
        else:
            names = {i.item.id: i.name for i in p.items}
            lines = [{"store": ln.store, "item": ln.item, "qty": ln.qty,
                      "why": ln.why._asdict(), "name": names[ln.item]}
                     for ln in p.plan.lines()]
            fridges = {k: v.value for k, v in p.fridges.items()}
            least = {i.item.id: i.presale_min for i in p.items}
            coming = {"below": [(names[i], least[i]) for i in p.below_minimum],
                      "moved": [(o, src, to, cutoff.FRIDGE_REASON[p.fridges[src]])
                                for o, src, to in p.moved],
                      "refunded": p.refunded}
    by_store: dict[str, list[dict[str, Any]]] = {}
    for ln in lines:
        by_store.setdefault(ln["store"], []).append(ln)
    ms = manifest.manifests(conn, zone, wave) if planned else []
    return {"zone": zone, "wave": wave, "state": state, "planned": planned,
            "delivery": sched.delivery(wave), "tz": sched.tz, "stores": stores,
            "load": load, "outcomes": outcomes, "lines": by_store, "fridges": fridges,
            "bags": {m.store: manifest.bags(m) for m in ms}, "error": error,
            "coming": coming, "receiving": receiving.wave_receiving(conn, zone, wave)}


def supply_manifest(call: Call) -> Reply:
    """A planned wave's manifests and pick list: printable HTML, or CSV (`format`).
    ---
    parameters:
      - {name: format, in: query, schema: {enum: [html, csv, pick-csv]}}
      - {name: lang, in: query, schema: {enum: [zh-CN, en]}}
    """
    t = reader(call)
    query = call.query("format", "lang")
    got = who_or_refusal(call, t, "ops.read")
    if isinstance(got, Reply):
        return got
    zone = call.path_params["zone"]
    try:
        wave = date.fromisoformat(call.path_params["wave"])
    except ValueError:
        return message_page(call, HTTPStatus.BAD_REQUEST, t.gettext(
            "The wave must be written as YYYY-MM-DD."), t)
    fmt = query.get("format", "html")
    if fmt not in FORMATS:
        return message_page(call, HTTPStatus.BAD_REQUEST, t.gettext(
            "There is no such page."), t)
    with call.api.read() as db:
        cyc = waves.get_cycle(db.conn, zone, wave)
        if cyc is None or not waves.reached(cyc["state"], "planned"):
            return message_page(call, HTTPStatus.NOT_FOUND, t.gettext(
                "This wave has no plan yet."), t)
        ms = manifest.manifests(db.conn, zone, wave)
        tz = settings.get_zone(db.conn, zone).tz
    if fmt in ("csv", "pick-csv"):
        text = manifest.manifest_csv(ms) if fmt == "csv" else manifest.pick_list_csv(ms)
        name = f"{'manifest' if fmt == 'csv' else 'picklist'}-{zone}-{wave}.csv"
        return Reply(HTTPStatus.OK, text.encode(), "text/csv; charset=utf-8",
                     (("Content-Disposition", f'attachment; filename="{name}"'),))
    return html_reply(call, t, manifest.html(ms, t, zone, wave,
                                             date.fromisoformat(cyc["delivery"]), tz))


ROUTES: list[Route] = [
    route("/supply", get=supply_page),
    route("/supply/{zone}/{wave}/manifest", get=supply_manifest),
]
