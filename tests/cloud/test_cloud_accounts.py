"""People and roles over real HTTP: logins, sessions, tokens, store scoping, ack links, audit.

Runs on SQLite and PostgreSQL (conftest.db_target) where the database does the work.
"""

from __future__ import annotations

import http.client
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from cloud_gateway import accounts, users_cli
from cloud_gateway import cli as cloud_cli
from cloud_gateway.alerts.notifier import ack_link
from cloud_gateway.db import Database
from cloud_gateway.ingest import ingest
from cloud_gateway.web import Api, HttpServer
from devstack.testkit.cli import run_commands
from xiaodian.wire.payloads import batch_payload, state_payload

A, B = "store-001", "store-002"
PASSWORD = "correct horse battery"
LINK_SECRET = b"k" * 40
ALERT = "fridge-1/hot/1000000"


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _alert_batch(store: str) -> bytes:
    data = {"change": "raised", "id": ALERT, "fridge": "fridge-1", "rule": "hot",
            "severity": "critical", "audience": "owner", "started_at": 1000.0, "at": 1100.0,
            "duration_s": 100.0, "peak_c": 9.1, "message": "product 9.1 °C", "late": False,
            "data": {"limit_c": 8.0}}
    return batch_payload("events", store, "fridge-1", 1, [
        {"seq": 1, "type": "alert", "fseq": None, "dev_ms": None, "wall": 1100.0,
         "synced": True, "data": data}])


def _fill(db: Database, now: float) -> None:
    for store in (A, B):
        ingest(db, f"xd/v1/{store}/state",
               state_payload(store, True, 1, now, "0.1.0", ["fridge-1"]), "w", now)
        ingest(db, f"xd/v1/{store}/events", _alert_batch(store), "w", now)
    ingest(db, f"xd/v1/{B}/telemetry", b"{customer: Wang, broken", "w", now)  # a dead letter
    with db.transaction() as conn:
        accounts.add_user(conn, "ann", "owner", [A], PASSWORD, now)
        accounts.add_user(conn, "tom", "technician", [A], PASSWORD, now)
        accounts.add_user(conn, "ops", "operator", [], PASSWORD, now)


class Client:
    def __init__(self, srv: HttpServer) -> None:
        self.srv = srv
        self.cookie = ""

    def call(self, method: str, path: str, body: Any = None, *, token: str | None = None,
             ctype: str = "application/json", raw: bytes | None = None,
             ) -> tuple[int, http.client.HTTPMessage, Any]:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if self.cookie:
            headers["Cookie"] = self.cookie
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if method != "GET":
            data = data or b""
            headers["Content-Type"] = ctype
        conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=10)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            text = resp.read()
            ct = resp.headers.get("Content-Type", "")
            return resp.status, resp.headers, json.loads(text) if "json" in ct else text
        finally:
            conn.close()

    def login(self, user: str, password: str = PASSWORD) -> int:
        status, headers, _ = self.call("POST", "/api/login", {"user": user, "password": password})
        if status == 200:
            self.cookie = headers["Set-Cookie"].split(";")[0]
        return status


@pytest.fixture
def clock() -> Clock:
    return Clock(time.time())


@pytest.fixture
def db(db_target: Path | str, clock: Clock) -> Path | str:
    with Database.open(db_target) as d:
        _fill(d, clock())
    return db_target


@pytest.fixture
def srv(db: Path | str, clock: Clock) -> Iterator[HttpServer]:
    with HttpServer(Api(db, alert_link_secret=LINK_SECRET, now=clock), "127.0.0.1", 0) as s:
        yield s


def test_passwords_and_tokens_are_not_stored_in_clear(db: Path | str, clock: Clock) -> None:
    with Database.open(db) as d:
        with d.transaction() as conn:
            _, token = accounts.create_token(conn, "ann", "ci", [], clock())
        stored = d.conn.execute("SELECT password FROM users WHERE username = 'ann'").fetchone()[0]
        digests = [r[0] for r in d.conn.execute("SELECT digest FROM api_tokens")]
    assert PASSWORD not in stored and stored.startswith("scrypt$32768$8$1$")
    assert accounts.verify_password(stored, PASSWORD)
    assert not accounts.verify_password(stored, PASSWORD + "!")
    assert token not in digests and digests == [accounts.digest(token)]


