"""The cloud database on PostgreSQL: configuration, the connection layer, and the places where
PostgreSQL's concurrency differs from SQLite's one-writer-at-a-time (a real server from
devstack/testkit/pg_server.py; nothing is mocked). Most behaviour is tested by running the ordinary
cloud tests on both backends (conftest.db_target); these are the PostgreSQL-specific ones.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cloud_gateway import retail, sql
from cloud_gateway.config import CloudConfig, CloudSettings
from cloud_gateway.db import Database
from cloud_gateway.ingest import ingest
from xiaodian.config import ConfigError, load_config
from xiaodian.wire import retail as contract
from xiaodian.wire.payloads import batch_payload, event_record, reading_record, state_payload

STORE = "store-001"
MILK = "06901234567892"
T0 = 1_780_000_000.0


def _catalogue_and_stock(db: Database, qty: int) -> None:
    items = retail.parse_catalogue_items(STORE, [
        {"item": MILK, "name": "Milk 1 L", "unit": "piece", "shelf_life_days": 7,
         "storage": "chilled"}])
    with db.transaction() as conn:
        retail.put_catalogue(conn, STORE, items, T0, "test")
    data = contract.movement_data(contract.Movement(uuid.uuid4().hex, "delivery", MILK, qty))
    rec = event_record(1, "stock", None, None, T0, True, data)
    ingest(db, f"xd/v1/{STORE}/events", batch_payload("events", STORE, "ledger", 1, [rec]),
           "w", T0)


def _race(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run work(i) in n threads released at the same instant; results or exceptions."""
    start = threading.Barrier(n)
    out: list[Any] = [None] * n

    def run(i: int) -> None:
        start.wait(10)
        try:
            out[i] = work(i)
        except BaseException as exc:  # examined by the test
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_concurrent_orders_never_take_more_than_is_there(db_target: Path | str) -> None:
    """Eight clerks' requests for 2 pieces each, at once, against 5 on hand: two orders
    fit, the other six get 409, and nothing is reserved twice. On PostgreSQL, READ
    COMMITTED alone would let every transaction see 5 available; the write lock
    (sql.lock) is what makes check-then-insert safe, like SQLite's BEGIN IMMEDIATE."""
    with Database.open(db_target) as db:
        _catalogue_and_stock(db, 5)
    req = retail.parse_order_request({"items": [{"item": MILK, "qty": 2}], "customer": "Li"})

    def order(i: int) -> int:
        with Database.open(db_target, busy_timeout_s=30) as db, db.transaction() as conn:
            return retail.create_order(conn, STORE, req, T0 + 1, f"clerk-{i}").id

    results = _race(8, order)
    made = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, retail.RetailError)]
    assert len(made) == 2 and len(refused) == 6, results
    assert all(r.reason is retail.Refusal.CONFLICT for r in refused)
    with Database.open(db_target) as db:
        assert retail.availability(db.conn, STORE, T0 + 2)[MILK] == {
            "on_hand": 5, "reserved": 4, "available": 1}
        assert db.count("orders") == 2 and db.count("downlink") == 3  # catalogue + 2 orders


def test_state_messages_from_many_connections_keep_the_newest_boot(pg_url: str) -> None:
    """Parallel upserts of one store's birth messages (every worker gets every state
    message): the highest boot wins whatever the commit order, the clock window is whole."""
    Database.open(pg_url).close()

    def birth(boot: int) -> bool:
        with Database.open(pg_url) as db:
            payload = state_payload(STORE, True, boot, T0 + boot, "0.1.0", ["fridge-1"])
            return ingest(db, f"xd/v1/{STORE}/state", payload, f"w{boot}",
                          T0 + boot).action == "state"

    assert all(r is True for r in _race(8, lambda i: birth(i + 1)))
    with Database.open_readonly(pg_url) as db:
        (s,) = db.stores()
        assert s["boot"] == 8 and s["online"] is True
        # One estimate per boot, each made from its own sample: no lost update.
        assert db.count("clock_estimates") == 8


def test_a_postgresql_url_in_the_config(tmp_path: Path) -> None:
    cfg = tmp_path / "cloud.toml"
    mqtt = '[mqtt]\nhost = "localhost"\nport = 8883\n[mqtt.tls]\nca = "a"\ncert = "b"\nkey = "c"\n'
    cfg.write_text('[cloud]\ndatabase_url = "postgresql://xd@db.example:5433/cloud"\n'
                   'worker_id = "w-1"\n' + mqtt)
    settings = load_config(cfg, CloudConfig).cloud
    assert settings.database == "postgresql://xd@db.example:5433/cloud"
    assert settings.db is None
    # The SQLite file stays the default, unchanged.
    assert CloudSettings(db=tmp_path / "c.sqlite", worker_id="w").database == tmp_path / "c.sqlite"
    for body, key, why in [
        ('database_url = "mysql://x@h/db"', "cloud.database_url", "postgresql://"),
        ('database_url = "postgresql://x@h:99999/db"', "cloud.database_url", "Port"),
        ('database_url = "postgresql://x@h:5432/"', "cloud.database_url", "database name"),
        ('database_url = "postgresql://x@h/db"\ndb = "c.sqlite"', "cloud.database_url",
         "not both"),
        ("", "cloud.db", "unless database_url"),
    ]:
        cfg.write_text(f'[cloud]\n{body}\nworker_id = "w-1"\n' + mqtt)
        with pytest.raises(ConfigError) as exc:
            load_config(cfg, CloudConfig)
        text = str(exc.value)
        assert str(cfg) in text and f"'{key}'" in text and why in text, text


