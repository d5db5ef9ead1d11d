"""The counter: each scan sent where it belongs (a pickup code, a product in the current
mode), the counter page's requests, and what the page shows.

The serial scanner and the page both arrive here through the agent's loop (see
edge.kiosk for why); a RetailError becomes a red verdict on the page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge.retail import ledger, receiving
from edge.retail.desk import Desk, RetailError, quantities, whole_number
from edge.retail.orders import Orders
from edge.retail.pickup_flow import PickupFlow
from edge.retail.receive_flow import ReceiveFlow
from edge.retail.smart_fridge import SmartFridges
from edge.retail.stock_forms import StockForms
from edge.scan.errors import PickupError, ScanError, scan_words
from edge.scan.parse import Scan, parse_scan
from edge.words import Clock, Day
from xiaodian.i18n import N_, Message

# "stock": a product scan only names the item for the stock form (adjust, waste by count).
MODES = ("sale", "receive", "waste", "stock")
RETAIL_DEVICES = ("ledger", "orders", "counter")  # the outbox's retail events, for "unsent"


class Counter:
    def __init__(self, desk: Desk, fridges: SmartFridges, pickup: PickupFlow, orders: Orders,
                 forms: StockForms, receive: ReceiveFlow) -> None:
        self.desk = desk
        self.receive = receive
        self.fridges = fridges
        self.pickup = pickup
        self.orders = orders
        self.forms = forms
        self.mode = "sale"

    def scan(self, line: str, source: str = "counter") -> dict[str, Any]:
        """One scan (serial scanner or the page): the verdict the counter page shows."""
        try:
            scan = parse_scan(line)
        except PickupError:
            return self.pickup.pickup(line.strip(" \t\r\n"), source)  # refused, and counted
        except ScanError as exc:
            return self.desk.say(False, Message(N_("Cannot read this barcode")),
                                 scan_words(exc.reason), reason=exc.reason, source=source)
        if scan.kind == "pickup":
            return self.pickup.pickup(scan.data, source)
        if scan.kind in ("product", "variable_measure", "gs1"):
            return self._product(scan, source, line)
        return self.desk.say(False, Message(N_("Not a product or pickup code")),
                             Message(N_("%(kind)s barcode: %(data)s"),
                                     {"kind": scan.symbology_name or "?",
                                      "data": scan.data[:40]}),
                             source=source)

    def _product(self, scan: Scan, source: str, line: str = "",
                 below_zero: str | None = None) -> dict[str, Any]:
        desk = self.desk
        h = self.fridges.handover
        if h is not None:
            # During a handover a product scan is the clerk checking an item: no stock moves.
            checked = _item_key(scan) or ""
            ordered = {ln.item: ln.qty for ln in h.lines}.get(checked)
            return desk.say(ordered is not None,
                            desk.name(checked),
                            Message(N_("In order %(order)s: %(n)s ordered."),
                                    {"order": h.order, "n": ordered}) if ordered is not None
                            else Message(N_("NOT in order %(order)s."), {"order": h.order}),
                            source=source, order=h.order)
        item = _item_key(scan)
        cat = desk.catalogue.get(item or "")
        if item is None or cat is None:
            return desk.say(False, Message(N_("Item not in the catalogue")),
                            Message(N_("%(item)s: not sold here yet; nothing recorded."),
                                    {"item": item or scan.data[:40]}),
                            source=source)
        if self.mode == "receive":  # a manifest open: the piece is counted against it
            try:
                counted = self.receive.scan(item, scan.expiry, source)
            except RetailError as exc:  # the scanner's path has no caller to tell
                return desk.say(False, Message(N_("Not done")), exc.words, reason=exc.reason)
            if counted is not None:
                return counted
        if self.mode == "stock":
            return desk.say(True, cat.name,
                            Message(N_("Set the pieces and the reason, then Record.")),
                            source=source, item=item, batch=scan.batch,
                            expiry=scan.expiry.isoformat() if scan.expiry else None,
                            stock_item=True)
        return self.forms.scanned(self.mode, scan, item, cat, source, line, below_zero)

    def handle(self, action: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """A request from the counter page; RetailError becomes a red verdict."""
        try:
            if action == "scan":
                code = body.get("code")
                if not isinstance(code, str) or not code.strip():
                    raise RetailError(Message(N_("Nothing was scanned.")))
                reason = body.get("below_zero")
                if reason is not None:  # the clerk's answer to "sell below zero?"
                    return self.sell_below_zero(code[:600], reason)
                return self.scan(code[:600], source="page")
            if action == "mode":
                if body.get("mode") not in MODES:
                    raise RetailError(Message(N_("Unknown counter mode.")))
                self.mode = str(body["mode"])
                self.desk.version += 1
                return {"ok": True, "mode": self.mode}
            if action == "confirm":
                override = body.get("override")
                if override is not None and not isinstance(override, str):
                    raise RetailError(Message(N_("Choose why it is handed over unweighed.")))
                return self.pickup.confirm(whole_number(body, "order"),
                                           quantities(body.get("quantities")), override)
            if action == "abort":
                return self.pickup.abort()
            if action == "delivery":
                return self.orders.advance_delivery(whole_number(body, "order"))
            if action == "adjust":
                return self.forms.adjust(body)
            if action == "waste":
                return self.forms.waste(body)
            if action == "receiving":
                answer = self.receive.handle(body)
                if body.get("op") == "open":
                    self.mode = "receive"
                return answer
            raise RetailError(Message(N_("Unknown request.")))
        except RetailError as exc:
            return self.desk.say(False, Message(N_("Not done")), exc.words, reason=exc.reason)

    def sell_below_zero(self, code: str, reason: Any) -> dict[str, Any]:
        """The clerk's answer to "the ledger has none of this: sell it anyway?": the same
        scan again, in sale mode, with the reason that is recorded with the sale."""
        if self.mode != "sale":
            raise RetailError(Message(N_("Only a sale asks this; scan the item again.")))
        try:
            scan = parse_scan(code)
        except ScanError as exc:
            raise RetailError(scan_words(exc.reason)) from None
        if scan.kind not in ("product", "variable_measure", "gs1"):
            raise RetailError(Message(N_("Scan the item again.")))
        return self._product(scan, "page", code, below_zero=str(reason))

    def view(self) -> dict[str, Any]:
        """Everything the counter page shows, as JSON."""
        desk = self.desk
        wall, _ = desk.now()
        orders, deliveries = self.orders.open_orders(wall)
        today = desk.today(wall).isoformat()
        expiring = [{"item": lot.item, "name": desk.name(lot.item), "batch": lot.batch,
                     "expiry": lot.expiry, "qty": lot.qty,
                     "urgent": (lot.expiry or "") <= today,  # expired or due today
                     "when": (Message(N_("expired")) if (lot.expiry or "") < today else
                              Message(N_("today")) if lot.expiry == today else
                              Day(lot.expiry or ""))}
                    for lot in desk.expiry_list()]
        # What the cloud's manifests say is coming (today's and later deliveries); the
        # clerk receives it with the Receive mode, checking it against this list.
        received = receiving.received_ids(desk.db)
        incoming = [{"manifest": m.id, "received": m.id in received,
                     "when": Message(N_("today")) if m.delivery == today else Day(m.delivery),
                     "lines": [{"name": ln.name, "qty": ln.qty,
                                "preorders": sum(s.qty for s in ln.serves)}
                               for ln in receiving.to_count(m)]}
                    for m in ledger.manifests(desk.db, since=today)]
        unsent = desk.db.execute(
            "SELECT count(*) FROM outbox WHERE kind='events' AND device IN (?,?,?)",
            RETAIL_DEVICES).fetchone()[0]
        h = self.fridges.handover
        for o in orders:
            o["until"] = Clock(o["expires"])
        return {"mode": self.mode, "verdict": desk.verdict,
                "handover": None if h is None else h.view(),
                "orders": orders, "deliveries": deliveries, "expiring": expiring,
                "incoming": incoming, "receiving": self.receive.view(),
                "window_days": desk.settings.expiry_window_days, "unsent": unsent,
                "pickup_key": self.pickup.codec is not None,
                "catalogue": [{"item": c.item, "name": c.name} for c in
                              sorted(desk.catalogue.values(), key=lambda c: (c.name, c.item))],
                "scan_paused_s": round(self.pickup.limiter.blocked(wall))}


def _item_key(scan: Scan) -> str | None:
    """The catalogue key of a product scan: its GTIN, or in:<n> for a store-weighed item."""
    if scan.kind == "variable_measure" and scan.item is not None:
        return f"in:{int(scan.item)}"
    return scan.gtin
