"""The resident app: stores near me, what a store can promise, ordering, my orders.

Mobile-first pages rendered on the server in the reader's language (what a WeChat official
account would open). Positions arrive in the datum the page names (`datum=wgs84` from a
browser's geolocation, `gcj02` from WeChat) and are converted once, here, to the GCJ-02 the
cloud stores (cloud_gateway/geo.py). Rules live in cloud_gateway/shop.py; identity in
web/resident_session.py. Pickup codes are issued by the store's key as for any order and
shown as a QR code (segno) and as text; a code reissued for the same order is the same code.
"""

from __future__ import annotations

import json
from datetime import datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

import segno
from babel.dates import format_skeleton
from starlette.routing import Route

from xiaodian.i18n import N_, Translator
from xiaodian.wire import ids
from xiaodian.wire.retail import MAX_LINES

from .. import geo, resident_notices, shop, shop_waves, stores
from .. import retail as retail_store
from ..supply import receiving
from .core import DIGITS, Call, Reply
from .page import message_page, page, reader
from .resident_session import current, form, to_login
from .resource import route

MAX_FORM_BYTES = 16 * 1024
MAP_URL = "https://uri.amap.com/marker"  # takes GCJ-02, like every map in China


# ---------------------------------------------------------------- positions


def _position(q: dict[str, str]) -> geo.Point | None:
    """The resident's position from the query (lat, lon, datum), as GCJ-02; None if absent
    or not a position (the page then asks again, as if none had been given)."""
    datum = q.get("datum", "gcj02")
    if "lat" not in q or "lon" not in q or datum not in geo.DATUMS:
        return None
    try:
        return geo.to_stored(float(q["lat"]), float(q["lon"]),
                             "wgs84" if datum == "wgs84" else "gcj02")
    except (ValueError, geo.GeoError):
        return None


def _here_query(here: geo.Point | None) -> dict[str, str]:
    return {} if here is None else {"lat": f"{here.lat:.6f}", "lon": f"{here.lon:.6f}"}


def map_link(p: stores.Profile) -> str:
    assert p.lat is not None and p.lon is not None
    return MAP_URL + "?" + urlencode({"position": f"{p.lon:.6f},{p.lat:.6f}",
                                      "name": p.name, "coordinate": "gaode"})


def distance_text(t: Translator, metres: float) -> str:
    if metres < 1000:
        return t.gettext("%(m)s m") % {"m": t.number(round(metres / 10) * 10, 0)}
    return t.gettext("%(km)s km") % {"km": t.number(metres / 1000, 1)}


# ---------------------------------------------------------------- stores near me


def near_page(call: Call) -> Reply:
    """Stores near the resident: by position, or by a district chosen from the list.

    From a district the order is by its middle, but neither a distance nor "delivers to
    you" is shown, and no position goes on to the store page: the resident is not there.
    """
    t = reader(call)
    q = call.query("lang", "lat", "lon", "datum", "district")
    here = _position(q)
    from_district = None
    with call.api.read() as db:
        places = shop.districts(db.conn)
        if here is None and q.get("district"):
            from_district = next((p for d, p in places if d == q["district"]), None)
        origin = here or from_district
        found = [] if origin is None else shop.nearby(db.conn, origin, call.api.now())
    cards = [{"n": n, "distance": None if here is None else distance_text(t, n.distance_m),
              "delivers": here is not None and n.delivers_here,
              "href": f"/r/s/{n.profile.store}" + (
                  "?" + urlencode(_here_query(here)) if here is not None else ""),
              "map": map_link(n.profile)} for n in found]
    return page(call, "r_near.html", t, here=origin, stores=cards, districts=places,
                district=q.get("district", "") if from_district else "",
                now=call.api.now(), who=current(call))


# ---------------------------------------------------------------- a store


def _cart_param(raw: str) -> dict[str, int]:
    """"item*qty,item*qty" (carried from a refused order to the next store) -> {item: qty}."""
    out: dict[str, int] = {}
    for part in raw.split(",")[:MAX_LINES]:
        item, _, qty = part.partition("*")
        if ids.is_device_id(item.replace(":", "-")) and qty.isascii() and qty.isdigit():
            out[item] = min(int(qty), 999)
    return out