def test_login_wrong_password_me_and_logout(srv: HttpServer) -> None:
    c = Client(srv)
    assert c.login("ann", "not the password") == 401
    assert c.login("nobody") == 401
    assert c.call("GET", "/api/me")[0] == 401
    status, headers, body = c.call("POST", "/api/login", {"user": "ann", "password": PASSWORD})
    assert status == 200 and body["role"] == "owner" and body["stores"] == [A]
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    c.cookie = cookie.split(";")[0]
    assert c.call("GET", "/api/me")[2]["user"] == "ann"
    status, headers, _ = c.call("POST", "/api/logout")
    assert status == 200 and "Max-Age=0" in headers["Set-Cookie"]
    status, _, body = c.call("GET", "/api/me")  # the old cookie is dead on the server side
    assert status == 401 and "session expired" in body["error"]
    assert c.login("ann") == 200  # the pages' button posts the form: back to /login
    status, headers, _ = c.call("POST", "/api/logout", ctype="application/x-www-form-urlencoded")
    assert status == 303 and headers["Location"] == "/login"
    assert c.call("GET", "/api/me")[0] == 401


def test_repeated_wrong_passwords_are_throttled(srv: HttpServer, clock: Clock) -> None:
    c = Client(srv)
    for _ in range(10):
        assert c.login("tom", "guess-guess-guess") == 401
    status, headers, body = c.call("POST", "/api/login", {"user": "tom", "password": PASSWORD})
    assert status == 429 and "too many" in body["error"] and headers["Retry-After"] == "900"
    # The login page says so in the reader's words (the form is for people).
    form = f"user=tom&password={PASSWORD.replace(' ', '+')}&next=/owner".encode()
    status, headers, page = c.call("POST", "/api/login", raw=form,
                                   ctype="application/x-www-form-urlencoded")
    assert status == 429 and headers["Retry-After"] == "900"
    assert "密码错误次数太多，请 15 分钟后再试。" in page.decode()
    assert 'name="next" value="/owner"' in page.decode()
    clock.t += 901  # the window moved on
    assert c.login("tom") == 200


def test_login_form_redirects_only_within_the_site(srv: HttpServer) -> None:
    c = Client(srv)
    status, _, page = c.call("GET", "/login?next=/owner")
    assert status == 200 and b'action="/api/login"' in page
    form = f"user=ann&password={PASSWORD.replace(' ', '+')}&next=//evil.example/".encode()
    status, headers, _ = c.call("POST", "/api/login", raw=form,
                                ctype="application/x-www-form-urlencoded")
    assert status == 303 and headers["Location"] == "/"
    c.cookie = ""
    status, _, _ = c.call("POST", "/api/login", raw=form,
                          ctype="application/x-www-form-urlencoded")
    assert status == 303


def test_a_session_expires(srv: HttpServer, clock: Clock) -> None:
    c = Client(srv)
    assert c.login("ann") == 200
    assert c.call("GET", f"/api/stores/{A}/fridges")[0] == 200
    clock.t += accounts.SESSION_TTL_S + 1
    assert c.call("GET", f"/api/stores/{A}/fridges")[0] == 401


def test_a_technician_sees_store_a_only_and_no_customers(srv: HttpServer) -> None:
    c = Client(srv)
    assert c.login("tom") == 200
    assert c.call("GET", f"/api/stores/{A}/fridges")[0] == 200
    status, _, body = c.call("GET", f"/api/stores/{B}/fridges")
    assert status == 403 and "store-002" in body["error"]
    assert [s["store"] for s in c.call("GET", "/api/stores")[2]["stores"]] == [A]
    assert c.call("GET", f"/api/stores/{A}/alerts")[0] == 200
    assert c.call("GET", f"/api/stores/{B}/alerts")[0] == 403
    assert c.call("GET", f"/api/stores/{A}/orders")[0] == 403  # customers' names
    assert c.call("GET", f"/api/stores/{A}/events?type=pickup")[0] == 403
    assert c.call("GET", f"/api/stores/{A}/events?type=expiry")[0] == 200
    assert c.call("GET", "/api/dead-letters")[0] == 403
    assert c.call("GET", f"/haccp/{B}")[0] == 403
    # An owner of A may see A's orders and acknowledge A's alerts, not B's.
    o = Client(srv)
    assert o.login("ann") == 200
    assert o.call("GET", f"/api/stores/{A}/orders")[0] == 200
    ack = {"by": "Ann", "corrective_action": "moved stock"}
    assert o.call("POST", f"/api/alerts/{B}/{ALERT}/ack", ack)[0] == 403
    assert o.call("POST", f"/api/alerts/{A}/{ALERT}/ack", ack)[0] == 200
    assert c.call("POST", f"/api/alerts/{A}/{ALERT}/ack", ack)[0] == 403  # technicians: no


@pytest.mark.parametrize("path", [
    "/api/stores", f"/api/stores/{A}/orders", f"/api/stores/{A}/orders/1",
    "/api/dead-letters", f"/api/alerts/{A}/{ALERT}", f"/api/stores/{A}/alerts",
    f"/api/stores/{A}/commands", "/api/commands/abc", f"/api/stores/{A}/fridges",
    "/api/audit", "/api/tokens",
])
def test_reads_of_store_or_personal_data_need_a_login(srv: HttpServer, path: str) -> None:
    status, headers, _ = Client(srv).call("GET", path)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert Client(srv).call("GET", "/healthz")[0] == 200


