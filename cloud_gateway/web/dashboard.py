"""The operator's dashboard: every store the person covers, open alerts first.

Rendered on the server in the reader's language, times in each store's own zone; the page
refreshes itself by fetching itself again. Each store links to its owner page.
"""

from __future__ import annotations

from typing import Any

from xiaodian.i18n import DEFAULT_TZ

from .. import haccp, stores
from .. import retail as retail_store
from .core import Call, Reply
from .owner import who_or_refusal
from .page import page, reader

REFRESH_S = 5
ORDERS_SHOWN = 10


def dashboard(call: Call) -> Reply:
    """The operator's dashboard (HTML): stores, open alerts, fridges, gaps, stock, orders.
    ---
    parameters:
      - {name: lang, in: query, schema: {enum: [zh-CN, en]}}
    """
    t = reader(call)
    call.query("lang")
    got = who_or_refusal(call, t, "store.read")
    if isinstance(got, Reply):
        return got
    who = got
    now = call.api.now()
    cards: list[dict[str, Any]] = []
    with call.api.read() as db:
        for s in db.stores():
            name = s["store"]
            if not who.covers(name):
                continue
            alerts = [a for a in haccp.load_alerts(db.conn, name)
                      if a.active and a.audience != "terminal"]
            alerts.sort(key=lambda a: (a.severity != "critical", a.started_at))
            cards.append({
                "state": s, "profile": stores.get(db.conn, name),
                "alerts": [a.to_dict() for a in alerts],
                "fridges": db.fridges(name),
                "stock": retail_store.stock_view(db.conn, name, now)["items"],
                "orders": (retail_store.list_orders(db.conn, name, limit=ORDERS_SHOWN)
                           if who.may("orders.read", name) else None),
            })
    cards.sort(key=lambda c: (not c["alerts"], c["profile"].store))  # stores in trouble first
    return page(call, "dashboard.html", t, who=who, cards=cards, now=now,
                refresh_s=REFRESH_S, default_tz=DEFAULT_TZ,
                open_alerts=sum(len(c["alerts"]) for c in cards))
