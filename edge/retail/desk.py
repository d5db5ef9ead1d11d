"""What every part of retail at the terminal shares: the agent's database and clock, the
catalogue, the verdict the counter page shows, and the one-transaction write.

Each change goes through `Desk.commit`: the outbox events the cloud will get and the rows
that record the change (ledger, order state) commit together, so with the network down
everything goes on and is sent later, exactly once.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from edge.config import RetailSettings
from edge.retail import holds, ledger, receiving
from edge.retail.verify import OrderState
from edge.store import EdgeStore, NewEvent
from edge.wallclock import WallClock
from edge.words import Facts, Sentences
from xiaodian.i18n import DEFAULT_TZ, N_, Message
from xiaodian.wire.retail import (
    CatalogueItem,
    ExpiryLine,
    Movement,
    Order,
    OrderLine,
    expiry_data,
    movement_data,
)

from ..errors import EdgeError

EventRow = tuple[str, str, dict[str, Any]]  # an outbox event: (device, type, data)
Writer = Callable[[sqlite3.Connection], None]  # rows written in the same transaction


def local_date(wall: float, tz: str = DEFAULT_TZ) -> date:
    """The store's calendar day at `wall` (in its own time zone, not the terminal's)."""
    return datetime.fromtimestamp(wall, UTC).astimezone(ZoneInfo(tz)).date()


class RetailError(EdgeError):
    """A request the clerk made that cannot be done; `words` says why, for the page."""

    def __init__(self, words: Message, reason: str = "refused") -> None:
        super().__init__(str(words))
        self.words = words
        self.reason = reason


Text = Message | Sentences | Facts | str  # a verdict's title and message; str: data (a name)


class Desk:
    """Shared state of the counter (owned by the agent's thread) and the helpers that
    write it; the parts (counter, pickup flow, orders, stock forms) hold one each."""

    def __init__(self, store: EdgeStore, store_id: str, clock: WallClock,
                 settings: RetailSettings, today: Callable[[float], date]) -> None:
        self.store = store
        self.db = store.db
        self.store_id = store_id
        self.clock = clock
        self.settings = settings
        self.today = today
        ledger.create(self.db)
        holds.create(self.db)
        receiving.create(self.db)
        self.catalogue: dict[str, CatalogueItem] = ledger.load_catalogue(self.db)
        self.verdict: dict[str, Any] = {"seq": 0}
        self.version = 0  # bumps on every change the counter page shows
        self.expiry_day: date | None = None  # the day the expiry list was last checked

    def now(self) -> tuple[float, bool]:
        return self.clock.read()

    def commit(self, events: list[EventRow], extra: Writer | None = None) -> None:
        """Outbox events (device, type, data) and `extra` rows in one transaction."""
        wall, synced = self.now()
        self.store.add([NewEvent(d, t, None, None, wall, synced, data) for d, t, data in events],
                       extra=extra)
        self.version += 1

    @staticmethod
    def moves(moves: list[Movement], wall: float) -> tuple[list[EventRow], Writer]:
        events = [("ledger", "stock", movement_data(m)) for m in moves]

        def write(db: sqlite3.Connection) -> None:
            for m in moves:
                ledger.write_movement(db, m, wall)
        return events, write

    def record(self, moves: list[Movement], extra: Writer | None = None) -> None:
        """Stock movements with their events (and `extra` rows, in the same transaction),
        then the expiry list they may change."""
        wall, _ = self.now()
        events, write = self.moves(moves, wall)

        def write_all(db: sqlite3.Connection) -> None:
            write(db)
            if extra is not None:
                extra(db)
        self.commit(events, write_all)
        self.check_expiry()

    def say(self, ok: bool, title: Text, message: Text | None = None,
            **extra: Any) -> dict[str, Any]:
        """The verdict the counter page shows next (and the answer to the request); its
        texts are put in the reader's words by the page server (edge.words.localize)."""
        wall, _ = self.now()
        self.verdict = {"seq": self.verdict["seq"] + 1, "ok": ok, "title": title,
                        "message": message, "at": wall, **extra}
        self.version += 1
        return self.verdict

    def name(self, item: str) -> str:
        c = self.catalogue.get(item)
        return c.name if c else item

    def where(self, item: str) -> Message:
        c = self.catalogue.get(item)
        if c is None or c.location is None:
            return Message(N_("shelf"))
        return lane_words(c.location.fridge, c.location.lane)

    # ------------------------------------------------------------ order rows

    def order_state(self, order_id: int) -> OrderState | None:
        row = self.db.execute("SELECT id, mode, state, expires, note FROM orders WHERE id=?",
                              (order_id,)).fetchone()
        return None if row is None else OrderState(row[0], row[1], row[2], row[3], row[4])

    def order(self, order_id: int) -> Order | None:
        row = self.db.execute("SELECT id, mode, customer, created, expires, lines FROM orders "
                              "WHERE id=?", (order_id,)).fetchone()
        if row is None:
            return None
        lines = tuple(OrderLine(i, q) for i, q in json.loads(row[5]))
        return Order(row[0], self.store_id, row[1], row[2], row[3], row[4], lines)

    @staticmethod
    def set_state(db: sqlite3.Connection, order_id: int, state: str, wall: float,
                  note: str | None = None) -> None:
        db.execute("UPDATE orders SET state=?, updated=?, note=COALESCE(?, note) WHERE id=?",
                   (state, wall, note, order_id))

    def state_writer(self, order_id: int, state: str, wall: float) -> Writer:
        return lambda db: self.set_state(db, order_id, state, wall)

    # ------------------------------------------------------------ the expiry list

    def expiry_list(self) -> list[ledger.Lot]:
        wall, _ = self.now()
        return ledger.expiring(ledger.lots(self.db), self.today(wall),
                               self.settings.expiry_window_days)

    def check_expiry(self) -> None:
        """Report the expiry list to the cloud when it changed (an `expiry` event)."""
        wall, _ = self.now()
        self.expiry_day = self.today(wall)
        data = expiry_data(self.settings.expiry_window_days,
                           [ExpiryLine(lot.item, lot.batch, lot.expiry, lot.qty)
                            for lot in self.expiry_list() if lot.expiry is not None])
        text = json.dumps(data, sort_keys=True)
        if ledger.meta(self.db, "expiry_reported") == text:
            return
        self.commit([("ledger", "expiry", data)],
                    lambda db: ledger.set_meta(db, "expiry_reported", text))


def lane_words(fridge: str, lane: int) -> Message:
    return Message(N_("%(fridge)s lane %(lane)s"), {"fridge": fridge, "lane": lane})


def whole_number(body: Mapping[str, Any], key: str, signed: bool = False) -> int:
    """A whole number from a page request (a bool is no number here)."""
    v = body.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or (v < 0 and not signed):
        raise RetailError(Message(N_("%(field)s: expected a whole number"), {"field": key}))
    return v


def quantities(v: Any) -> dict[str, int] | None:
    """The clerk's {item: pieces handed over}, or None: what the lanes measured."""
    if v is None:
        return None
    if not isinstance(v, dict) or not all(
            isinstance(k, str) and isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 1000
            for k, n in v.items()):
        raise RetailError(Message(N_("The quantities handed over are not whole numbers.")))
    return dict(v)
