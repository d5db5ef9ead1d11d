"""The HTTP API over real connections to a server on a free port, backed by a real database."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud_gateway.db import Database
from cloud_gateway.ingest import ingest
from cloud_gateway.web import Api, HttpServer
from devstack.testkit.http_client import local
from devstack.testkit.http_client import request as http_request
from xiaodian.wire.payloads import batch_payload, event_record, reading_record, state_payload

COUNTERS = {"worker_id": "w-1", "subscribed": True, "received": 7, "stored": 5}


def _fill(db: Database) -> None:
    # Boot 1 misses seq 3 and 4 until a late copy of 3 arrives; boot 2 misses nothing.
    for i, (boot, seqs) in enumerate(((1, (1, 2, 5)), (1, (3,)), (2, (1, 2)))):
        records = [reading_record(s, s, 1000 * s, 1_700_000_000.0 + 10 * boot + s, True,
                                  [(0, "ok", 2.0 + s), (1, "ok", 3.0 + s)]) for s in seqs]
        ingest(db, "xd/v1/store-001/telemetry",
               batch_payload("readings", "store-001", "fridge-1", boot, records), "w-1",
               45.0 + i)
    events = [
        event_record(1, "door", 1, 100, 1_700_000_001.0, True, {"open": True, "duration_ms": 5}),
        event_record(2, "compressor", 2, 200, 1_700_000_002.0, True, {"on": True,
                                                                      "reason": "thermostat"}),
        event_record(3, "door", 3, 300, 1_700_000_003.0, True, {"open": False,
                                                                "duration_ms": 9}),
    ]
    ingest(db, "xd/v1/store-001/events",
           batch_payload("events", "store-001", "fridge-1", 2, events), "w-1", 51.0)
    ingest(db, "xd/v1/store-001/state",
           state_payload("store-001", True, 2, 1_700_000_000.0, "0.1.0", ["fridge-1"]),
           "w-1", 52.0)
    ingest(db, "xd/v1/store-002/telemetry", b"{oops", "w-1", 53.0)


@pytest.fixture
def server(db_target: Path | str) -> Iterator[HttpServer]:
    """The API over a filled database, on SQLite and on PostgreSQL (conftest.db_target)."""
    path = db_target
    with Database.open(path) as db:
        _fill(db)
    with HttpServer(Api(path, lambda: COUNTERS, api_token=TOKEN.encode()), "127.0.0.1",
                    0) as srv:
        yield srv


def request(srv: HttpServer, path: str, method: str = "GET",
            headers: dict[str, str] | None = None, body: bytes | None = None,
            ) -> tuple[int, http.client.HTTPMessage, bytes]:
    if headers is None:  # reads need a caller with a role now (the service token: operator)
        headers = {"Authorization": f"Bearer {TOKEN}"}
    r = http_request(local(srv.port, path), method, data=body, headers=headers, timeout=5)
    return r.status, r.headers, r.body  # names match in any case


def get_json(srv: HttpServer, path: str) -> tuple[int, Any]:
    status, headers, body = request(srv, path)
    assert headers["Content-Type"] == "application/json"
    return status, json.loads(body)


def test_port_zero_picks_a_free_port_and_reports_the_url(server: HttpServer) -> None:
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}/"


def test_healthz_and_ingest_counters(server: HttpServer) -> None:
    assert get_json(server, "/healthz") == (
        200, {"status": "ok", "db": True, "ingest": {"subscribed": True}})
    assert get_json(server, "/api/ingest") == (200, COUNTERS)


def test_healthz_reports_a_missing_database(tmp_path: Path) -> None:
    with HttpServer(Api(tmp_path / "nothing-here.sqlite"), "127.0.0.1", 0) as srv:
        status, body = get_json(srv, "/healthz")
    assert status == 503 and body["db"] is False
    assert "unable to open" in body["error"]


def test_stores(server: HttpServer) -> None:
    status, body = get_json(server, "/api/stores")
    assert status == 200
    assert body == {"stores": [{
        "store": "store-001", "online": True, "boot": 2, "agent_version": "0.1.0",
        "config_hash": None,
        "devices": ["fridge-1"], "state_wall": 1_700_000_000.0, "updated_at": 52.0,
        "last_received_at": 51.0, "open_gaps": 1, "missing_records": 1,
        # The test's receive times are decades before its wall clocks: cloud minus terminal
        # is hugely negative, so a "synced" flag is not believed. Boot 2's lowest sample is
        # its readings batch (received at 47, newest wall 1_700_000_022); the birth message
        # (52 - 1_700_000_000) is higher and does not move it.
        "clock": {"boot": 2, "offset_s": 47.0 - 1_700_000_022.0, "synced": True,
                  "method": "offset", "updated_at": 52.0},
    }]}  # store-002 only sent garbage: it is a dead letter, not a store


def test_fridges_show_latest_reading_count_and_last_events(server: HttpServer) -> None:
    status, body = get_json(server, "/api/stores/store-001/fridges")
    assert status == 200
    (fridge,) = body["fridges"]
    assert fridge["device"] == "fridge-1" and fridge["readings"] == 6
    latest = fridge["latest"]
    assert (latest["boot"], latest["seq"], latest["air_c"], latest["product_c"]) == (2, 2, 4.0,
                                                                                    5.0)
    assert (latest["dev_ms"], latest["wall"]) == (2000, 1_700_000_022.0)
    assert fridge["door"]["seq"] == 3 and fridge["door"]["data"]["open"] is False
    assert fridge["compressor"]["data"] == {"on": True, "reason": "thermostat"}


def test_readings_paging(server: HttpServer) -> None:
    status, body = get_json(server, "/api/stores/store-001/fridges/fridge-1/readings?limit=2")
    assert status == 200
    assert [(r["boot"], r["seq"]) for r in body["readings"]] == [(1, 1), (1, 2)]
    assert body["next"] == {"after_boot": 1, "after_seq": 2}
    status, body = get_json(
        server, "/api/stores/store-001/fridges/fridge-1/readings?after_boot=1&after_seq=2")
    assert [(r["boot"], r["seq"]) for r in body["readings"]] == [(1, 3), (1, 5), (2, 1), (2, 2)]
    assert body["readings"][0]["probes"] == [[0, "ok", 5.0], [1, "ok", 6.0]]
    assert body["readings"][0]["time_method"] == "offset"
    status, body = get_json(
        server, "/api/stores/store-001/fridges/fridge-1/readings?after_boot=2&after_seq=2")
    assert body["readings"] == [] and body["next"] == {"after_boot": 2, "after_seq": 2}


def test_gaps_per_device_open_and_filled(server: HttpServer) -> None:
    status, body = get_json(server, "/api/stores/store-001/gaps")
    assert status == 200
    assert (body["store"], body["open_gaps"], body["missing_records"]) == ("store-001", 1, 1)
    (dev,) = body["devices"]
    assert dev["device"] == "fridge-1"
    (open_gap,) = dev["open"]
    (filled,) = dev["filled"]
    assert (open_gap["kind"], open_gap["boot"], open_gap["first_missing_seq"],
            open_gap["last_missing_seq"], open_gap["missing"], open_gap["filled_at"]) == (
        "readings", 1, 4, 4, 1, None)
    assert (filled["first_missing_seq"], filled["last_missing_seq"], filled["filled_by"]) == (
        3, 3, "w-1")
    assert filled["detected_at"] < filled["filled_at"]
    assert [(s["kind"], s["boot"], s["max_seq"], s["records"], s["missing"])
            for s in dev["streams"]] == [("events", 2, 3, 3, 0), ("readings", 1, 5, 4, 1),
                                         ("readings", 2, 2, 2, 0)]
    status, body = get_json(server, "/api/stores/store-001/gaps?state=open")
    assert [len(body["devices"][0][k]) for k in ("open", "filled")] == [1, 0]
    assert body["open_gaps"] == 1


def test_clock_history(server: HttpServer) -> None:
    status, body = get_json(server, "/api/stores/store-001/clock")
    assert status == 200 and body["current"]["boot"] == 2
    assert {h["boot"] for h in body["history"]} == {1, 2}
    newest = body["history"][0]
    assert (newest["boot"], newest["source"], newest["offset_s"]) == (
        2, "readings/fridge-1", 47.0 - 1_700_000_022.0)


def test_dead_letters(server: HttpServer) -> None:
    status, body = get_json(server, "/api/dead-letters")
    assert status == 200
    (d,) = body["dead_letters"]
    assert d["topic"] == "xd/v1/store-002/telemetry" and d["payload"] == "{oops"
    assert d["reason"].startswith("payload is not JSON") and d["size"] == 5


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/nope", 404, "no such path"),
        ("/api/stores/store-009/fridges", 404, "unknown store"),
        ("/api/stores/store-001/fridges/fridge-1/readings?limit=0", 400, "limit: must be"),
        ("/api/stores/store-001/fridges/fridge-1/readings?limit=abc", 400, "limit: expected"),
        ("/api/stores/store-001/fridges/fridge-1/readings?limit=-1", 400, "limit: expected"),
        ("/api/stores/store-001/fridges/fridge-1/readings?after_seq=3", 400, "go together"),
        ("/api/stores/store-001/fridges/fridge-1/readings?limit=1&limit=2", 400, "more than"),
        ("/api/stores/store-001/fridges/fridge-1/readings?colour=red", 400, "unknown query"),
        ("/api/stores?x=1", 400, "unknown query"),
        ("/api/stores/store-009/gaps", 404, "unknown store"),
        ("/api/stores/store-001/gaps?state=closed", 400, "state: expected"),
        ("/api/stores/store-009/clock", 404, "unknown store"),
        ("/api/stores/..%2F/fridges", 404, "no such path"),
    ],
)
def test_errors_are_json(server: HttpServer, path: str, status: int, message: str) -> None:
    got, body = get_json(server, path)
    assert got == status
    assert message in body["error"] and body["status"] == status


def test_request_limits_and_methods(server: HttpServer) -> None:
    status, _, body = request(server, "/api/stores?" + "a" * 5000)
    assert status == 414
    status, _, body = request(server, "/api/stores", headers={"Content-Length": "5"},
                              body=b"hello")
    assert status == 413
    status, headers, body = request(server, "/api/stores", method="POST", body=b"")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    status, headers, body = request(server, "/api/stores", method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0


def test_dashboard_is_self_contained(server: HttpServer) -> None:
    status, headers, body = request(server, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    html = body.decode()
    assert 'data-store="store-001"' in html and "setTimeout(refresh, 5000)" in html
    # No external assets: nothing loaded from another origin.
    assert "http://" not in html and "https://" not in html and "src=" not in html


def test_the_chart_library_is_served_by_the_cloud_itself(server: HttpServer) -> None:
    status, headers, body = request(server, "/static/vendor/uPlot.iife.min.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert b"uPlot" in body and len(body) > 10_000
    assert request(server, "/static/vendor/uPlot.min.css")[0] == 200
    assert request(server, "/static/vendor/other.js")[0] == 404


def test_a_server_without_the_chart_library_refuses_to_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cloud_gateway.web import page

    monkeypatch.setitem(page.VENDOR_FILES, "uPlot-9.9.js", "text/javascript")
    with pytest.raises(page.VendorMissing, match=r"uPlot-9\.9\.js is missing.*make bootstrap"):
        HttpServer(Api(tmp_path / "c.sqlite"), "127.0.0.1", 0)


def test_openapi_lists_every_route_and_docs_render_it(server: HttpServer) -> None:
    status, doc = get_json(server, "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path, methods in {
        "/api/stores": {"get"},
        "/api/stores/{store}/fridges/{device}/readings": {"get"},
        "/api/stores/{store}/commands": {"get", "post"},
        "/api/stores/{store}/catalogue": {"get", "put"},
        "/api/stores/{store}/orders": {"get", "post"},
        "/api/stores/{store}/orders/{order_id}/cancel": {"post"},
        "/api/alerts/{store}/{alert_id}/ack": {"post"},
        "/ack/{store}/{alert_id}": {"get", "post"},
        "/healthz": {"get"},
        "/haccp/{store}/{fridge}": {"get"},
    }.items():
        assert set(paths[path]) == methods, path
    readings = paths["/api/stores/{store}/fridges/{device}/readings"]["get"]
    assert [(p["name"], p["in"]) for p in readings["parameters"]] == [
        ("store", "path"), ("device", "path"), ("limit", "query"), ("after_boot", "query"),
        ("after_seq", "query")]
    assert readings["summary"].startswith("A fridge's readings")
    order = paths["/api/stores/{store}/orders"]["post"]
    assert order["security"] == [{"bearer": []}] and "application/json" in str(order)
    assert "security" not in paths["/api/stores/{store}/orders"]["get"]
    status, headers, body = request(server, "/docs")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    page = body.decode()
    assert "/api/stores/{store}/fridges/{device}/readings" in page and "<script" not in page
    assert "http://" not in page and "https://" not in page  # no CDN


def test_a_refused_body_is_never_read_as_the_next_request(server: HttpServer) -> None:
    """405 on a path that takes no body: the body (itself shaped like a request) is skipped,
    and the next request on the same keep-alive connection gets its own answer."""
    smuggled = b"GET /api/dead-letters HTTP/1.1\r\nHost: x\r\n\r\n"
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("POST", "/api/stores", body=smuggled)
        first = conn.getresponse()
        assert first.status == 405 and first.headers["Allow"] == "GET, HEAD"
        assert json.loads(first.read())["status"] == 405 and not first.will_close
        sock = conn.sock
        conn.request("GET", "/healthz")
        second = conn.getresponse()
        assert conn.sock is sock  # the same connection
        assert (second.status, json.loads(second.read())["status"]) == (200, "ok")
    finally:
        conn.close()


TOKEN = "t0ken-0123456789abcdef0123456789abcdef"


@pytest.fixture
def writable(tmp_path: Path) -> Iterator[HttpServer]:
    path = tmp_path / "cloud.sqlite"
    Database.open(path).close()
    with HttpServer(Api(path, api_token=TOKEN.encode()), "127.0.0.1", 0) as srv:
        yield srv


def _raw_post(srv: HttpServer, path: str, headers: list[tuple[str, bytes]],
              body: bytes = b"") -> tuple[int, http.client.HTTPMessage, Any, bool]:
    """A POST whose headers are sent exactly as given (no Content-Length unless listed)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders(body or None)
        resp = conn.getresponse()
        return resp.status, resp.headers, json.loads(resp.read()), resp.will_close
    finally:
        conn.close()


