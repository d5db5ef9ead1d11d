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

from .. import geo, resident_notices, shop, stores
from .. import retail as retail_store
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
                map=map_link(profile), who=current(call), refusal=refusal, now=now)


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
                       f.get("address", ""), here)
    api = call.api
    try:
        # A pickup order needs the store's code key: refuse before placing, not after.
        api.pickup_codec(store, required=req.mode == "pickup")
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
    status = HTTPStatus.CONFLICT if exc.kind == "full" else HTTPStatus.BAD_REQUEST
    with call.api.read() as db:
        names = _names(db.conn, req.store)
    text = t.render(exc.why)
    short = [names.get(i, i) for i in exc.short]
    return store_page(call, status=status, here=here,
                      refusal={"text": text, "short": short, "other": other},
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


def _timeline(order: dict[str, Any]) -> list[dict[str, Any]]:
    seen = {h["state"]: h["at"] for h in order["history"] if h["applied"]}
    out = [{"text": text, "at": seen.get(state), "done": state in seen}
           for state, text in STEPS]
    if order["mode"] == "pickup" and order["state"] in ("open", "received"):
        out.append({"text": N_("Ready for pickup in your hour"), "at": None,
                    "done": "received" in seen})
    for state, text in ENDS.items():
        if state in seen:
            out.append({"text": text, "at": seen[state], "done": True})
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
        rows = db.conn.execute(
            "SELECT order_id, store, mode, window_start, window_end, address, amount_fen,"
            " payment FROM resident_orders WHERE resident = ? ORDER BY order_id DESC LIMIT 50",
            (who.id,)).fetchall()
        views = [_order_view(call, db.conn, t, r, now) for r in rows]
    return page(call, "r_orders.html", t, who=who, orders=views, now=now)


def _order_view(call: Call, conn: Any, t: Translator, r: Any, now: float) -> dict[str, Any]:
    oid, store = int(r[0]), str(r[1])
    order = retail_store.get_order(conn, store, oid)
    assert order is not None
    p = stores.get(conn, store)
    names = _names(conn, store)
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
        "lines": [{"name": names.get(ln["item"], ln["item"]), "qty": ln["qty"]}
                  for ln in order["lines"]],
        "timeline": _timeline(order), "code": code,
        # Arrived, pickup open, short lines, refunds (cloud_gateway/resident_notices.py).
        "notices": [{"kind": n.kind, "text": n.text(t), "at": n.created_at}
                    for n in resident_notices.for_order(conn, oid)],
        "qr": None if code is None else segno.make(code, error="m").svg_inline(
            border=4, dark="#000", light="#fff", omitsize=True),
        "map": map_link(p) if p.point else None,
        "may_cancel": order["state"] in retail_store.RESERVING and now < float(r[3]),
    }


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
        row = conn.execute("SELECT store, window_start FROM resident_orders WHERE order_id = ?"
                           " AND resident = ?", (int(oid), who.id)).fetchone()
        if row is None:  # another resident's order looks exactly like no order
            return message_page(call, HTTPStatus.NOT_FOUND,
                                t.gettext("There is no such order."), t)
        if now >= float(row[1]):
            return message_page(call, HTTPStatus.CONFLICT, t.gettext(
                "Too late to cancel: your pickup hour has begun."), t)
        try:
            retail_store.cancel_order(conn, str(row[0]), int(oid), "cancelled by the resident",
                                      now, f"resident:{who.id}")
        except retail_store.RetailError:
            return message_page(call, HTTPStatus.CONFLICT, t.gettext(
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
