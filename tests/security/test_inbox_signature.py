"""The demo's notice inbox believes only the cloud: a forged, altered, stale or replayed
notice is refused and never shown; a genuine one is kept once, retries included. The
genuine notices are made by the cloud's own sender (`channels.send_webhook`), so the inbox's
check is held to what the cloud really sends."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any

from cloud_gateway.alerts import channels
from devstack.inbox import Inbox
from devstack.inbox_server import InboxServer

SECRET = b"owner-webhook-secret-0123456789abcdef"
NOW = 1_796_650_000.0


def _body(delivery: int, sent_at: int, **extra: Any) -> bytes:
    alert = {"key": "store-001/fridge-2/hot/1796649000000", "store": "store-001",
             "fridge": "fridge-2", "rule": "hot", "severity": "critical", "state": "active",
             "raised_at": 1796649900.0, "peak_c": 10.0}
    body = {"kind": "alert", "title": "Fridge alert", "text": "fridge-2 is hot", "alert": alert,
            "ack_url": "http://127.0.0.1:1/ack/store-001/fridge-2/hot/1796649000000?t=x.1.y",
            "sent_at": sent_at, "delivery_id": delivery, "contact": "owner", **extra}
    return json.dumps(body, separators=(",", ":")).encode()


def _sign(raw: bytes, secret: bytes = SECRET) -> str:
    return "sha256=" + hmac.new(secret, raw, hashlib.sha256).hexdigest()


def _post(inbox: Inbox, raw: bytes, signature: str | None, sent_at: int,
          delivery: int) -> int:
    return inbox.receive(raw, signature, str(sent_at), str(delivery)).status


def test_a_genuine_notice_is_kept_once() -> None:
    inbox = Inbox(SECRET, now=lambda: NOW)
    raw = _body(7, int(NOW))
    assert _post(inbox, raw, _sign(raw), int(NOW), 7) == 204
    [notice] = inbox.notices()
    assert (notice.delivery, notice.kind, notice.alert["fridge"]) == (7, "alert", "fridge-2")
    assert inbox.refused == 0


def test_forged_or_altered_notices_are_refused() -> None:
    inbox = Inbox(SECRET, now=lambda: NOW)
    raw = _body(7, int(NOW))
    forged = _sign(raw, b"someone-else-s-secret-0123456789")
    altered = raw.replace(b"fridge-2 is hot", b"all is fine!!!!")
    assert _post(inbox, raw, forged, int(NOW), 7) == 401
    assert _post(inbox, altered, _sign(raw), int(NOW), 7) == 401
    assert _post(inbox, raw, None, int(NOW), 7) == 401
    assert _post(inbox, raw, _sign(raw).upper(), int(NOW), 7) == 401
    # Only the body is signed: headers that disagree with it are not believed either.
    assert _post(inbox, raw, _sign(raw), int(NOW) - 1, 7) == 400
    assert _post(inbox, raw, _sign(raw), int(NOW), 8) == 400
    assert inbox.notices() == [] and inbox.refused == 6


def test_a_replayed_notice_is_refused_now_and_later() -> None:
    clock = [NOW]
    inbox = Inbox(SECRET, now=lambda: clock[0])
    raw = _body(7, int(NOW))
    assert _post(inbox, raw, _sign(raw), int(NOW), 7) == 204
    # The same signed request again, at once and after the freshness window.
    assert _post(inbox, raw, _sign(raw), int(NOW), 7) == 409
    clock[0] = NOW + inbox.max_age_s + 1
    assert _post(inbox, raw, _sign(raw), int(NOW), 7) == 401
    assert len(inbox.notices()) == 1 and inbox.refused == 2


def test_stale_or_future_notices_are_refused_even_when_new() -> None:
    inbox = Inbox(SECRET, now=lambda: NOW)
    for sent_at in (int(NOW - inbox.max_age_s - 1), int(NOW + inbox.max_age_s + 1)):
        raw = _body(9, sent_at)
        assert _post(inbox, raw, _sign(raw), sent_at, 9) == 401
    assert inbox.notices() == []


def test_the_cloud_retrying_a_delivery_is_answered_but_kept_once() -> None:
    clock = [NOW]
    inbox = Inbox(SECRET, now=lambda: clock[0])
    first = _body(7, int(NOW))
    assert _post(inbox, first, _sign(first), int(NOW), 7) == 204
    clock[0] = NOW + 5  # the answer was lost; the cloud signs the retry anew
    retry = _body(7, int(NOW + 5))
    assert _post(inbox, retry, _sign(retry), int(NOW + 5), 7) == 200
    assert [n.delivery for n in inbox.notices()] == [7]


def test_what_the_cloud_sends_is_accepted_and_a_wrong_secret_is_not() -> None:
    with InboxServer(SECRET) as server:
        now = int(time.time())
        good = channels.send_webhook(server.hook_url, SECRET, _body(1, now), 1, now, 5.0)
        bad = channels.send_webhook(server.hook_url, b"not-the-owner-s-secret-at-all!!",
                                    _body(2, now), 2, now, 5.0)
        with urllib.request.urlopen(server.url + "api/notices", timeout=5) as resp:
            held = json.load(resp)
    assert good.ok, good
    assert (bad.ok, bad.status_code) == (False, 401)
    assert [n["delivery"] for n in held["notices"]] == [1]


def test_the_inbox_answers_only_under_its_loopback_name() -> None:
    """A page elsewhere cannot read the notices (and their links) by DNS rebinding."""
    with InboxServer(SECRET) as server:
        port = server.port
        statuses = {}
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"evil.example:{port}"):
            req = urllib.request.Request(server.url + "api/notices", headers={"Host": host})
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    statuses[host.split(":")[0]] = resp.status
            except urllib.error.HTTPError as exc:
                statuses[host.split(":")[0]] = exc.code
    assert statuses == {"127.0.0.1": 200, "localhost": 200, "evil.example": 421}