def test_a_token_that_is_not_ascii_is_refused_as_malformed(writable: HttpServer) -> None:
    body = json.dumps({"items": [{"item": "00000000000017", "qty": 1}]}).encode()
    json_ct = ("Content-Type", b"application/json")
    for path in ("/api/stores/store-001/orders", "/api/alerts/store-001/f/r/1/ack"):
        for token in ("Bearer tökén".encode(), b"Bearer \xff\xfe", "Bearer 令牌".encode()):
            status, headers, doc, _ = _raw_post(writable, path, [
                ("Authorization", token), json_ct, ("Content-Length", b"%d" % len(body))],
                body)
            assert (status, doc["status"]) == (401, 401), (path, token)
            assert headers["WWW-Authenticate"].startswith("Bearer")
    status, _, doc, _ = _raw_post(writable, "/api/stores/store-001/orders", [
        ("Authorization", f"Bearer {TOKEN}x".encode()), json_ct,
        ("Content-Length", b"%d" % len(body))], body)
    assert status == 403 and doc["error"] == "wrong token"


def test_body_framing_and_type_limits(writable: HttpServer) -> None:
    auth = ("Authorization", f"Bearer {TOKEN}".encode())
    orders = "/api/stores/store-001/orders"
    status, _, doc, closed = _raw_post(writable, orders, [auth])
    assert (status, doc["error"], closed) == (411, "Content-Length required", True)
    status, _, doc, closed = _raw_post(writable, orders, [
        auth, ("Transfer-Encoding", b"chunked")], b"2\r\n{}\r\n0\r\n\r\n")
    assert (status, closed) == (411, True) and "not chunks" in doc["error"]
    # Only the header: the refusal comes before any body, and the connection closes.
    status, _, doc, closed = _raw_post(writable, orders, [
        auth, ("Content-Length", b"%d" % (64 * 1024 + 1))])
    assert (status, closed) == (413, True) and "over 65536 bytes" in doc["error"]
    status, _, doc, _ = _raw_post(writable, "/api/stores/store-001/commands", [
        auth, ("Content-Length", b"4097")])
    assert status == 413 and "over 4096 bytes" in doc["error"]
    status, _, doc, _ = _raw_post(writable, orders, [
        auth, ("Content-Type", b"text/plain"), ("Content-Length", b"2")], b"{}")
    assert status == 415 and "application/json" in doc["error"]
    status, _, doc, _ = _raw_post(writable, orders, [
        auth, ("Content-Type", b"application/json"), ("Content-Length", b"23")],
        b'{"items": [], "a": NaN}')
    assert status == 400 and "only whole numbers" in doc["error"]
    for bad in (b'{"customer": "a", "customer": "b"}', b"[1, 2]", b'"x"'):
        status, _, doc, _ = _raw_post(writable, orders, [
            auth, ("Content-Type", b"application/json"),
            ("Content-Length", b"%d" % len(bad))], bad)
        assert status == 400 and ("duplicate key" in doc["error"]
                                  or "must be a JSON object" in doc["error"]), bad
    status, headers, body = request(writable, "/api/stores?" + "a=1&" * 600)
    assert status == 414 and json.loads(body)["status"] == 414
    status, headers, body = request(writable, "/healthz", headers={"Content-Length": "3"},
                                    body=b"abc")
    assert status == 413 and headers["Connection"] == "close"
    assert request(writable, "/api/stores?a=1&b=2&c=3&d=4&e=5&f=6&g=7&h=8&i=9")[0] == 400


