"""What a resident can order from a store, and placing it: the pure rules and their tables.

- **Stores near a point**: every store with a position, nearest first (brute force over the
  stores' GCJ-02 points: thousands of stores cost a few milliseconds), with whether it is
  open now on its own clock and whether its fridge can take chilled orders.
- **Cold chain**: a fridge in critical alarm (an active critical alert) or silent (no
  reading received for `FRIDGE_SILENT_S`) takes no chilled or frozen order: an item placed
  in that fridge (its catalogue location) is not offered, and an item whose fridge is not
  known is offered only while every fridge of the store is fine. A store with no fridge
  reporting offers no chilled item at all.
- **The promise**: an item is offered only with a price, sold by the piece, and either
  available now (on hand minus open orders' reservations: `retail.availability`) or brought
  by the next delivery wave as a pre-order (`WaveSource`: the supply cycle's,
  `shop_waves.SupplyWaves`; `NoWaves` for a deployment without one).
- **Placing**: a pickup hour inside the opening hours, or a delivery inside the radius; at
  most `slot_capacity` orders per pickup hour; the amount in fen; payment through a
  `PaymentProvider` (present: pay at pickup). The order itself is `retail.create_order`, so
  reservations, the downlink to the store and its pickup code stay as they were.

Refusals are `ShopError` with a `Message` the page renders in the reader's language.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from xiaodian.i18n import N_, Message
from xiaodian.wire import ids, retail
from xiaodian.wire.payloads import PayloadError

from . import geo, residents, sql, stores
from . import retail as retail_store
from .errors import CloudError

# What residents pay is the catalogue item's `price_fen` (cloud_gateway/retail.py); the
# `shop_prices` table of before is folded into it when a database is opened.
SCHEMA = """
-- A resident's order: who (residents.id), the pickup hour or delivery address, the amount.
CREATE TABLE IF NOT EXISTS resident_orders (
    order_id BIGINT PRIMARY KEY,
    resident BIGINT NOT NULL,
    store TEXT NOT NULL,
    mode TEXT NOT NULL,
    window_start DOUBLE PRECISION NOT NULL,
    window_end DOUBLE PRECISION NOT NULL,
    address TEXT NOT NULL,
    amount_fen BIGINT NOT NULL,
    payment TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS resident_orders_by_resident ON resident_orders (resident, order_id);
CREATE INDEX IF NOT EXISTS resident_orders_by_slot ON resident_orders (store, window_start);
"""
TABLES = ("resident_orders",)
FRIDGE_SILENT_S = 15 * 60  # a fridge that has said nothing for this long is offline
COLD = ("chilled", "frozen")
PREP_S = 30 * 60  # the store needs this long before the first pickup hour
SLOT_S = 3600
MAX_SLOTS = 8
MAX_ADDRESS = 120
MAX_PRICE_FEN = retail_store.MAX_PRICE_FEN
LIVE_STATES = ("open", "received", "packed", "out_for_delivery", "picked_up", "delivered")


class ShopError(CloudError):
    """A resident's request refused; `why` in the reader's words, `short` what was short."""

    def __init__(self, why: Message, *, kind: str = "invalid",
                 short: Sequence[str] = ()) -> None:
        super().__init__(str(why))
        self.why = why
        self.kind = kind  # invalid, not_found, full (stock or capacity), closed
        self.short = tuple(short)


# ---------------------------------------------------------------- interfaces


@dataclass(frozen=True)
class Wave:
    """The next delivery a store gets: what it can bring to sell ahead, and the cutoff."""

    cutoff: float
    arrives: float  # the delivery day's pickup window opens
    presale: Mapping[str, int]  # item -> pieces that can still be promised
    name: str = ""  # the wave (its cutoff's local date)
    until: float = 0.0  # the pickup window closes
    delivery: str = ""  # the delivery day, ISO
    tz: str = ""  # the zone's time zone (the cutoff's clock)
    closed: str | None = None  # pickup_full, fridge_full: the store takes no more


class WaveSource(Protocol):
    def next_wave(self, conn: sql.Connection, store: str, now: float) -> Wave | None: ...

    def refusal(self, conn: sql.Connection, store: str, lines: Sequence[tuple[str, int]],
                now: float) -> str | None:
        """Why the wave cannot take these lines together, or None."""
        ...

    def place(self, conn: sql.Connection, store: str, req: retail_store.OrderRequest,
              now: float, by: str) -> retail.Order:
        """The pre-order riding the wave; ShopError (full, closed) if it cannot."""
        ...


class NoWaves:
    """No order cycles: only what is on hand is promised."""

    def next_wave(self, conn: sql.Connection, store: str, now: float) -> Wave | None:
        return None

    def refusal(self, conn: sql.Connection, store: str, lines: Sequence[tuple[str, int]],
                now: float) -> str | None:
        return "no_wave"

    def place(self, conn: sql.Connection, store: str, req: retail_store.OrderRequest,
              now: float, by: str) -> retail.Order:
        raise ShopError(Message(N_("This store takes no pre-orders."), {}), kind="closed")


@dataclass(frozen=True)
class Payment:
    method: str  # "pay_at_pickup", ...
    state: str  # "due", "paid", "refunded"


class PaymentProvider(Protocol):
    def start(self, order_id: int, amount_fen: int) -> Payment: ...


class PayAtPickup:
    """Payment itself is out of scope: the resident pays the total at the counter."""

    def start(self, order_id: int, amount_fen: int) -> Payment:
        return Payment("pay_at_pickup", "due")


# ---------------------------------------------------------------- prices, fridges


def set_price(conn: sql.Connection, store: str, item: str, price_fen: int | None,
              now: float) -> None:
    """The price residents pay for an item of the store's catalogue (None: none, so it is
    not offered to them); kept with the catalogue item (retail.set_price)."""
    if not ids.is_store_id(store):
        raise ShopError(Message(N_("That is not a store."), {}))
    try:
        retail.check_item(item, "item")
    except PayloadError as exc:
        raise ShopError(Message(N_("That is not an item."), {}), kind="invalid") from exc
    if price_fen is not None and not 0 < price_fen <= MAX_PRICE_FEN:
        raise ShopError(Message(N_("A price is 1 to 10000000 fen."), {}))
    try:
        retail_store.set_price(conn, store, item, price_fen, now)
    except retail_store.RetailError as exc:
        raise ShopError(Message(N_("That item is not in the store's catalogue: push the"
                                   " catalogue first."), {}), kind="not_found") from exc


def prices(conn: sql.Connection, store: str) -> dict[str, int]:
    return retail_store.prices(conn, store)


@dataclass(frozen=True)
class ColdChain:
    """Which of a store's fridges can hold a resident's chilled order now."""

    fridges: Mapping[str, bool]  # fridge -> reporting and not in critical alarm

    @property
    def state(self) -> str:
        """all (every fridge fine), some, or none (none fine, or none reporting at all)."""
        good = sum(self.fridges.values())
        return "none" if good == 0 else "all" if good == len(self.fridges) else "some"

    def holds(self, location: Mapping[str, Any] | None) -> bool:
        """Whether an item kept at `location` can be promised: its own fridge must be fine;
        an item whose fridge is not known needs every fridge fine."""
        fridge = (location or {}).get("fridge")
        if fridge is not None:
            return self.fridges.get(str(fridge), False)
        return self.state == "all"


def cold_chain(conn: sql.Connection, store: str, now: float) -> ColdChain:
    """The store's fridges as the cloud last heard them: silent for `FRIDGE_SILENT_S`, or
    with an active critical alert, a fridge takes no chilled order."""
    last = {str(r[0]): float(r[1]) for r in conn.execute(
        "SELECT device, MAX(last_received_at) FROM streams WHERE store = ? AND kind = 'readings'"
        " GROUP BY device", (store,))}
    alarming = {str(r[0]) for r in conn.execute(
        "SELECT DISTINCT fridge FROM alerts WHERE store = ? AND state = 'active'"
        " AND severity = 'critical'", (store,))}
    return ColdChain({f: at >= now - FRIDGE_SILENT_S and f not in alarming
                      for f, at in last.items()})


# ---------------------------------------------------------------- stores near a point


@dataclass(frozen=True)
class Nearby:
    profile: stores.Profile
    distance_m: float
    open_now: bool | None
    cold: str  # ColdChain.state: all, some, none
    delivers_here: bool


def nearby(conn: sql.Connection, here: geo.Point, now: float, limit: int = 20) -> list[Nearby]:
    """The `limit` stores nearest to `here`, nearest first (ties by store id).

    Exact, without reading every store: the stores inside a box around a circle of radius r
    are fetched (an index on the latitude); those within r are exactly the stores within r,
    so once there are `limit` of them they are the nearest. Otherwise r grows fourfold; past
    `_ALL_M` every located store is taken.
    """
    r = _FIRST_M
    while True:
        if r >= _ALL_M:
            found = stores.located(conn)
        else:
            dlat = math.degrees(r / geo.EARTH_RADIUS_M)
            widest = math.radians(min(90.0, abs(here.lat) + dlat))
            if here.lat - dlat < -90 or here.lat + dlat > 90 or math.cos(widest) < 1e-6:
                r = _ALL_M
                continue
            dlon = math.degrees(r / (geo.EARTH_RADIUS_M * math.cos(widest)))
            if dlon >= 180:
                r = _ALL_M
                continue
            west, east = _wrap(here.lon - dlon), _wrap(here.lon + dlon)
            found = stores.located_in(conn, here.lat - dlat, here.lat + dlat, west, east)
        ranked = sorted(((geo.distance_m(here, p.point), p) for p in found if p.point),
                        key=lambda dp: (dp[0], dp[1].store))
        within = [(d, p) for d, p in ranked if d <= r or r >= _ALL_M]
        if len(within) >= limit or r >= _ALL_M:
            break
        r *= 4
    return [Nearby(p, d, stores.open_at(p, now), cold_chain(conn, p.store, now).state,
                   d <= p.delivery_radius_m and p.delivery_radius_m > 0)
            for d, p in within[:limit]]


_FIRST_M = 2_000.0
_ALL_M = 2_000_000.0  # beyond this, the box is no help: take every store


def _wrap(lon: float) -> float:
    return (lon + 180.0) % 360.0 - 180.0


def districts(conn: sql.Connection) -> list[tuple[str, geo.Point]]:
    """The districts stores name, each at the middle of its stores: where a resident who
    does not share a position can start from."""
    by: dict[str, list[geo.Point]] = {}
    for p in stores.located(conn):
        if p.district and p.point:
            by.setdefault(p.district, []).append(p.point)
    return [(d, geo.Point(sum(q.lat for q in pts) / len(pts), sum(q.lon for q in pts) / len(pts)))
            for d, pts in sorted(by.items())]


# ---------------------------------------------------------------- what a store can promise


@dataclass(frozen=True)
class Offer:
    item: str
    name: str
    storage: str
    price_fen: int
    available: int  # now: on hand minus reservations
    presale: int = 0  # from the next wave
    cutoff: float | None = None


def promise(conn: sql.Connection, store: str, now: float,
            waves: WaveSource) -> list[Offer]:
    """What the store can promise a resident now; never an item it could not hand over."""
    cat = retail_store.catalogue(conn, store)
    if cat is None:
        return []
    price = prices(conn, store)
    cold = cold_chain(conn, store, now)
    avail = retail_store.availability(conn, store, now, [i["item"] for i in cat["items"]])
    wave = waves.next_wave(conn, store, now)
    out = []
    for it in cat["items"]:
        item = it["item"]
        if item not in price or it["unit"] != "piece" or (
                it["storage"] in COLD and not cold.holds(it.get("location"))):
            continue
        now_n = max(0, avail[item]["available"])
        pre = max(0, int(wave.presale.get(item, 0))) if wave and wave.cutoff > now else 0
        if now_n + pre > 0:
            out.append(Offer(item, it["name"], it["storage"], price[item], now_n, pre,
                             wave.cutoff if wave is not None and pre else None))
    return out


# ---------------------------------------------------------------- pickup hours


@dataclass(frozen=True)
class Window:
    start: float
    end: float


def windows(profile: stores.Profile, now: float) -> list[Window]:
    """The next pickup hours inside the opening hours (store's zone), after the prep time."""
    zone = profile.zone
    first = datetime.fromtimestamp(now + PREP_S, zone).replace(minute=0, second=0,
                                                               microsecond=0)
    out: list[Window] = []
    for h in range(1, 49):
        start = first + timedelta(hours=h)
        s = start.timestamp()
        if stores.open_at(profile, s) is not False and stores.open_at(
                profile, s + SLOT_S - 60) is not False:
            out.append(Window(s, s + SLOT_S))
        if len(out) >= MAX_SLOTS:
            break
    return out


def booked(conn: sql.Connection, store: str, start: float) -> int:
    row = conn.execute(
        "SELECT COUNT(*) FROM resident_orders r JOIN orders o ON o.id = r.order_id"
        f" WHERE r.store = ? AND r.window_start = ? AND o.state IN"
        f" ({', '.join('?' for _ in LIVE_STATES)})"
        # A pre-order counts against its wave's pickups (admission), not against an hour.
        " AND r.order_id NOT IN (SELECT order_id FROM wave_orders)",
        (store, start, *LIVE_STATES)).fetchone()
    return int(row[0])


# ---------------------------------------------------------------- placing an order


@dataclass(frozen=True)
class Cart:
    lines: tuple[tuple[str, int], ...]  # (item, qty)

    @classmethod
    def parse(cls, fields: Mapping[str, str]) -> Cart:
        """Form fields "qty:<item>" = a whole number; zeros dropped."""
        lines = []
        for key, raw in sorted(fields.items()):
            if not key.startswith("qty:"):
                continue
            raw = raw.strip() or "0"
            if not raw.isascii() or not raw.isdigit() or len(raw) > 4:
                raise ShopError(Message(N_("A quantity is a whole number."), {}))
            if int(raw) > 0:
                lines.append((key[4:], int(raw)))
        if not lines:
            raise ShopError(Message(N_("The cart is empty: choose at least one item."), {}))
        if len(lines) > retail.MAX_LINES:
            raise ShopError(Message(N_("Too many different items in one order."), {}))
        return cls(tuple(lines))


@dataclass(frozen=True)
class Placed:
    order: retail.Order
    amount_fen: int
    payment: Payment
    window: Window


@dataclass(frozen=True)
class Request:
    store: str
    resident: int
    customer: str  # what the counter shows (a masked phone number)
    cart: Cart
    mode: str
    window_start: float
    address: str = ""
    here: geo.Point | None = None  # where the resident is (delivery: inside the radius)
    extra: dict[str, Any] = field(default_factory=dict)
    wave: bool = False  # a pre-order riding the next delivery (window_start is ignored)


def check(conn: sql.Connection, req: Request, now: float,
          waves: WaveSource) -> tuple[stores.Profile, Window, int]:
    """The store's profile, the chosen hour and the amount, or the reason it cannot take it."""
    profile = stores.get(conn, req.store)
    if profile.point is None:
        raise ShopError(Message(N_("There is no such store."), {}), kind="not_found")
    if req.mode == "pickup" and not profile.pickup:
        raise ShopError(Message(N_("This store does not hand orders over at the counter."), {}))
    if req.mode == "delivery":
        if profile.delivery_radius_m <= 0:
            raise ShopError(Message(N_("This store does not deliver."), {}))
        if not req.address.strip() or len(req.address) > MAX_ADDRESS:
            raise ShopError(Message(N_("Give the delivery address (up to 120 characters)."),
                                    {}))
        if req.here is None:
            raise ShopError(Message(N_("Share your position so the store can tell whether it"
                                       " delivers to you."), {}))
        if geo.distance_m(req.here, profile.point) > profile.delivery_radius_m:
            raise ShopError(Message(N_("You are outside this store's delivery area"
                                       " (%(km)s km)."),
                                    {"km": f"{profile.delivery_radius_m / 1000:g}"}),
                            kind="full")
    if req.mode not in retail.ORDER_MODES:
        raise ShopError(Message(N_("Choose pickup or delivery."), {}))
    if req.wave:
        wave_window, wave_amount = _check_wave(conn, req, now, waves)
        return profile, wave_window, wave_amount
    window = next((w for w in windows(profile, now) if w.start == req.window_start), None)
    if window is None:
        raise ShopError(Message(N_("Choose one of the pickup times shown."), {}))
    offers = {o.item: o for o in promise(conn, req.store, now, waves)}
    short = [item for item, qty in req.cart.lines
             if item not in offers or qty > offers[item].available]
    if short:
        raise ShopError(Message(N_("This store cannot promise everything in your cart."), {}),
                        kind="full", short=short)
    if booked(conn, req.store, window.start) >= profile.slot_capacity:
        raise ShopError(Message(N_("This store has no room left for orders in that hour."), {}),
                        kind="full")
    amount = sum(offers[item].price_fen * qty for item, qty in req.cart.lines)
    return profile, window, amount


def _check_wave(conn: sql.Connection, req: Request, now: float,
                waves: WaveSource) -> tuple[Window, int]:
    """A pre-order: collected at the store on the delivery day, only what the wave can
    still bring, and only while the store has room in it."""
    if req.mode != "pickup":
        raise ShopError(Message(N_("Pre-orders are collected at the store."), {}))
    wave = waves.next_wave(conn, req.store, now)
    if wave is None or wave.cutoff <= now:
        raise ShopError(Message(N_("This store takes no pre-orders for the next delivery"
                                   " now."), {}), kind="closed")
    full = Message(N_("This store's next delivery is full: it takes no more pre-orders."), {})
    if wave.closed is not None:
        raise ShopError(full, kind="full")
    offers = {o.item: o for o in promise(conn, req.store, now, waves)}
    short = [item for item, qty in req.cart.lines
             if item not in offers or qty > offers[item].presale]
    if short:
        raise ShopError(Message(N_("This store cannot promise everything in your cart."), {}),
                        kind="full", short=short)
    if waves.refusal(conn, req.store, req.cart.lines, now) is not None:
        raise ShopError(full, kind="full")
    amount = sum(offers[item].price_fen * qty for item, qty in req.cart.lines)
    return Window(wave.arrives, wave.until), amount


def place(conn: sql.Connection, req: Request, now: float, waves: WaveSource,
          payment: PaymentProvider) -> Placed:
    """Check and place a resident's order in the caller's transaction: an ordinary order
    (reserving what is on hand) or a pre-order riding the next wave."""
    _profile, window, amount = check(conn, req, now, waves)
    expires_in = max(retail_store.MIN_EXPIRES_IN_S, math.ceil(window.end - now))
    order_req = retail_store.OrderRequest(
        tuple(retail.OrderLine(i, q) for i, q in req.cart.lines), req.mode,  # type: ignore[arg-type]
        req.customer, min(expires_in, retail_store.MAX_EXPIRES_IN_S))
    by = f"resident:{req.resident}"
    if req.wave:
        order = waves.place(conn, req.store, order_req, now, by)
    else:
        try:
            order = retail_store.create_order(conn, req.store, order_req, now, by)
        except retail_store.RetailError as exc:  # a race with another order: it is short
            raise ShopError(Message(N_("This store cannot promise everything in your cart."),
                                    {}), kind="full") from exc
    paid = payment.start(order.id, amount)
    conn.execute(
        "INSERT INTO resident_orders (order_id, resident, store, mode, window_start,"
        " window_end, address, amount_fen, payment, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (order.id, req.resident, req.store, req.mode, window.start, window.end,
         " ".join(req.address.split()), amount,
         json.dumps({"method": paid.method, "state": paid.state}), now))
    return Placed(order, amount, paid, window)


def next_store(conn: sql.Connection, req: Request, origin: geo.Point, now: float,
               waves: WaveSource) -> tuple[stores.Profile, float] | None:
    """The nearest other store that can take the same cart (at its first free hour, or for
    a pre-order in its own next wave)."""
    for near in nearby(conn, origin, now, limit=50):
        if near.profile.store == req.store:
            continue
        starts = [-1.0] if req.wave else [w.start for w in windows(near.profile, now)]
        for start in starts:
            try:
                check(conn, Request(near.profile.store, req.resident, req.customer, req.cart,
                                    req.mode, start, req.address, req.here, wave=req.wave),
                      now, waves)
            except ShopError as exc:
                if exc.kind == "full" and not exc.short:
                    continue  # this hour is full: try the next one
                break
            return near.profile, near.distance_m
    return None


@dataclass
class Services:
    """What the resident pages plug in: the code sender, payment, the next wave."""

    sender: residents.CodeSender = field(default_factory=residents.LogSender)
    payment: PaymentProvider = field(default_factory=PayAtPickup)
    waves: WaveSource = field(default_factory=lambda: _supply_waves())


def _supply_waves() -> WaveSource:
    from .shop_waves import SupplyWaves  # it builds on this module

    return SupplyWaves()
