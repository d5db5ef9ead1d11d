"""The owner's phone in the demo: a notification inbox taking the cloud's signed webhook.

The pure core (no sockets): `Inbox.receive` judges one POST as a phone-side receiver
should, and keeps what it accepts; `devstack.inbox_server` puts it on loopback HTTP and
shows the notices as a phone-sized page.

What the cloud sends (cloud_gateway/alerts/channels.py, docs/cloud.md): a JSON body with
`sent_at` and `delivery_id` in it, and the headers

    X-Xiaodian-Signature: sha256=<hex HMAC-SHA256(contact secret, raw body)>
    X-Xiaodian-Timestamp: <sent_at>          X-Xiaodian-Delivery: <delivery_id>

The check is written here again, not imported from the cloud, so that the demo exercises
the documented contract and not the sender's own code. Refused:

- a missing or wrong signature (a forgery, or a body changed on the way): 401;
- headers that disagree with the signed body (only the body is signed): 400;
- a `sent_at` more than `max_age_s` old or ahead (a notice captured and sent again later,
  or from a clock that cannot be believed): 401;
- the very same signed request a second time while it is still fresh (a replay): 409.

A notice the inbox already holds under the same delivery id but with a fresh signature is
the cloud retrying (its previous attempt's answer was lost): 200, kept once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

SIGNATURE_HEADER = "X-Xiaodian-Signature"
TIMESTAMP_HEADER = "X-Xiaodian-Timestamp"
DELIVERY_HEADER = "X-Xiaodian-Delivery"
MAX_AGE_S = 300.0  # "a few minutes" (docs/cloud.md): a phone's clock and the cloud's agree
MAX_BODY_BYTES = 256 * 1024  # one notice is about 1.5 kB


@dataclass(frozen=True)
class Notice:
    """One accepted notification: what the cloud sent, and when it arrived (Unix s)."""

    delivery: int
    received_at: float
    body: dict[str, Any]

    @property
    def alert(self) -> dict[str, Any]:
        alert: dict[str, Any] = self.body["alert"]
        return alert

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", "alert"))

    @property
    def ack_url(self) -> str:
        return str(self.body.get("ack_url", ""))


@dataclass(frozen=True)
class Verdict:
    status: int
    reason: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def expected_signature(secret: bytes, raw: bytes) -> str:
    return "sha256=" + hmac.new(secret, raw, hashlib.sha256).hexdigest()


def _int_text(value: Any) -> str | None:
    """An integer as the header carries it; None for anything else (bools included)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _well_formed(body: dict[str, Any]) -> str | None:
    """Why a genuine body cannot be shown, or None."""
    alert = body.get("alert")
    if not isinstance(alert, dict):
        return "alert: an object expected"
    for name in ("key", "store", "fridge", "rule", "severity"):
        if not isinstance(alert.get(name), str):
            return f"alert.{name}: a string expected"
    if not isinstance(body.get("kind"), str):
        return "kind: a string expected"
    url = body.get("ack_url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return "ack_url: an http(s) URL expected"
    return None


class Inbox:
    """The notices of one contact (one webhook secret), newest last; thread-safe."""

    def __init__(self, secret: bytes, *, max_age_s: float = MAX_AGE_S,
                 now: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("secret: at least 16 bytes")
        self._secret = secret
        self.max_age_s = max_age_s
        self._now = now
        self._lock = threading.Lock()
        self._notices: list[Notice] = []
        self._deliveries: set[int] = set()
        self._seen: dict[str, float] = {}  # signature -> sent_at, while still fresh
        self.refused = 0

    def receive(self, raw: bytes, signature: str | None, timestamp: str | None,
                delivery: str | None) -> Verdict:
        verdict = self._judge(raw, signature, timestamp, delivery)
        if not verdict.ok:
            with self._lock:
                self.refused += 1
        return verdict

    def _judge(self, raw: bytes, signature: str | None, timestamp: str | None,
               delivery: str | None) -> Verdict:
        if signature is None or not hmac.compare_digest(
                expected_signature(self._secret, raw), signature):
            return Verdict(HTTPStatus.UNAUTHORIZED, "signature missing or wrong")
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return Verdict(HTTPStatus.BAD_REQUEST, "body is not JSON")
        if not isinstance(body, dict):
            return Verdict(HTTPStatus.BAD_REQUEST, "body: a JSON object expected")
        sent_at, delivery_id = _int_text(body.get("sent_at")), _int_text(body.get("delivery_id"))
        if sent_at is None or delivery_id is None:
            return Verdict(HTTPStatus.BAD_REQUEST, "sent_at and delivery_id: integers expected")
        if timestamp != sent_at or delivery != delivery_id:
            return Verdict(HTTPStatus.BAD_REQUEST,
                           f"{TIMESTAMP_HEADER} and {DELIVERY_HEADER} must match the body")
        now = self._now()
        if abs(now - int(sent_at)) > self.max_age_s:
            return Verdict(HTTPStatus.UNAUTHORIZED,
                           f"sent_at is {now - int(sent_at):.0f} s from now: too old or ahead")
        problem = _well_formed(body)
        if problem is not None:
            return Verdict(HTTPStatus.BAD_REQUEST, problem)
        with self._lock:
            # Forget signatures that the age check refuses anyway: memory stays bounded.
            horizon = now - self.max_age_s
            self._seen = {s: t for s, t in self._seen.items() if t >= horizon}
            if signature in self._seen:
                return Verdict(HTTPStatus.CONFLICT, "this signed notice was received already")
            self._seen[signature] = float(sent_at)
            if int(delivery_id) in self._deliveries:
                return Verdict(HTTPStatus.OK, "a retry of a notice already here")
            self._deliveries.add(int(delivery_id))
            self._notices.append(Notice(int(delivery_id), now, body))
        return Verdict(HTTPStatus.NO_CONTENT, "kept")

    def notices(self) -> list[Notice]:
        """Every notice kept, in order of arrival."""
        with self._lock:
            return list(self._notices)