def test_a_client_that_stalls_mid_request_loses_its_connection(
        writable: HttpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import time

    from cloud_gateway.web import core

    monkeypatch.setattr(core, "REQUEST_TIMEOUT_S", 0.5)
    for stalled, answer in (
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b""),  # half a head: no answer
        # A refused write whose body never ends: answered, then cut off.
        (b"POST /api/stores HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc",
         b"HTTP/1.1 405 "),
    ):
        with socket.create_connection(("127.0.0.1", writable.port), timeout=5) as sock:
            start = time.monotonic()
            sock.sendall(stalled)
            received = b""
            while chunk := sock.recv(4096):
                received += chunk
            assert 0.4 < time.monotonic() - start < 4
            assert received.startswith(answer) and bool(received) == bool(answer)
    assert request(writable, "/healthz")[0] == 200  # a whole request is answered as ever


def test_an_alert_ack_is_read_by_the_strict_json_reader(writable: HttpServer) -> None:
    ack = "/api/alerts/store-001/fridge-1/hot/1/ack"
    auth = ("Authorization", f"Bearer {TOKEN}".encode())
    json_ct = ("Content-Type", b"application/json")
    for bad, message in ((b'{"by": "a", "by": "b"}', "duplicate key"),
                         (b'{"by": "a", "corrective_action": NaN}', "only whole numbers")):
        status, _, doc, _ = _raw_post(writable, ack, [
            auth, json_ct, ("Content-Length", b"%d" % len(bad))], bad)
        assert status == 400 and message in doc["error"], bad
    status, _, doc, _ = _raw_post(writable, ack, [("Content-Length", b"2"), json_ct], b"{}")
    assert status == 401  # the token before the body
    good = b'{"by": "a"}'
    status, _, doc, _ = _raw_post(writable, ack, [
        auth, json_ct, ("Content-Length", b"%d" % len(good))], good)
    assert (status, doc["error"]) == (404, "no such alert")


def test_a_wrong_address_is_a_page_for_a_person_and_json_for_a_program(
        server: HttpServer) -> None:
    status, headers, body = request(server, "/ownr", headers={"Accept": "text/html"})
    assert status == 404 and headers["Content-Type"].startswith("text/html")
    assert "没有这个页面" in body.decode()
    status, _, body = request(server, "/ownr?lang=en", headers={"Accept": "text/html"})
    assert "There is no such page." in body.decode()
    status, headers, body = request(server, "/api/nope", headers={"Accept": "text/html"})
    assert status == 404 and json.loads(body)["error"] == "no such path: /api/nope"
    assert json.loads(request(server, "/ownr", headers={})[2])["status"] == 404
