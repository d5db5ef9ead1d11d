"""An alert service (cloud_gateway.alerts.notifier) for one store with an injected clock and
quick retries, as the alert delivery and maintenance alert tests run it: contacts are
webhooks (`hook`) signed with webhook_receiver's SECRET."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from webhook_receiver import SECRET

from cloud_gateway.alerts.notifier import AlertService
from cloud_gateway.alerts.policy import EscalationPolicy
from cloud_gateway.alerts.settings import AlertSettings, Contact, StoreAlerts
from cloud_gateway.db import Database
from devstack.testkit.wait import wait

LINK_SECRET = b"l" * 40
STORE = "store-001"
T0 = 1_750_000_000.0  # 2025-06-15 23:06:40 in Shanghai: quiet hours in the quiet tests


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def service(target: Path | str, contacts: list[Contact], clock: Clock,
            policy: EscalationPolicy | None = None, **kw: Any) -> AlertService:
    settings = AlertSettings(
        link_secret_file=Path("/unused"), tick_interval_s=0.05, retry_initial_s=0.05,
        retry_max_s=0.2, timeout_s=5.0,
        escalation=policy or EscalationPolicy(),
        stores=(StoreAlerts(STORE, tuple(contacts)),), **kw)
    secrets = {f"{STORE}/{c.name}": SECRET for c in contacts if c.webhook_url}
    return AlertService(settings, target, "w-1", link_secret=LINK_SECRET,
                        webhook_secrets=secrets, public_url="http://127.0.0.1:1/", now=clock)


def hook(name: str, url: str, role: str = "owner") -> Contact:
    return Contact(name=name, role=role, webhook_url=url,  # type: ignore[arg-type]
                   webhook_secret_file=Path("/unused"))


def settle(svc: AlertService, db: Database, clock: Clock, until: Callable[[], bool]) -> None:
    """Tick (real seconds pass only for retries' back-off) until `until()`."""
    def settled() -> bool:
        if until():
            return True
        svc.tick(db, clock())
        clock.t += 0.05  # lets the (0.05 s) back-off of failed attempts run out
        return False

    wait(settled, 30, "the deliveries settled", interval=0.02)
