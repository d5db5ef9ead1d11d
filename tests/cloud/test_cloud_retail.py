"""Cloud retail on a real SQLite file, through the real ingest path (no broker needed here):
stock derived from the stores' ledger events exactly once, reservations, order states."""

from __future__ import annotations

import json
import random
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from cloud_gateway import retail
from cloud_gateway.db import Database
from cloud_gateway.ingest import ingest
from devstack.testkit.http_client import get, local
from xiaodian.wire import retail as contract
from xiaodian.wire.payloads import batch_payload, event_record

STORE = "store-001"
MILK = "06901234567892"
EGGS = "06901234567809"
TOFU = "in:12345"
T0 = 1_800_000_000.0


def cat_items() -> list[dict[str, Any]]:
    return [
        {"item": MILK, "name": "Fresh milk 1 L", "unit": "piece", "shelf_life_days": 7,
         "storage": "chilled", "location": {"fridge": "fridge-1", "lane": 0, "unit_grams": 1030}},
        {"item": EGGS, "name": "Eggs x6", "unit": "piece", "shelf_life_days": 21,
         "storage": "chilled", "location": None},
        {"item": TOFU, "name": "Tofu (weighed)", "unit": "weight", "shelf_life_days": 3,
         "storage": "chilled"},
    ]


def movement(kind: str, item: str, qty: int, **kw: Any) -> dict[str, Any]:
    return contract.movement_data(contract.Movement(uuid.uuid4().hex, kind, item, qty, **kw))


def events_msg(records: list[tuple[int, str, dict[str, Any]]], *, device: str = "ledger",
               boot: int = 1, store: str = STORE) -> tuple[str, bytes]:
    recs = [event_record(seq, type_, None, None, T0 + seq, True, data)
            for seq, type_, data in records]
    return f"xd/v1/{store}/events", batch_payload("events", store, device, boot, recs)


@pytest.fixture
def db(db_target: Path | str) -> Any:
    """Each test runs on SQLite and on PostgreSQL (conftest.db_target)."""
    with Database.open(db_target) as d:
        with d.transaction() as conn:
            retail.put_catalogue(conn, STORE, retail.parse_catalogue_items(STORE, cat_items()),
                                 T0, "test")
        yield d


def send(db: Database, records: list[tuple[int, str, dict[str, Any]]], **kw: Any) -> Any:
    topic, payload = events_msg(records, **kw)
    return ingest(db, topic, payload, "w-1", T0 + 100)


def on_hand(db: Database, item: str) -> int:
    return retail.availability(db.conn, STORE, T0, [item])[item]["on_hand"]


def order(db: Database, lines: dict[str, int], *, now: float = T0, expires_in_s: int = 3600,
          mode: str = "pickup") -> contract.Order:
    req = retail.parse_order_request({"items": [{"item": i, "qty": q} for i, q in lines.items()],
                                      "mode": mode, "customer": "Wang L.",
                                      "expires_in_s": expires_in_s})
    with db.transaction() as conn:
        return retail.create_order(conn, STORE, req, now, "test")


def test_stock_moves_once_even_when_the_message_is_redelivered(db: Database) -> None:
    recs = [(1, "stock", movement("delivery", MILK, 12, batch="L1", expiry="2027-01-10")),
            (2, "stock", movement("delivery", MILK, 6, batch="L2", expiry="2027-01-12")),
            (3, "stock", movement("sale", MILK, -2, batch="L1", expiry="2027-01-10")),
            (4, "door", {"open": True})]
    first = send(db, recs)
    again = send(db, recs)  # the broker redelivers: same records, same ids
    assert (first.inserted, first.duplicates) == (4, 0)
    assert (again.inserted, again.duplicates) == (0, 4)
    assert on_hand(db, MILK) == 16
    view = retail.stock_view(db.conn, STORE, T0)
    milk = next(i for i in view["items"] if i["item"] == MILK)
    assert milk["name"] == "Fresh milk 1 L"
    assert [(b["batch"], b["expiry"], b["on_hand"]) for b in milk["batches"]] == [
        ("L1", "2027-01-10", 10), ("L2", "2027-01-12", 6)]
    # The same movement re-entered under a new event (another boot) still counts once.
    m = json.loads(json.dumps(recs[0][2]))
    send(db, [(1, "stock", m)], boot=2)
    assert on_hand(db, MILK) == 16
    assert db.count("movements") == 3