def store_page(call: Call, *, status: int = HTTPStatus.OK, refusal: dict[str, Any] | None = None,
               cart: dict[str, int] | None = None, here: geo.Point | None = None) -> Reply:
    """What the store can promise, and the order form."""
    t = reader(call)
    store = call.path_params["store"]
    q = call.query("lang", "lat", "lon", "datum", "cart") if refusal is None else {}
    if here is None:
        here = _position(q)
    now = call.api.now()
    with call.api.read() as db:
        profile = stores.get(db.conn, store) if ids.is_store_id(store) else None
        if profile is None or profile.point is None:
            return message_page(call, HTTPStatus.NOT_FOUND, t.gettext("There is no such store."),
                                t)
        offers = shop.promise(db.conn, store, now, call.api.residents.waves)
        wave = call.api.residents.waves.next_wave(db.conn, store, now)
        slots = [{"start": int(w.start), "full": shop.booked(db.conn, store, w.start)
                  >= profile.slot_capacity, "label": _window_text(t, w, profile, now)}
                 for w in shop.windows(profile, now)]
        cold = shop.cold_chain(db.conn, store, now).state
    distance = None if here is None else geo.distance_m(here, profile.point)
    return page(call, "r_store.html", t, status, p=profile, offers=offers, slots=slots,
                cold=cold, open_now=stores.open_at(profile, now), here=here,
                distance=None if distance is None else distance_text(t, distance),
                delivers=(distance is not None and distance <= profile.delivery_radius_m),
                cart=cart if cart is not None else _cart_param(q.get("cart", "")),
                map=map_link(profile), who=current(call), refusal=refusal, now=now,
                wave=_wave_view(t, wave, profile, now, offers),
                chosen=(refusal or {}).get("window", ""))


def _wave_view(t: Translator, wave: shop.Wave | None, p: stores.Profile, now: float,
               offers: list[shop.Offer]) -> dict[str, Any] | None:
    """The next delivery as the store page shows it: its pickup day, the cutoff on the
    store's clock and the time left (the page's script counts it down)."""
    if wave is None or wave.cutoff <= now:
        return None
    if wave.closed is None and not any(o.presale for o in offers):
        return None  # nothing this store may pre-sell now (not listed, or the cold chain)
    return {"cutoff": int(wave.cutoff), "closed": wave.closed,
            "cutoff_text": when_text(t, wave.cutoff, p, now),
            "left_line": t.gettext("%(left)s left") % {"left": left_text(wave.cutoff - now)},
            "left_words": t.gettext("%(left)s left"),
            "window": _window_text(t, shop.Window(wave.arrives, wave.until), p, now),
            "any": any(o.presale for o in offers)}


def when_text(t: Translator, at: float, p: stores.Profile, now: float) -> str:
    """"today at 23:00", "tomorrow at 23:00" or the date and time, on the store's
    clock (said inside a sentence)."""
    days = (datetime.fromtimestamp(at, p.zone).date()
            - datetime.fromtimestamp(now, p.zone).date()).days
    hhmm = t.time(at, p.tz)
    if days == 0:
        return t.gettext("today at %(time)s") % {"time": hhmm}
    if days == 1:
        return t.gettext("tomorrow at %(time)s") % {"time": hhmm}
    return t.gettext("%(day)s at %(time)s") % {
        "time": hhmm, "day": format_skeleton("MMMd", datetime.fromtimestamp(at, p.zone),
                                             locale=t.locale)}


