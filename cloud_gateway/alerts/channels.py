"""Notification channels: a signed webhook and Apprise URLs. The only network code here.

Webhook: `POST` of a JSON body with

    Content-Type: application/json
    X-Xiaodian-Timestamp: 1795640447            (Unix seconds, also `sent_at` in the body)
    X-Xiaodian-Delivery: 42                     (notification id; the same on every retry)
    X-Xiaodian-Signature: sha256=<hex HMAC-SHA256(contact secret, body)>

The signature covers the body, and the body carries `sent_at`, so a receiver that checks the
signature and refuses a `sent_at` more than a few minutes old cannot be fed a replay; the
delivery id lets it ignore a retry of a notice it already has. Any 2xx is success;
redirects are not followed (a signed body should go where it was configured to go).
"""

from __future__ import annotations

import hashlib
import hmac
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from typing import Any

SIGNATURE_HEADER = "X-Xiaodian-Signature"
TIMESTAMP_HEADER = "X-Xiaodian-Timestamp"
DELIVERY_HEADER = "X-Xiaodian-Delivery"
USER_AGENT = "xiaodian-cloud-alerts/1"


@dataclass(frozen=True)
class Attempt:
    ok: bool
    status_code: int | None = None
    error: str | None = None


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str | None) -> bool:
    """What a receiver does (and the tests): constant-time check of the signature header."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def send_webhook(url: str, secret: bytes, body: bytes, delivery_id: int, sent_at: int,
                 timeout_s: float) -> Attempt:
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": USER_AGENT,
        TIMESTAMP_HEADER: str(sent_at), DELIVERY_HEADER: str(delivery_id),
        SIGNATURE_HEADER: sign(secret, body)})
    try:
        with _OPENER.open(req, timeout=timeout_s) as resp:
            resp.read(65536)
            code = int(resp.status)
    except urllib.error.HTTPError as exc:  # a non-2xx answer (3xx too: not followed)
        exc.close()
        return Attempt(False, exc.code, f"HTTP {exc.code} {exc.reason}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Attempt(False, None, f"{type(exc).__name__}: {reason}")
    if 200 <= code < 300:
        return Attempt(True, code)
    return Attempt(False, code, f"HTTP {code}")


def send_apprise(url: str, title: str, body: str) -> Attempt:
    """One Apprise URL (mailto://, tgram://, dingtalk://, wxteams://, ...).

    Apprise reports only success or failure; its own log says why (logged under `apprise`).
    """
    import apprise

    with warnings.catch_warnings():
        # Apprise's e-mail plugin imports the deprecated `imghdr` module when it loads.
        warnings.simplefilter("ignore", DeprecationWarning)
        ap = apprise.Apprise()
        if not ap.add(url):
            return Attempt(False, None, "not a usable Apprise URL")
    started = time.monotonic()
    ok = bool(ap.notify(title=title, body=body))
    if ok:
        return Attempt(True)
    took = time.monotonic() - started
    return Attempt(False, None, f"apprise reported failure after {took:.1f} s (see its log)")