@pytest.mark.parametrize("path", ["/", f"/owner/{A}", f"/haccp/{A}?day=2025-06-01"])
def test_pages_send_a_person_to_the_login_page_and_back(srv: HttpServer, path: str) -> None:
    status, headers, _ = Client(srv).call("GET", path)
    assert status == 303
    assert headers["Location"] == "/login?next=" + quote(path, safe="/")


def test_a_revoked_token_stops_at_once(srv: HttpServer, db: Path | str, clock: Clock) -> None:
    with Database.open(db) as d, d.transaction() as conn:
        tid, token = accounts.create_token(conn, "tom", "laptop", [], clock())
    c = Client(srv)
    assert c.call("GET", f"/api/stores/{A}/fridges", token=token)[0] == 200
    assert c.call("GET", f"/api/stores/{B}/fridges", token=token)[0] == 403
    assert c.call("POST", f"/api/tokens/{tid}/revoke", token=token)[0] == 200
    assert c.call("GET", f"/api/stores/{A}/fridges", token=token)[0] == 403
    # Tokens come from a login session, never from another token.
    assert c.login("tom") == 200
    status, _, body = c.call("POST", "/api/tokens", {"label": "script"})
    assert status == 201 and body["token"].startswith(accounts.TOKEN_PREFIX)
    assert c.call("POST", "/api/tokens", {"label": "x"}, token=body["token"])[0] == 403
    # Revoking the user ends every session and token.
    with Database.open(db) as d, d.transaction() as conn:
        accounts.revoke_user(conn, "tom", clock())
    assert c.call("GET", f"/api/stores/{A}/fridges", token=body["token"])[0] == 403
    assert c.call("GET", "/api/me")[0] == 401


def test_a_token_narrowed_to_a_store_is_no_wider_than_that(srv: HttpServer, db: Path | str,
                                                            clock: Clock) -> None:
    with Database.open(db) as d, d.transaction() as conn:
        _, ops_a = accounts.create_token(conn, "ops", "store A only", [A], clock())
        _, ops_all = accounts.create_token(conn, "ops", "all", [], clock(), expires_in_s=60)
    c = Client(srv)
    assert c.call("GET", f"/api/stores/{A}/orders", token=ops_a)[0] == 200
    assert c.call("GET", f"/api/stores/{B}/orders", token=ops_a)[0] == 403
    assert c.call("GET", "/api/dead-letters", token=ops_a)[0] == 403  # spans every store
    assert [s["store"] for s in c.call("GET", "/api/stores", token=ops_a)[2]["stores"]] == [A]
    status, _, body = c.call("GET", "/api/dead-letters", token=ops_all)
    assert status == 200 and body["dead_letters"][0]["topic"] == f"xd/v1/{B}/telemetry"
    clock.t += 61  # past the token's expiry
    assert c.call("GET", "/api/dead-letters", token=ops_all)[0] == 403


def test_an_ack_link_expires_and_works_once(srv: HttpServer, clock: Clock) -> None:
    base = srv.url.rstrip("/")
    key = f"{A}/{ALERT}"
    old = ack_link(base, LINK_SECRET, key, "wang", int(clock()) - 1)
    status, _, page = Client(srv).call("GET", urlsplit(old).path + "?" + urlsplit(old).query)
    assert status == 410 and "已过期" in page.decode()  # the form's pages: Chinese first
    link = urlsplit(ack_link(base, LINK_SECRET, key, "wang", int(clock()) + 3600))
    c = Client(srv)
    assert c.call("GET", f"{link.path}?{link.query}")[0] == 200
    form = f"{link.query}&by=Wang&corrective_action=door+shut".encode()
    ct = "application/x-www-form-urlencoded"
    status, _, page = c.call("POST", link.path, raw=form, ctype=ct)
    assert status == 200 and "已确认" in page.decode()
    status, _, page = c.call("POST", link.path, raw=form, ctype=ct)
    assert status == 410 and "已经用过" in page.decode()
    assert c.call("GET", f"{link.path}?{link.query}")[0] == 410
    clock.t += 7200  # a fresh link past its hour
    link2 = urlsplit(ack_link(base, LINK_SECRET, key, "li", int(clock()) - 3600))
    assert c.call("POST", link2.path, raw=f"{link2.query}&by=Li".encode(), ctype=ct)[0] == 410