def test_placeholders_rows_and_errors_of_the_layer(pg_url: str) -> None:
    assert sql.pg_sql("SELECT '?%', \"a?\" FROM t WHERE x LIKE 'a%' AND y = ? AND z % 2 = ?"
                      ) == ("SELECT '?%%', \"a?\" FROM t WHERE x LIKE 'a%%' AND y = %s"
                            " AND z %% 2 = %s")
    assert sql.describe("postgresql://u:secret@h:5/db") == "postgresql://u:***@h:5/db"
    assert sql.describe(Path("/x/cloud.sqlite")) == "/x/cloud.sqlite"
    with Database.open(pg_url) as db:
        assert db.postgres
        row = db.conn.execute("SELECT 1 + ? AS n, 'a%' AS s, SUM(x) AS total"
                              " FROM (VALUES (2::bigint), (3)) AS v(x)", (41,)).fetchone()
        assert (row[0], row["n"], row["s"], dict(row)) == (
            42, 42, "a%", {"n": 42, "s": "a%", "total": 5})
        assert type(row["total"]) is int  # NUMERIC SUM as a whole number, like SQLite
        with pytest.raises(sql.ERRORS, match="no_such_table"):
            db.conn.execute("SELECT * FROM no_such_table")
        with pytest.raises(sql.ERRORS), db.transaction() as conn:
            conn.execute("INSERT INTO store_state (store, online, boot, wall, agent_version,"
                         " devices, updated_at) VALUES ('s', TRUE, 1, 0, 'v', '[]', 0)")
            conn.execute("INSERT INTO store_state (store) VALUES ('s')")  # NOT NULL: fails
        assert db.count("store_state") == 0  # rolled back as a whole
        assert "by" in sql.columns(db.conn, "alert_acks")  # a reserved word, quoted


def test_rows_copied_in_binary_keep_their_values_and_a_bad_one_is_a_clear_error(
        pg_url: str) -> None:
    """sql.insert_rows on PostgreSQL is a binary COPY: the column types come from the
    catalogue (a column added later is found), an int lands in a float column, NULL and
    non-ASCII text survive, and a value of the wrong type fails the transaction as a
    PgError, leaving the connection usable."""
    with Database.open(pg_url) as db:
        db.conn.script("CREATE TABLE copied (n BIGINT, x DOUBLE PRECISION, ok BOOLEAN,"
                       " name TEXT)")
        with db.transaction() as conn:
            sql.insert_rows(conn, "copied", ("n", "x", "ok", "name"),
                            [(1, 2, True, "冷柜一号"), (2**40, None, False, None)])
        db.conn.script("ALTER TABLE copied ADD COLUMN extra INTEGER")
        with db.transaction() as conn:
            sql.insert_rows(conn, "copied", ("n", "x", "extra"), [(3, 0.5, 7)])
        with pytest.raises(sql.PgError, match="does not fit its column"), \
                db.transaction() as conn:
            sql.insert_rows(conn, "copied", ("n", "x"), [(4, 1.0), ("five", 1.0)])
        with pytest.raises(sql.PgError, match="no column"), db.transaction() as conn:
            sql.insert_rows(conn, "copied", ("n", "nope"), [(6, 1)])
        rows = [tuple(r) for r in db.conn.execute(
            "SELECT n, x, ok, name, extra FROM copied ORDER BY n")]
    assert rows == [(1, 2.0, True, "冷柜一号", None), (3, 0.5, None, None, 7),
                    (2**40, None, False, None, None)]
    assert type(rows[0][1]) is float


def test_an_unreachable_server_is_a_database_error(tmp_path: Path) -> None:
    with pytest.raises(sql.ERRORS, match="cannot connect"):
        Database.open("postgresql://nobody@127.0.0.1:1/none", busy_timeout_s=1)


def test_a_dropped_connection_is_replaced_for_the_next_attempt(pg_server: Any,
                                                              pg_url: str) -> None:
    """A long-lived worker connection the server dropped (restart, failover) fails the one
    attempt that met it; the worker's retry gets a new connection and stores the batch."""
    import psycopg

    payload = batch_payload("readings", STORE, "fridge-1", 1, [
        reading_record(s, s, s, T0 + s, True, [(0, "ok", 3.0)]) for s in (1, 2)])
    with Database.open(pg_url) as db:
        pid = db.conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(sql.ERRORS):
            ingest(db, f"xd/v1/{STORE}/telemetry", payload, "w", T0)
        assert ingest(db, f"xd/v1/{STORE}/telemetry", payload, "w", T0).inserted == 2
        assert db.conn.execute("SELECT pg_backend_pid()").fetchone()[0] != pid
        # The export streams rows from the server; a bounded page does not.
        assert [r["seq"] for r in db.readings(STORE, "fridge-1")] == [1, 2]
        assert [r["seq"] for r in db.readings(STORE, "fridge-1", limit=1)] == [1]


def test_a_connection_left_busy_by_a_client_side_failure_is_replaced(pg_url: str) -> None:
    """The race behind a once-in-a-while CI failure: a backend terminated while a query was
    being sent leaves libpq busy but not BAD, so `broken` stays False and every later
    statement failed with "another command is already in progress". Reproduced exactly by
    putting libpq in that state underneath psycopg: the statement that meets it fails, the
    next one gets a new connection."""
    with Database.open(pg_url) as db:
        conn = db.conn
        assert isinstance(conn, sql.PgConnection)
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        conn.raw.pgconn.send_query(b"SELECT 1")  # libpq busy; psycopg does not know
        with pytest.raises(sql.ERRORS, match="another command is already in progress"):
            conn.execute("SELECT 1")
        assert not conn.raw.broken  # why `broken` alone was not enough
        assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] != pid