def left_text(seconds: float) -> str:
    """H:MM:SS, the countdown's form in every language (the script writes the same)."""
    s = max(0, int(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _window_text(t: Translator, w: shop.Window, p: stores.Profile, now: float) -> str:
    """"Today 17:00–18:00", "Tomorrow 09:00–10:00", or the date, on the store's clock."""
    days = (datetime.fromtimestamp(w.start, p.zone).date()
            - datetime.fromtimestamp(now, p.zone).date()).days
    values = {"start": t.time(w.start, p.tz), "end": t.time(w.end, p.tz)}
    if days == 0:
        return t.gettext("Today %(start)s–%(end)s") % values
    if days == 1:
        return t.gettext("Tomorrow %(start)s–%(end)s") % values
    return t.gettext("%(day)s %(start)s–%(end)s") % {
        **values, "day": format_skeleton("MMMd", datetime.fromtimestamp(w.start, p.zone),
                                         locale=t.locale)}


# ---------------------------------------------------------------- ordering


def place_order(call: Call) -> Reply:
    """The order form's post: check, place, and show my orders (or why not, and where)."""
    t = reader(call)
    call.no_query()
    store = call.path_params["store"]
    f = form(call)
    who = current(call)
    here = None
    if f.get("lat") and f.get("lon"):
        try:
            here = geo.to_stored(float(f["lat"]), float(f["lon"]), "gcj02")
        except (ValueError, geo.GeoError):
            here = None
    try:
        cart = shop.Cart.parse(f)
    except shop.ShopError as exc:
        return store_page(call, status=HTTPStatus.BAD_REQUEST, here=here,
                          refusal={"text": t.render(exc.why)})
    cart_param = ",".join(f"{i}*{n}" for i, n in cart.lines)
    if who is None:  # keep the cart through the login
        return to_login(f"/r/s/{store}?" + urlencode({**_here_query(here), "cart": cart_param}))
    if not ids.is_store_id(store):
        return message_page(call, HTTPStatus.NOT_FOUND, t.gettext("There is no such store."), t)
    window = f.get("window", "")
    req = shop.Request(store, who.id, who.masked, cart, f.get("mode", "pickup"),
                       float(window) if DIGITS.match(window) else -1.0,
                       f.get("address", ""), here, wave=window == "wave")
    api = call.api
    try:
        # A pickup order needs the store's code key: refuse before placing, not after.
        api.pickup_codec(store, required=req.mode == "pickup" and not req.wave)
        with api.write() as db, db.transaction() as conn:
            placed = shop.place(conn, req, api.now(), api.residents.waves, api.residents.payment)
    except retail_store.RetailError:
        return message_page(call, HTTPStatus.SERVICE_UNAVAILABLE, t.gettext(
            "This store cannot take orders right now."), t)
    except shop.ShopError as exc:
        return _refused(call, t, req, exc, here, cart_param)
    api.send_downlink()
    return Reply(HTTPStatus.SEE_OTHER, b"", "text/plain",
                 (("Location", f"/r/orders#order-{placed.order.id}"),))


def _refused(call: Call, t: Translator, req: shop.Request, exc: shop.ShopError,
             here: geo.Point | None, cart_param: str) -> Reply:
    """Why not, and (stock or capacity) the nearest other store that can take the cart."""
    other = None
    if exc.kind == "full":
        with call.api.read() as db:
            origin = here or stores.get(db.conn, req.store).point
            got = None if origin is None else shop.next_store(
                db.conn, req, origin, call.api.now(), call.api.residents.waves)
        if got is not None:
            p, d = got
            other = {"name": p.name, "address": p.address, "distance": distance_text(t, d),
                     "href": f"/r/s/{p.store}?" + urlencode({**_here_query(here),
                                                             "cart": cart_param})}
    status = HTTPStatus.CONFLICT if exc.kind in ("full", "closed") \
        else HTTPStatus.BAD_REQUEST
    with call.api.read() as db:
        names = _names(db.conn, req.store)
    text = t.render(exc.why)
    short = [names.get(i, i) for i in exc.short]
    return store_page(call, status=status, here=here,
                      refusal={"text": text, "short": short, "other": other,
                               "window": "wave" if req.wave else str(int(req.window_start))},
                      cart=dict(req.cart.lines))


def _names(conn: Any, store: str) -> dict[str, str]:
    cat = retail_store.catalogue(conn, store)
    return {} if cat is None else {i["item"]: i["name"] for i in cat["items"]}


# ---------------------------------------------------------------- my orders


STEPS = (  # the timeline, in order: (state that reaches it, words)
    ("open", N_("Placed")),
    ("received", N_("The store has your order")),
)
ENDS = {"picked_up": N_("Picked up"), "delivered": N_("Delivered"),
        "packed": N_("Packed for delivery"), "out_for_delivery": N_("Out for delivery"),
        "cancelled": N_("Cancelled"), "expired": N_("Not collected in time")}
WAVE_ENDS = {"refunded": N_("Refunded: the store could not take it"),
             "moved": N_("Moved to another store of the area: see its address above")}


def _timeline(t: Translator, order: dict[str, Any], wave: dict[str, Any] | None,
              p: stores.Profile) -> list[dict[str, Any]]:
    seen = {h["state"]: h["at"] for h in order["history"] if h["applied"]}
    if wave is not None:
        return _wave_timeline(t, order, wave, p, seen)
    out = [{"text": t.gettext(text), "at": seen.get(state), "done": state in seen}
           for state, text in STEPS]
    if order["mode"] == "pickup" and order["state"] in ("open", "received"):
        out.append({"text": t.gettext("Ready for pickup in your hour"), "at": None,
                    "done": "received" in seen})
    for state, text in ENDS.items():
        if state in seen:
            out.append({"text": t.gettext(text), "at": seen[state], "done": True})
    return out


def _wave_timeline(t: Translator, order: dict[str, Any], wave: dict[str, Any],
                   p: stores.Profile, seen: dict[str, float]) -> list[dict[str, Any]]:
    """A pre-order: placed, in the delivery of its day (from the cutoff on), arrived
    (the delivery reached the store), ready (the store has the order), then the end."""
    day = format_skeleton("MMMEd", datetime.fromisoformat(str(wave["delivery"])),
                          locale=t.locale) if wave.get("delivery") else ""
    arrived = wave.get("delivered_at")
    out = [{"text": t.gettext("Placed"), "at": seen.get("preorder"), "done": True},
           {"text": t.gettext("In the delivery of %(day)s") % {"day": day},
            "at": wave.get("cutoff_done_at"), "done": wave.get("cutoff_done_at") is not None},
           {"text": t.gettext("Arrived at the store"), "at": arrived,
            "done": arrived is not None}]
    if order["state"] in ("preorder", "open", "received"):
        out.append({"text": t.gettext("Ready for pickup"), "at": None,
                    "done": arrived is not None and "received" in seen})
    if wave.get("outcome") in WAVE_ENDS:
        out.append({"text": t.gettext(WAVE_ENDS[wave["outcome"]]), "at": None, "done": True})
    for state, text in ENDS.items():
        if state in seen and not (state == "cancelled" and wave.get("outcome") == "refunded"):
            out.append({"text": t.gettext(text), "at": seen[state], "done": True})
    return out


def my_orders(call: Call) -> Reply:
    """The resident's own orders, newest first: timeline, pickup code, the store big."""
    t = reader(call)
    call.query("lang")
    who = current(call)
    if who is None:
        return to_login("/r/orders")
    now = call.api.now()
    with call.api.read() as db:
        # The order's store, not the one it was placed at: a pre-order may have been moved
        # to another store of the zone at the cutoff (supply/cutoff.py).
        rows = db.conn.execute(
            "SELECT r.order_id, o.store, r.mode, r.window_start, r.window_end, r.address,"
            " r.amount_fen, r.payment FROM resident_orders r JOIN orders o ON o.id = r.order_id"
            " WHERE r.resident = ? ORDER BY r.order_id DESC LIMIT 50", (who.id,)).fetchall()
        views = [_order_view(call, db.conn, t, r, now) for r in rows]
    return page(call, "r_orders.html", t, who=who, orders=views, now=now)


def _order_view(call: Call, conn: Any, t: Translator, r: Any, now: float) -> dict[str, Any]:
    oid, store = int(r[0]), str(r[1])
    order = retail_store.get_order(conn, store, oid)
    assert order is not None
    p = stores.get(conn, store)
    names = _names(conn, store)
    wave = shop_waves.wave_state(conn, oid)
    code = None
    if order["mode"] == "pickup" and order["state"] in retail_store.RESERVING and \
            order["expires"] > now:
        issuer = call.api.pickup_codec(store, required=False)
        if issuer is not None:
            # One nonce per order: the same code on every visit, so a saved picture works.
            code = issuer.issue(oid, order["expires"], nonce=oid % (1 << 24))
    return {
        "id": oid, "p": p, "mode": order["mode"], "state": order["state"],
        "window": _window_text(t, shop.Window(float(r[3]), float(r[4])), p, now),
        "address": r[5], "amount": int(r[6]), "payment": json.loads(r[7]),
        # What did not come is refunded; with pay at pickup it is simply not charged.
        "refunded": receiving.refunded_fen(conn, oid),
        "lines": [{"name": names.get(ln["item"], ln["item"]), "qty": ln["qty"]}
                  for ln in order["lines"]],
        "timeline": _timeline(t, order, wave, p), "code": code, "wave": wave is not None,
        # Arrived, pickup open, short lines, refunds (cloud_gateway/resident_notices.py).
        "notices": [{"kind": n.kind, "text": n.text(t), "at": n.created_at}
                    for n in resident_notices.for_order(conn, oid)],
        "qr": None if code is None else segno.make(code, error="m").svg_inline(
            border=4, dark="#000", light="#fff", omitsize=True),
        "map": map_link(p) if p.point else None,
        "may_cancel": _may_cancel(order["state"], wave, float(r[3]), now),
        "cutoff": None if wave is None or order["state"] != "preorder" or wave["cutoff_at"]
        is None else when_text(t, float(wave["cutoff_at"]), p, now),
    }


def _may_cancel(state: str, wave: dict[str, Any] | None, window_start: float,
                now: float) -> bool:
    """A pre-order until its wave's cutoff; an order until its pickup hour begins."""
    if wave is None:
        return state in retail_store.RESERVING and now < window_start
    return (state == "preorder" and wave["state"] == "open"
            and wave["cutoff_at"] is not None and now < float(wave["cutoff_at"]))


def cancel(call: Call) -> Reply:
    t = reader(call)
    call.no_query()
    form(call)
    who = current(call)
    if who is None:
        return to_login("/r/orders")
    oid = call.path_params["order_id"]
    if not DIGITS.match(oid):
        return message_page(call, HTTPStatus.NOT_FOUND, t.gettext("There is no such order."), t)
    now = call.api.now()
    with call.api.write() as db, db.transaction() as conn:
        row = conn.execute("SELECT o.store, r.window_start, o.state FROM resident_orders r"
                           " JOIN orders o ON o.id = r.order_id WHERE r.order_id = ?"
                           " AND r.resident = ?", (int(oid), who.id)).fetchone()
        if row is None:  # another resident's order looks exactly like no order
            return message_page(call, HTTPStatus.NOT_FOUND,
                                t.gettext("There is no such order."), t)
        wave = shop_waves.wave_state(conn, int(oid))
        if wave is not None and row[2] != "preorder":
            return message_page(call, HTTPStatus.CONFLICT, t.gettext(
                "Too late to cancel: the delivery was ordered at the cutoff."), t)
        if wave is None and now >= float(row[1]):
            return message_page(call, HTTPStatus.CONFLICT, t.gettext(
                "Too late to cancel: your pickup hour has begun."), t)
        try:
            retail_store.cancel_order(conn, str(row[0]), int(oid), "cancelled by the resident",
                                      now, f"resident:{who.id}")
        except retail_store.RetailError:
            return message_page(call, HTTPStatus.CONFLICT, t.gettext(
                "Too late to cancel: the delivery was ordered at the cutoff.")
                if wave is not None else t.gettext(
                "Too late to cancel: the store has already handed it over."), t)
    call.api.send_downlink()
    return Reply(HTTPStatus.SEE_OTHER, b"", "text/plain",
                 (("Location", f"/r/orders#order-{oid}"),))


ROUTES: list[Route] = [
    route("/r", get=near_page),
    route("/r/s/{store}", get=store_page),
    route("/r/s/{store}/order", post=place_order, body_limit=MAX_FORM_BYTES),
    route("/r/orders", get=my_orders),
    route("/r/orders/{order_id}/cancel", post=cancel, body_limit=MAX_FORM_BYTES),
]