def test_audit_rows_for_acks_listed_for_operators_and_by_the_cli(
        srv: HttpServer, db: Path | str, capsys: pytest.CaptureFixture[str]) -> None:
    o = Client(srv)
    assert o.login("ann") == 200
    # A critical alert: acknowledged only with the corrective action (issue #13).
    assert o.call("POST", f"/api/alerts/{A}/{ALERT}/ack", {"by": "Ann"})[0] == 422
    assert o.call("POST", f"/api/alerts/{A}/{ALERT}/ack",
                  {"by": "Ann", "corrective_action": "moved stock"})[0] == 200
    link = urlsplit(ack_link(srv.url, LINK_SECRET, f"{A}/{ALERT}", "wang"))
    form = "application/x-www-form-urlencoded"
    # The alert is critical: the link's form asks what was done before it counts.
    status, _, page = o.call("POST", link.path, raw=link.query.encode(), ctype=form)
    assert status == 422 and "必须填写纠正措施" in page.decode()
    assert o.call("POST", link.path, raw=f"{link.query}&corrective_action=door+shut".encode(),
                  ctype=form)[0] == 200
    assert o.call("GET", "/api/audit")[0] == 403  # operators only
    ops = Client(srv)
    assert ops.login("ops") == 200
    status, _, body = ops.call("GET", f"/api/audit?store={A}")
    assert status == 200
    rows = [(r["actor"], r["role"], r["action"], r["store"], r["target"]) for r in body["audit"]]
    assert rows == [("link:wang", "", "alert.ack", A, ALERT),
                    ("ann", "owner", "alert.ack", A, ALERT)]
    assert run_cli(["cloud", "audit", "--db", str(db), "--format", "jsonl"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["actor"] for x in lines] == ["link:wang", "ann"]


def test_catalogue_push_by_role_and_its_audit_row(srv: HttpServer, db: Path | str) -> None:
    items = {"items": [{"item": "06901234567892", "name": "Fresh milk 1 L", "unit": "piece",
                        "shelf_life_days": 7, "storage": "chilled", "location": None}]}
    tech, owner = Client(srv), Client(srv)
    assert tech.login("tom") == 200 and owner.login("ann") == 200
    assert tech.call("PUT", f"/api/stores/{A}/catalogue", items)[0] == 403
    assert owner.call("PUT", f"/api/stores/{B}/catalogue", items)[0] == 403
    status, _, body = owner.call("PUT", f"/api/stores/{A}/catalogue", items)
    assert status == 200 and body["version"] == 1
    assert tech.call("GET", f"/api/stores/{A}/catalogue")[0] == 200  # store data: readable
    with Database.open(db) as d:
        rows = [tuple(r) for r in d.conn.execute(
            "SELECT actor, role, action, store, target, via FROM audit_log")]
    assert rows == [("ann", "owner", "catalogue.push", A, "v1", "session from 127.0.0.1")]


def run_cli(argv: list[str]) -> int:
    return run_commands(argv, cloud_cli.register, users_cli.register)


def test_cli_user_and_token_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    db = str(tmp_path / "c.sqlite")
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert run_cli(["cloud", "user", "add", "ann", "--role", "owner", "--store", A,
                    "--db", db, "--password-stdin"]) == 0
    assert "added ann: owner of store-001" in capsys.readouterr().out
    assert run_cli(["cloud", "user", "add", "bob", "--role", "technician", "--db", db,
                    "--no-password"]) == 1
    assert "needs --store" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert run_cli(["cloud", "user", "add", "cy", "--role", "operator", "--db", db,
                    "--password-stdin"]) == 1
    assert "at least 10 characters" in capsys.readouterr().err
    assert run_cli(["cloud", "user", "add", "ann", "--role", "operator", "--db", db,
                    "--no-password"]) == 1
    assert "exists" in capsys.readouterr().err
    assert run_cli(["cloud", "token", "create", "ann", "--db", db, "--store", B]) == 1
    assert "ann has no store 'store-002'" in capsys.readouterr().err
    assert run_cli(["cloud", "token", "create", "ann", "--db", db, "--label", "ci"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith(accounts.TOKEN_PREFIX)
    raw = Path(db).read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("c.sqlite-*"))
    assert token.encode() not in raw and PASSWORD.encode() not in raw
    assert run_cli(["cloud", "user", "list", "--db", db]) == 0
    assert capsys.readouterr().out == "ann\towner\tstore-001\tactive\n"
    assert run_cli(["cloud", "token", "revoke", "1", "--db", db]) == 0
    assert run_cli(["cloud", "token", "revoke", "1", "--db", db]) == 1
    assert "no active token 1" in capsys.readouterr().err
    assert run_cli(["cloud", "user", "revoke", "ann", "--db", db]) == 0
    assert run_cli(["cloud", "user", "revoke", "ghost", "--db", db]) == 1
    assert "no active user 'ghost'" in capsys.readouterr().err
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT revoked_at IS NOT NULL FROM users").fetchone() == (1,)