def test_a_bad_movement_is_parked_and_nothing_else_is_lost(db: Database) -> None:
    good = movement("delivery", EGGS, 10)
    bad = dict(movement("delivery", EGGS, 5), qty=-5)  # a delivery that takes stock away
    reused = dict(movement("waste", EGGS, -1), id=good["id"])  # id of another movement
    out = send(db, [(1, "stock", good), (2, "stock", bad), (3, "door", {"open": False}),
                    (4, "stock", reused), (5, "order", {"order": 999, "state": "received",
                                                        "differences": [], "note": None})])
    assert out.action == "stored" and out.inserted == 5  # every event kept, receipt sent
    assert out.receipt is not None
    assert on_hand(db, EGGS) == 10
    reasons = sorted(d.reason for d in db.dead_letters())
    assert len(reasons) == 3
    assert any("wrong sign for a delivery" in r and "stock event ledger/1/2" in r
               for r in reasons)
    assert any("already used for a different movement" in r for r in reasons)
    assert any("has no order 999" in r for r in reasons)
    parked = next(d for d in db.dead_letters() if "wrong sign" in d.reason)
    assert json.loads(parked.payload)["data"]["qty"] == -5
    # Redelivery parks nothing new: the bad record is already stored.
    send(db, [(1, "stock", good), (2, "stock", bad)])
    assert db.count("dead_letters") == 3


def test_an_order_reserves_and_one_that_does_not_fit_is_refused(db: Database) -> None:
    send(db, [(1, "stock", movement("delivery", MILK, 5)),
              (2, "stock", movement("delivery", EGGS, 2))])
    o = order(db, {MILK: 3, EGGS: 2})
    assert o.expires % 60 == 0 and T0 + 3540 <= o.expires <= T0 + 3600
    a = retail.availability(db.conn, STORE, T0 + 1)
    assert a[MILK] == {"on_hand": 5, "reserved": 3, "available": 2}
    assert a[EGGS] == {"on_hand": 2, "reserved": 2, "available": 0}
    with pytest.raises(retail.RetailError) as exc:
        order(db, {MILK: 3, EGGS: 1})
    assert exc.value.reason is retail.Refusal.CONFLICT
    assert exc.value.detail == {"short": [{"item": MILK, "wanted": 3, "available": 2},
                                          {"item": EGGS, "wanted": 1, "available": 0}]}
    assert db.count("orders") == 1  # nothing of the refused order was stored
    with pytest.raises(retail.RetailError) as exc:
        order(db, {"06900000000000": 1})
    assert exc.value.reason is retail.Refusal.INVALID
    assert "not in store-001's catalogue" in exc.value.message
    # Order then cancel: the reservation goes, a cancel message is queued.
    with db.transaction() as conn:
        retail.cancel_order(conn, STORE, o.id, "customer called", T0 + 2, "test")
    assert retail.availability(db.conn, STORE, T0 + 3)[EGGS]["available"] == 2
    kinds = [r[0] for r in db.conn.execute("SELECT kind FROM downlink ORDER BY id")]
    assert kinds == ["catalogue", "order", "cancel"]
    with db.transaction() as conn, pytest.raises(retail.RetailError) as exc:
        retail.cancel_order(conn, STORE, o.id, "again", T0 + 4, "test")
    assert exc.value.reason is retail.Refusal.CONFLICT


def test_expiry_releases_the_reservation(db: Database) -> None:
    send(db, [(1, "stock", movement("delivery", MILK, 2))])
    o = order(db, {MILK: 2}, expires_in_s=600)
    assert retail.availability(db.conn, STORE, o.expires - 1)[MILK]["available"] == 0
    # At the expiry, with or without the sweep having run, the stock is free again.
    assert retail.availability(db.conn, STORE, o.expires)[MILK]["available"] == 2
    order(db, {MILK: 2}, now=o.expires)
    with db.transaction() as conn:
        assert retail.expire_orders(conn, o.expires) == 1
    assert retail.get_order(db.conn, STORE, o.id)["state"] == "expired"  # type: ignore[index]


