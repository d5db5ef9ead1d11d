"""The `[alerts]` table of the cloud config: contacts per store, escalation, delivery.

    [alerts]
    link_secret_file = "secrets/ack-link"   # >= 32 chars, mode 0600: signs the ack links
    public_url = "https://cloud.example.com/"  # where the ack links point

    [alerts.escalation]                     # every store's defaults (docs/design.md)
    backup_after_min = 20
    repeat_every_min = 30
    realert_after_ack_min = 60
    quiet_start = "22:00"                   # warnings only; critical alerts always go out
    quiet_end = "07:00"
    timezone = "Asia/Shanghai"

    [[alerts.stores]]
    store = "store-001"
    [[alerts.stores.contacts]]
    name = "wang"                           # shown in the ack record ("via link:wang")
    role = "owner"                          # owner | backup | technician
    webhook_url = "https://hooks.example.com/xiaodian"
    webhook_secret_file = "secrets/wang-webhook"   # HMAC key of X-Xiaodian-Signature
    apprise = ["mailto://user:pass@smtp.example.com?to=wang@example.com"]
    lang = "zh_CN"                          # the notices' language: zh_CN (default) or en
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from xiaodian.i18n import DEFAULT_LOCALE, LOCALES
from xiaodian.wire import ids

from .policy import EscalationPolicy


@dataclass(frozen=True)
class Contact:
    name: str
    # technician: told of maintenance alerts (cloud_gateway/maintenance_alerts.py), never of
    # cold-chain ones; owners and backups never of maintenance alerts.
    role: Literal["owner", "backup", "technician"] = "owner"
    webhook_url: str = ""
    webhook_secret_file: Path | None = None
    apprise: tuple[str, ...] = ()
    lang: str = DEFAULT_LOCALE  # the language of this person's notices

    def __post_init__(self) -> None:
        if self.lang not in LOCALES:
            raise ValueError(f"lang: one of {', '.join(LOCALES)}")
        if not ids.is_name(self.name):
            raise ValueError("name: must be 1-64 characters of A-Z a-z 0-9 _ . -")
        if self.webhook_url and not self.webhook_url.startswith(("http://", "https://")):
            raise ValueError("webhook_url: must be an http:// or https:// URL")
        if bool(self.webhook_url) != (self.webhook_secret_file is not None):
            raise ValueError("webhook_secret_file: required with webhook_url (and only then)")
        if not self.webhook_url and not self.apprise:
            raise ValueError("apprise: a contact needs a webhook_url or apprise URLs")
        if any("://" not in u for u in self.apprise):
            raise ValueError("apprise: every entry must be an Apprise URL (scheme://...)")

    def channels(self) -> list[str]:
        """Channel names of this contact: "webhook", "apprise:0", "apprise:1", ..."""
        return (["webhook"] if self.webhook_url else []) + [
            f"apprise:{i}" for i in range(len(self.apprise))]


@dataclass(frozen=True)
class StoreAlerts:
    store: str
    contacts: tuple[Contact, ...] = ()
    escalation: EscalationPolicy | None = None  # None: the [alerts.escalation] defaults

    def __post_init__(self) -> None:
        if not ids.is_store_id(self.store):
            raise ValueError("store: must be 1-64 characters of A-Z a-z 0-9 _ -")
        names = [c.name for c in self.contacts]
        if len(set(names)) != len(names):
            raise ValueError("contacts: contact names must be unique within a store")


@dataclass(frozen=True)
class AlertSettings:
    """Without stores (the default) alerts are still kept and shown, but nobody is told."""

    link_secret_file: Path | None = None
    public_url: str = ""  # "" = this worker's own http_host:http_port
    escalation: EscalationPolicy = field(default_factory=EscalationPolicy)
    stores: tuple[StoreAlerts, ...] = ()
    tick_interval_s: float = 5.0  # how often the database thread runs the escalation tick
    queue_size: int = 200  # notifications handed to the sender and not yet sent
    timeout_s: float = 10.0  # one delivery attempt
    retry_initial_s: float = 5.0  # back-off after a failed attempt: doubles each time ...
    retry_max_s: float = 600.0  # ... up to this
    max_attempts: int = 30  # then the notification is marked failed (logged as an error)

    def __post_init__(self) -> None:
        names = [s.store for s in self.stores]
        if len(set(names)) != len(names):
            raise ValueError("stores: each store may appear once")
        if self.stores and self.link_secret_file is None:
            raise ValueError("link_secret_file: required when contacts are configured")
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise ValueError("public_url: must be an http:// or https:// URL")
        if not 0.01 <= self.tick_interval_s <= 300.0:
            raise ValueError("tick_interval_s: must be between 0.01 and 300 seconds")
        if not 1 <= self.queue_size <= 100_000:
            raise ValueError("queue_size: must be between 1 and 100000")
        if not 0.1 <= self.timeout_s <= 120.0:
            raise ValueError("timeout_s: must be between 0.1 and 120 seconds")
        if not 0.01 <= self.retry_initial_s <= self.retry_max_s <= 86400.0:
            raise ValueError("retry_initial_s: must be between 0.01 and retry_max_s (<= 86400)")
        if not 1 <= self.max_attempts <= 1000:
            raise ValueError("max_attempts: must be between 1 and 1000")

    def store(self, store: str) -> StoreAlerts | None:
        return next((s for s in self.stores if s.store == store), None)

    def policy(self, store: str) -> EscalationPolicy:
        s = self.store(store)
        return s.escalation if s is not None and s.escalation is not None else self.escalation
