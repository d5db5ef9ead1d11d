"""The terminal's loopback pages refuse what another web site could make its browser send."""

from __future__ import annotations

import http.client
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.kiosk import Kiosk


@pytest.fixture
def kiosk() -> Iterator[Kiosk]:
    k = Kiosk("127.0.0.1", 0)
    k.start()
    yield k
    k.close()


def _request(k: Kiosk, method: str, path: str, headers: dict[str, str],
             body: bytes | None = None) -> tuple[int, dict[str, object]]:
    port = k.server.server_address[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest(method, path, skip_host=True)
    for name, value in headers.items():
        conn.putheader(name, value)
    if body is not None:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    resp = conn.getresponse()
    status, payload = resp.status, json.loads(resp.read() or b"{}")
    conn.close()
    return status, payload


def test_own_host_reads_status(kiosk: Kiosk) -> None:
    port = kiosk.server.server_address[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        status, body = _request(kiosk, "GET", "/api/status", {"Host": host})
        assert status == 200 and "alerts" in body


def test_a_rebound_host_name_is_refused(kiosk: Kiosk) -> None:
    port = kiosk.server.server_address[1]
    status, body = _request(kiosk, "GET", "/api/counter?since=-1",
                            {"Host": f"attacker.example:{port}"})
    assert status == 403 and "not this terminal" in str(body["error"])


def test_a_post_from_another_origin_is_refused(kiosk: Kiosk) -> None:
    port = kiosk.server.server_address[1]
    status, _ = _request(kiosk, "POST", "/api/counter/confirm",
                         {"Host": f"127.0.0.1:{port}", "Origin": "http://attacker.example",
                          "Content-Type": "application/json"}, b"{}")
    assert status == 403
    assert kiosk.requests.empty()  # nothing reached the agent


def test_a_form_style_post_is_refused_before_the_agent_sees_it(kiosk: Kiosk) -> None:
    port = kiosk.server.server_address[1]
    status, body = _request(kiosk, "POST", "/api/counter/scan",
                            {"Host": f"127.0.0.1:{port}", "Content-Type": "text/plain"},
                            b'{"code": "PK1:AAAA"}')
    assert status == 415 and "application/json" in str(body["error"])
    assert kiosk.requests.empty()


@pytest.mark.parametrize(
    ("length", "status"), [("abc", 411), ("-1", 411), ("1e3", 411), (None, 411), ("99999999", 413)]
)
def test_a_bad_content_length_gets_an_answer(kiosk: Kiosk, length: str | None,
                                             status: int) -> None:
    # It used to raise in the handler: no answer for the page, a traceback in the log.
    port = kiosk.server.server_address[1]
    headers = {"Host": f"127.0.0.1:{port}", "Content-Type": "application/json"}
    if length is not None:
        headers["Content-Length"] = length
    got, body = _request(kiosk, "POST", "/api/counter/scan", headers)
    assert got == status and body["error"]
    assert kiosk.requests.empty()


def test_a_refused_body_is_never_read_as_the_next_request(kiosk: Kiosk) -> None:
    port = kiosk.server.server_address[1]
    smuggled = f"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"POST /api/counter/scan HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                  f"Content-Type: text/plain\r\nContent-Length: {len(smuggled)}\r\n\r\n"
                  .encode() + smuggled)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 415") or answer.startswith(b"HTTP/1.1 415")
    assert answer.count(b"HTTP/1.") == 1  # one answer, then the connection closed


def test_the_pages_listen_on_loopback_unless_remote_access_is_asked_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from edge.config import EdgeSettings

    # The counter hands over orders without a login: not on the shop's network by mistake.
    with pytest.raises(ValueError, match=r"kiosk_host: '0\.0\.0\.0' is not a loopback.*"
                                         r"kiosk_allow_remote = true"):
        EdgeSettings("store-001", tmp_path, kiosk_port=8080, kiosk_host="0.0.0.0")
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        EdgeSettings("store-001", tmp_path, kiosk_port=8080, kiosk_host=host)
    EdgeSettings("store-001", tmp_path, kiosk_port=0, kiosk_host="0.0.0.0")  # not served
    EdgeSettings("store-001", tmp_path, kiosk_port=8080, kiosk_host="0.0.0.0",
                 kiosk_allow_remote=True)
    with pytest.raises(ValueError, match="not loopback"):
        Kiosk("0.0.0.0", 0)
    with caplog.at_level(logging.WARNING, logger="edge.kiosk"):
        quiet = Kiosk("127.0.0.1", 0, allow_remote=True)  # allowed, but loopback: no warning
        quiet.close()
        assert not caplog.records
        remote = Kiosk("0.0.0.0", 0, allow_remote=True)
        remote.close()
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "without a login" in caplog.records[0].getMessage()