def test_order_progress_and_pickup_movements_in_either_order(db: Database) -> None:
    send(db, [(1, "stock", movement("delivery", MILK, 4))])
    o = order(db, {MILK: 3})
    progress = contract.progress_data(contract.OrderProgress(o.id, "received"))
    send(db, [(1, "order", progress)], device="orders")
    assert retail.get_order(db.conn, STORE, o.id)["state"] == "received"  # type: ignore[index]
    # The pickup movement arrives before the order's picked_up state: not counted twice.
    send(db, [(2, "stock", movement("pickup", MILK, -3, order=o.id))])
    assert retail.availability(db.conn, STORE, T0)[MILK] == {
        "on_hand": 1, "reserved": 0, "available": 1}
    done = contract.progress_data(contract.OrderProgress(o.id, "picked_up"))
    send(db, [(2, "order", done), (3, "order", progress)], device="orders")  # late "received"
    got = retail.get_order(db.conn, STORE, o.id)
    assert got is not None and got["state"] == "picked_up"
    assert [(h["state"], h["applied"]) for h in got["history"]] == [
        ("open", True), ("received", True), ("picked_up", True), ("received", False)]
    # A store's handover beats the cloud's own expiry (the store was offline).
    o2 = order(db, {MILK: 1}, expires_in_s=60)
    with db.transaction() as conn:
        retail.expire_orders(conn, o2.expires + 1)
    send(db, [(4, "order", contract.progress_data(
        contract.OrderProgress(o2.id, "picked_up")))], device="orders")
    assert retail.get_order(db.conn, STORE, o2.id)["state"] == "picked_up"  # type: ignore[index]


def test_cloud_stock_matches_the_ledger_exactly(db: Database) -> None:
    """Random ledgers, sent as batches in random order with redeliveries: the stock table
    is exactly the per (item, batch, expiry) sum of the movements the store made."""
    rng = random.Random(6)
    items = [MILK, EGGS, TOFU]
    ledger: list[dict[str, Any]] = []
    for _ in range(300):
        kind = rng.choice(contract.MOVEMENT_KINDS)
        qty = rng.randint(1, 20)
        qty = qty if kind == "delivery" else (-qty if kind != "adjust" else rng.choice([-qty,
                                                                                       qty]))
        lot = rng.choice([("A", "2027-01-01"), ("B", "2027-02-01"), (None, None)])
        ledger.append(movement(kind, rng.choice(items), qty, batch=lot[0], expiry=lot[1],
                               order=rng.randint(1, 10**6) if kind in ("pickup", "dispatch")
                               else None))
    records = [(n + 1, "stock", m) for n, m in enumerate(ledger)]
    cuts = sorted(rng.sample(range(1, len(records)), 20))
    batches = [records[a:b] for a, b in zip([0, *cuts], [*cuts, len(records)], strict=True)]
    deliveries = batches + rng.sample(batches, k=len(batches) // 2)  # redeliveries
    rng.shuffle(deliveries)
    for b in deliveries:
        send(db, b)
    expected: dict[tuple[str, str, str], int] = {}
    for m in ledger:
        k = (m["item"], m["batch"] or "", m["expiry"] or "")
        expected[k] = expected.get(k, 0) + m["qty"]
    got = {(r[0], r[1], r[2]): r[3] for r in db.conn.execute(
        "SELECT item, batch, expiry, on_hand FROM stock WHERE store = ?", (STORE,))}
    assert got == expected
    by_sql = dict(db.conn.execute(
        "SELECT item, SUM(qty) FROM movements WHERE store = ? GROUP BY item", (STORE,)))
    assert {i: retail.availability(db.conn, STORE, T0)[i]["on_hand"] for i in by_sql} == by_sql
    assert db.count("movements") == len(ledger) and db.count("dead_letters") == 0


def test_catalogue_versions_and_validation(db: Database) -> None:
    with pytest.raises(retail.RetailError, match="unit"):
        retail.parse_catalogue_items(STORE, [dict(cat_items()[0], unit="kg")])
    with pytest.raises(retail.RetailError, match="twice"):
        retail.parse_catalogue_items(STORE, [cat_items()[0], cat_items()[0]])
    with db.transaction() as conn:
        c = retail.put_catalogue(conn, STORE, retail.parse_catalogue_items(STORE, cat_items()[:1]),
                                 T0 + 5, "test")
    assert c.version == 2
    cur = retail.catalogue(db.conn, STORE)
    assert cur is not None and cur["version"] == 2 and len(cur["items"]) == 1
    # Version 1 was never sent: it must not be sent after version 2 (retained copy).
    rows = db.conn.execute("SELECT ref, published_at, last_error FROM downlink"
                           " WHERE kind = 'catalogue' ORDER BY ref").fetchall()
    assert [(r[0], r[2]) for r in rows] == [(1, "superseded"), (2, None)]
    # What is queued is what the store will parse.
    payload = db.conn.execute("SELECT payload FROM downlink WHERE kind = 'catalogue'"
                              " AND ref = 2").fetchone()[0]
    parsed = contract.parse_downlink(f"xd/v1/{STORE}/catalogue", bytes(payload))
    assert isinstance(parsed, contract.Catalogue) and parsed.version == 2


def test_order_requests_are_checked_strictly() -> None:
    ok = {"items": [{"item": MILK, "qty": 1}], "mode": "pickup", "customer": "Li",
          "expires_in_s": 3600}
    assert retail.parse_order_request(ok).lines == (contract.OrderLine(MILK, 1),)
    for bad, why in [({**ok, "extra": 1}, "unknown field"),
                     ({**ok, "mode": "drone"}, "mode"),
                     ({**ok, "customer": " "}, "customer"),
                     ({**ok, "expires_in_s": 10}, "expires_in_s"),
                     ({**ok, "expires_in_s": True}, "expires_in_s"),
                     ({**ok, "items": []}, "items"),
                     ({**ok, "items": [{"item": MILK, "qty": 0}]}, "qty"),
                     ({**ok, "items": [{"item": "123", "qty": 1}]}, "bad item key"),
                     ({**ok, "items": [{"item": MILK, "qty": 1}] * 2}, "twice")]:
        with pytest.raises(retail.RetailError, match=why):
            retail.parse_order_request(bad)


def test_orders_are_stored_in_one_transaction_with_their_message(tmp_path: Path) -> None:
    """A failure after the order row is written leaves neither order nor message."""
    with Database.open(tmp_path / "c.sqlite") as d:
        with d.transaction() as conn:
            retail.put_catalogue(conn, STORE, retail.parse_catalogue_items(STORE, cat_items()),
                                 T0, "t")
        send(d, [(1, "stock", movement("delivery", MILK, 3))])
        req = retail.parse_order_request({"items": [{"item": MILK, "qty": 1}],
                                          "customer": "Li"})
        d.conn.execute("CREATE TRIGGER boom BEFORE INSERT ON downlink WHEN NEW.kind = 'order'"
                       " BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        with pytest.raises(sqlite3.IntegrityError), d.transaction() as conn:
            retail.create_order(conn, STORE, req, T0, "t")
        assert d.count("orders") == 0 and d.count("order_lines") == 0


class FakePublisher:
    """Stands in for the broker connection: records what was published, answers `status`."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bool]] = []
        self.status = "acked"
        self.connects = 0  # no (re)connection unless a test says so

    def add_connect_listener(self, listener: Any) -> None:
        pass

    def publish_message(self, topic: str, payload: bytes, timeout: float, *, qos: int = 1,
                        retain: bool = False, properties: Any = None) -> Any:
        from cloud_gateway.commands import PublishResult

        if self.status == "acked":
            self.sent.append((topic, payload, retain))
        return PublishResult(self.status, "" if self.status == "acked" else "broker away")


def test_downlink_retries_and_resends_what_the_store_did_not_confirm(
        db_target: Path | str) -> None:
    from cloud_gateway.downlink import DownlinkSender

    clock = [T0]
    pub = FakePublisher()
    path = db_target
    with Database.open(path) as d:
        with d.transaction() as conn:
            retail.put_catalogue(conn, STORE, retail.parse_catalogue_items(STORE, cat_items()),
                                 T0, "t")
        send(d, [(1, "stock", movement("delivery", MILK, 5))])
        sender = DownlinkSender(path, pub, resend_open_s=300, now=lambda: clock[0])
        pub.status = "not_sent"
        o = order(d, {MILK: 1})
        assert sender.send_pending() == 0 and pub.sent == []  # broker away: all kept
        pub.status = "acked"
        assert sender.send_pending() == 2  # catalogue, then the order, in order
        assert [(t, r) for t, _, r in pub.sent] == [(f"xd/v1/{STORE}/catalogue", True),
                                                    (f"xd/v1/{STORE}/orders", False)]
        assert sender.send_pending() == 0
        clock[0] += 301  # still `open`: the store never confirmed it
        assert sender.send_pending() == 1 and pub.sent[-1][0].endswith("/orders")
        send(d, [(1, "order", contract.progress_data(
            contract.OrderProgress(o.id, "received")))], device="orders")
        clock[0] += 301
        assert sender.send_pending() == 0  # confirmed: never again
        clock[0] = o.expires + 1
        o2 = order(d, {MILK: 1}, now=clock[0])
        with d.transaction() as conn:
            retail.cancel_order(conn, STORE, o2.id, "x", clock[0], "t")
        assert sender.send_pending() == 2  # an order and its cancellation
        # A catalogue acknowledged late must not stay the retained one: the newest goes again.
        with d.transaction() as conn:
            retail.put_catalogue(conn, STORE, retail.parse_catalogue_items(STORE, cat_items()),
                                 clock[0], "t")
            conn.execute("UPDATE downlink SET published_at = NULL WHERE kind = 'catalogue'"
                         " AND ref = 1")  # v1 still in flight somewhere
        pub.sent.clear()
        sender.send_pending()
        versions = [json.loads(p)["version"] for t, p, _ in pub.sent if t.endswith("catalogue")]
        assert versions[-1] == 2 and 1 in versions


def test_absurd_quantities_are_parked_and_retail_events_are_listed(
        db_target: Path | str) -> None:
    from cloud_gateway.web import Api, HttpServer

    path = db_target
    with Database.open(path) as d:
        absurd = contract.movement_data(contract.Movement(uuid.uuid4().hex, "delivery", MILK, 1))
        absurd["qty"] = 10**15  # what a broken or hostile store might send
        send(d, [(1, "stock", absurd),
                 (2, "expiry", {"items": [{"item": MILK, "batch": None, "expiry": "2027-01-01",
                                           "qty": 2}]}),
                 (3, "lane_check", {"fridge": "fridge-1", "lane": 0, "grams": -1030})])
        assert on_hand(d, MILK) == 0
        reasons = sorted(x.reason for x in d.dead_letters())
        assert len(reasons) == 3  # the stray lane_check and the expiry missing its window too
        assert any("qty: expected `int` <= 1000000" in r for r in reasons)
        assert any("window_days: missing" in r for r in reasons)
        assert any("lane_check" in r and "lane" in r for r in reasons)
    with HttpServer(Api(path, api_token=READER), "127.0.0.1", 0) as srv:
        status, body = _get(srv, f"/api/stores/{STORE}/events?type=expiry")
        assert status == 200
        assert [e["data"]["items"][0]["item"] for e in body["events"]] == [MILK]
        assert _get(srv, f"/api/stores/{STORE}/events?type=bogus")[0] == 400
        assert _get(srv, f"/api/stores/{STORE}/stock")[1]["items"] == []


READER = b"reader-token-0123456789abcdef0123456789"  # the service token: an operator


def _get(srv: Any, path: str) -> tuple[int, Any]:
    r = get(local(srv.port, path), token=READER.decode())
    return r.status, json.loads(r.body)


def test_catalogues_that_cannot_be_sent_or_counted_are_refused() -> None:
    shared = cat_items()
    shared[1]["location"] = {"fridge": "fridge-1", "lane": 0, "unit_grams": 400}
    with pytest.raises(retail.RetailError, match="both placed in fridge-1 lane 0") as err:
        retail.parse_catalogue_items(STORE, shared)
    assert err.value.reason is retail.Refusal.INVALID
    # As one MQTT message it must fit the broker's packet limit, or the broker would drop
    # the connection that sends it, and every order behind it would wait.
    many = [{"item": f"{i:014d}", "name": f"Item {i} " + "x" * 80, "unit": "piece",
             "shelf_life_days": 3, "storage": "chilled"} for i in range(2500)]
    with pytest.raises(retail.RetailError, match="at most 262144") as err:
        retail.parse_catalogue_items(STORE, many)
    assert err.value.reason is retail.Refusal.TOO_LARGE


def test_a_control_character_in_a_movement_is_parked_not_retried(db: Database) -> None:
    bad = movement("delivery", MILK, 3)
    bad["batch"] = "B\x001"  # PostgreSQL text cannot hold NUL: it would fail forever
    send(db, [(1, "stock", bad), (2, "stock", movement("delivery", MILK, 2))])
    assert on_hand(db, MILK) == 2
    (dead,) = db.dead_letters()
    assert "control characters" in dead.reason


def test_a_reconnection_sends_the_current_catalogues_and_unconfirmed_orders_again(
        db_target: Path | str) -> None:
    """The broker may have crashed between two saves of its database: what it acknowledged
    since is gone, so a new connection sends it all again, at once."""
    from cloud_gateway.downlink import DownlinkSender

    pub = FakePublisher()
    with Database.open(db_target) as d:
        with d.transaction() as conn:
            for version in (1, 2):  # only the current one is sent again
                retail.put_catalogue(conn, STORE, retail.parse_catalogue_items(
                    STORE, cat_items()), T0, f"v{version}")
        send(d, [(1, "stock", movement("delivery", MILK, 5))])
        sender = DownlinkSender(db_target, pub, resend_open_s=300, now=lambda: T0 + 10)
        confirmed, waiting = order(d, {MILK: 1}), order(d, {MILK: 1})
        pub.connects = 1
        assert sender.send_pending() == 3
        send(d, [(1, "order", contract.progress_data(
            contract.OrderProgress(confirmed.id, "received")))], device="orders")
        assert sender.send_pending() == 0  # same connection: nothing to resync
        pub.sent.clear()
        pub.connects = 2  # the broker came back
        assert sender.send_pending() == 2
        topics = [(t, contract.parse_downlink(t, p)) for t, p, _ in pub.sent]
        assert [(t, getattr(m, "version", None) or getattr(m, "id", None))
                for t, m in topics] == [(f"xd/v1/{STORE}/catalogue", 2),
                                        (f"xd/v1/{STORE}/orders", waiting.id)]


def test_a_store_coming_online_gets_its_unconfirmed_orders_again(
        db_target: Path | str) -> None:
    """A broker that lost the terminal's session lost the orders queued in it: the
    terminal's birth message puts its unconfirmed orders back in line."""
    from cloud_gateway.downlink import DownlinkSender
    from xiaodian.wire.payloads import state_payload

    pub = FakePublisher()
    with Database.open(db_target) as d:
        with d.transaction() as conn:
            retail.put_catalogue(conn, STORE, retail.parse_catalogue_items(STORE, cat_items()),
                                 T0, "t")
        send(d, [(1, "stock", movement("delivery", MILK, 5))])
        sender = DownlinkSender(db_target, pub, resend_open_s=300, now=lambda: T0 + 10)
        confirmed, waiting = order(d, {MILK: 1}), order(d, {MILK: 1})
        assert sender.send_pending() == 3
        send(d, [(1, "order", contract.progress_data(
            contract.OrderProgress(confirmed.id, "received")))], device="orders")
        pub.sent.clear()
        # A retained birth message is old news; a live one is the terminal connecting now.
        ingest(d, f"xd/v1/{STORE}/state", state_payload(STORE, True, 1, T0 + 20, "0.1.0", []),
               "w-1", T0 + 20, retained=True)
        assert sender.send_pending() == 0
        ingest(d, f"xd/v1/{STORE}/state", state_payload(STORE, True, 2, T0 + 20, "0.1.0", []),
               "w-1", T0 + 20)
        assert sender.send_pending() == 1
        (topic, payload, _), = pub.sent
        got = contract.parse_downlink(topic, payload)
        assert isinstance(got, contract.Order) and got.id == waiting.id


def test_a_refused_downlink_message_does_not_hold_up_the_others(tmp_path: Path) -> None:
    from cloud_gateway.downlink import DownlinkSender

    class RefusesOneStore(FakePublisher):
        def publish_message(self, topic: str, payload: bytes, timeout: float, *,
                            qos: int = 1, retain: bool = False, properties: Any = None) -> Any:
            self.status = "refused" if "/store-001/" in topic else "acked"
            return super().publish_message(topic, payload, timeout)

    pub = RefusesOneStore()
    path = tmp_path / "c.sqlite"
    with Database.open(path) as d, d.transaction() as conn:
        for store in (STORE, "store-002"):
            retail.put_catalogue(conn, store, retail.parse_catalogue_items(store, cat_items()),
                                 T0, "t")
    assert DownlinkSender(path, pub, now=lambda: T0).send_pending() == 1
    assert [t for t, _, _ in pub.sent] == ["xd/v1/store-002/catalogue"]


def test_order_ids_that_are_not_plain_numbers_are_a_client_error(tmp_path: Path) -> None:
    from cloud_gateway.web import Api, HttpServer

    path = tmp_path / "c.sqlite"
    Database.open(path).close()
    with HttpServer(Api(path, api_token=READER), "127.0.0.1", 0) as srv:
        assert _get(srv, f"/api/stores/{STORE}/orders/99999999999999999999")[0] == 404
        assert _get(srv, f"/api/stores/{STORE}/orders/%C2%B2")[0] == 404
        assert _get(srv, f"/api/stores/{STORE}/orders/12")[0] == 404
        assert _get(srv, f"/api/stores/{STORE}/events?type=scan")[0] == 400
