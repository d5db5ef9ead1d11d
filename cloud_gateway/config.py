"""Configuration of a cloud gateway worker: one validated, frozen object built at start-up.

Example (`cloud.toml`; relative paths are relative to the file):

    [cloud]
    db = "cloud.sqlite"       # SQLite (the default); or, for PostgreSQL, instead of db:
    # database_url = "postgresql://xiaodian@db.example:5432/xiaodian"
    worker_id = "cloud-1"
    http_host = "127.0.0.1"
    http_port = 8080          # 0 picks a free port; the URL is printed at start
    shared_group = "ingest"
    readings_retention_days = 1095   # 0 keeps all; else >= 730 (HACCP records, docs/cloud.md)

    [mqtt]
    host = "localhost"
    port = 8883

    [mqtt.tls]               # the broker makes each certificate's CN the client id, so
    ca = "pki/ca.pem"         # every connection has its own: cloud-1.pem here, and beside
    cert = "pki/cloud-1.pem"  # it cloud-1-down.pem, cloud-1-cmd.pem, cloud-1-cli.pem (and
    key = "pki/cloud-1.key"   # .key); TlsSettings.for_client picks them

    [commands]                # optional: without it this worker collects results only
    signing_key = "cmdkey/command-signing.key"   # Ed25519 PEM, mode 0600
    key_id = "56475aa75463474c"                  # printed by `xiaodian pki command-key`
    api_token_file = "secrets/api-token"         # bearer token for POST, mode 0600
    lifetime_s = 120

    [rollout]                 # optional: what `xiaodian cloud rollout start` may publish
    agent_keys = ["pki/agent-signing.pub"]   # the terminal's own software is published only
                                             # if signed by one of these (`pki agent-key`)

    [pickup]                  # optional: pickup codes for orders
    keys_dir = "pki/pickup"   # <store>.key files from `xiaodian pki pickup-key`
    key_id = 0

    [supply]                  # optional: the supply tick (cutoffs, pickup reminders)
    scheduler = true          # the default; false leaves cutoffs to `xiaodian supply cutoff`
    tick_interval_s = 30
    remind_before_min = 120   # the reminder before a pickup window closes

    [resident_notices]        # optional: residents' notices through Apprise
    apprise_template = "json://sms.example.com/send/{phone}"   # "" = page only
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from xiaodian.agent_release import load_public_keys
from xiaodian.config import load_config
from xiaodian.mqtt import MqttSettings
from xiaodian.wire import ids
from xiaodian.wire.commands import MAX_LIFETIME_S

from .alerts.settings import AlertSettings
from .clock import ClockPolicy
from .resident_notices import NoticeSettings
from .sql import PG_SCHEMES
from .supply.scheduler import SchedulerSettings

MIN_RETENTION_DAYS = 730  # food-safety records: at least two years (docs/cloud.md)


def check_database_url(url: str) -> None:
    """ValueError unless `url` looks like postgresql://[user[:password]@][host][:port]/dbname
    (libpq's URI form; query parameters such as ?sslmode=require are passed on)."""
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError for a port that is not a number in range
    except ValueError as exc:
        raise ValueError(f"database_url: {exc}") from None
    if parts.scheme not in PG_SCHEMES:
        raise ValueError("database_url: expected postgresql://user@host:port/dbname, got"
                         f" scheme {parts.scheme!r}")
    if not parts.path.strip("/") or any(c.isspace() for c in url):
        raise ValueError("database_url: expected postgresql://user@host:port/dbname"
                         " (a database name, no spaces)")
    del port


@dataclass(frozen=True, kw_only=True)
class CloudSettings:
    # The database: a SQLite file (`db`, the default kind), or a PostgreSQL server
    # (`database_url`, libpq's URI form). Exactly one of the two.
    db: Path | None = None
    database_url: str = ""
    # MQTT client id: each worker needs its own, stable across restarts, so that a restarted
    # worker resumes its session and receives what the broker queued for it meanwhile.
    worker_id: str
    http_host: str = "127.0.0.1"
    http_port: int = 0
    shared_group: str = "ingest"
    # Messages waiting for the database thread; beyond it messages are left unacknowledged.
    queue_size: int = 1000
    # Messages already queued that one commit takes together (ingest_many): one
    # transaction, one fsync, one lock and gap update per stream for all of them. The
    # worker never waits to fill a group; acks follow the group's commit.
    ingest_group_max: int = 200
    # How long the broker keeps this worker's session (and queues for it) while it is away.
    session_expiry_s: int = 7 * 24 * 3600
    # Terminal clock estimation (clock.py): the sliding window of the minimum, and how far
    # off a synchronised terminal may be before its wall is corrected too.
    clock_window_s: float = 600.0
    clock_threshold_s: float = 2.0
    # Commands still unanswered this long after their expiry are marked expired. A store
    # accepts a command until exp + its clock skew allowance (120 s), so less than that
    # would call commands expired that may still run (a late answer is recorded anyway).
    command_expiry_grace_s: float = 120.0
    command_sweep_interval_s: float = 10.0
    # Orders and catalogues the broker has not acknowledged are published again this often.
    downlink_retry_s: float = 5.0
    # An order the broker took but the store has not confirmed (state still `open`) after
    # this long is sent again: the store's session may have been lost.
    order_resend_s: float = 300.0
    # Readings are kept this long by their time, then dropped a whole month at a time
    # (db/partitions.py; docs/cloud.md "Retention"). Temperature records are HACCP
    # records: food-safety law wants them kept at least two years, so 0 (keep all) or
    # >= 730. Three years covers the two full years an inspection may ask for, and
    # a shelf life beyond the record.
    readings_retention_days: int = 1095
    # How often the sweep makes the coming months' partitions and applies the retention.
    partition_sweep_interval_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.database_url:
            check_database_url(self.database_url)
            if self.db is not None:
                raise ValueError("database_url: give either db (a SQLite file) or database_url"
                                 " (PostgreSQL), not both")
        elif self.db is None:
            raise ValueError("db: required (the SQLite file), unless database_url is given")
        if not ids.is_name(self.worker_id):
            raise ValueError("worker_id: must be 1-64 characters of A-Z a-z 0-9 _ . -")
        if not self.http_host:
            raise ValueError("http_host: must not be empty")
        if not 0 <= self.http_port <= 65535:
            raise ValueError("http_port: must be between 0 and 65535 (0 = pick a free port)")
        if not ids.is_name(self.shared_group):
            raise ValueError("shared_group: must be 1-64 characters of A-Z a-z 0-9 _ . -")
        if not 1 <= self.queue_size <= 1_000_000:
            raise ValueError("queue_size: must be between 1 and 1000000")
        if not 1 <= self.ingest_group_max <= 10_000:
            raise ValueError("ingest_group_max: must be between 1 and 10000")
        # MQTT 5 carries the interval as a u32; 0 would make the broker forget the session.
        if not 60 <= self.session_expiry_s <= 0xFFFFFFFF:
            raise ValueError("session_expiry_s: must be between 60 and 4294967295")
        if not 1.0 <= self.clock_window_s <= 86400.0:
            raise ValueError("clock_window_s: must be between 1 and 86400 seconds")
        if not 0.0 <= self.clock_threshold_s <= 3600.0:
            raise ValueError("clock_threshold_s: must be between 0 and 3600 seconds")
        if not 0.0 <= self.command_expiry_grace_s <= 86400.0:
            raise ValueError("command_expiry_grace_s: must be between 0 and 86400 seconds")
        if not 0.05 <= self.command_sweep_interval_s <= 3600.0:
            raise ValueError("command_sweep_interval_s: must be between 0.05 and 3600 seconds")
        if not 0.05 <= self.downlink_retry_s <= 3600.0:
            raise ValueError("downlink_retry_s: must be between 0.05 and 3600 seconds")
        if not 1.0 <= self.order_resend_s <= 7 * 86400.0:
            raise ValueError("order_resend_s: must be between 1 and 604800 seconds")
        if self.readings_retention_days != 0 and not (
                MIN_RETENTION_DAYS <= self.readings_retention_days <= 36_500):
            raise ValueError("readings_retention_days: must be 0 (keep all) or between"
                             f" {MIN_RETENTION_DAYS} (two years: HACCP records) and 36500")
        if not 1.0 <= self.partition_sweep_interval_s <= 86400.0:
            raise ValueError("partition_sweep_interval_s: must be between 1 and 86400 seconds")

    @property
    def database(self) -> Path | str:
        """What `Database.open` takes: the SQLite path or the PostgreSQL URL."""
        if self.database_url:
            return self.database_url
        assert self.db is not None  # checked in __post_init__
        return self.db

    @property
    def clock_policy(self) -> ClockPolicy:
        return ClockPolicy(window_s=self.clock_window_s, threshold_s=self.clock_threshold_s)


@dataclass(frozen=True)
class CommandSettings:
    """Issuing signed commands; all three of signing_key, key_id and api_token_file, or
    none (then this worker only collects results). The files are secrets, checked when
    they are loaded (`cloud_gateway.commands.load_signer` / `load_api_token`), not here.

    Not `CommandSettings | None` in CloudConfig: the loader reports errors inside an
    optional table under the table's name only, and a bad key should be named.
    """

    signing_key: Path | None = None  # Ed25519 private key, PEM (`xiaodian pki command-key`)
    key_id: str = ""  # must be the key's id: stores look the public key up by it
    api_token_file: Path | None = None  # the bearer token for mutating HTTP endpoints
    lifetime_s: int = 120  # from issue to expiry; the broker drops it unread after that
    # How long an issuer waits for the broker's PUBACK before answering "not confirmed".
    publish_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        given = {"signing_key": self.signing_key is not None, "key_id": bool(self.key_id),
                 "api_token_file": self.api_token_file is not None}
        if any(given.values()):
            for name, present in given.items():
                if not present:
                    raise ValueError(f"{name}: required with the other two of signing_key,"
                                     " key_id, api_token_file")
        if self.key_id and not ids.is_key_id(self.key_id):
            raise ValueError("key_id: must be 1-64 characters of A-Z a-z 0-9 _ . -")
        if not 5 <= self.lifetime_s <= MAX_LIFETIME_S:
            raise ValueError(f"lifetime_s: must be between 5 and {MAX_LIFETIME_S} seconds")
        if not 0.1 <= self.publish_timeout_s <= 60.0:
            raise ValueError("publish_timeout_s: must be between 0.1 and 60 seconds")

    @property
    def enabled(self) -> bool:
        return self.signing_key is not None


@dataclass(frozen=True)
class RolloutSettings:
    """The agent-signing public keys (`xiaodian pki agent-key`'s .pub) a release of the
    terminal's own software must be signed by before the cloud publishes it and commands
    stores to install it. The terminals check it again with their own keys; this check
    keeps a wrongly signed file from ever reaching the artefact store or a rollout. None
    pinned: no agent rollout at all (docs/firmware_update.md, "The terminal's own software")."""

    agent_keys: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        try:  # checked at start-up, not when a technician needs them
            load_public_keys(self.agent_keys)
        except (OSError, ValueError) as exc:
            raise ValueError(f"agent_keys: {exc}") from None


@dataclass(frozen=True)
class PickupSettings:
    """Pickup codes for orders: HMAC keys per store, `<keys_dir>/<store>.key` (hex, 0600),
    made by `xiaodian pki pickup-key STORE --dir PKI` (keys_dir = PKI/pickup)."""

    keys_dir: Path | None = None  # without it, orders get no pickup code (pickup: 503)
    key_id: int = 0  # the key id written into codes; the store accepts it under this id

    def __post_init__(self) -> None:
        if not 0 <= self.key_id <= 255:
            raise ValueError("key_id: must be between 0 and 255")


@dataclass(frozen=True)
class CloudConfig:
    cloud: CloudSettings
    mqtt: MqttSettings
    commands: CommandSettings = field(default_factory=CommandSettings)
    # Contacts, escalation and delivery: cloud_gateway/alerts/settings.py has an example.
    alerts: AlertSettings = field(default_factory=AlertSettings)
    pickup: PickupSettings = field(default_factory=PickupSettings)
    rollout: RolloutSettings = field(default_factory=RolloutSettings)
    # The supply tick (cutoffs, pickup reminders): cloud_gateway/supply/scheduler.py.
    supply: SchedulerSettings = field(default_factory=SchedulerSettings)
    # Residents' notices through Apprise: cloud_gateway/resident_notices.py.
    resident_notices: NoticeSettings = field(default_factory=NoticeSettings)


def load(path: Path | str) -> CloudConfig:
    """Read a cloud config file; raises xiaodian.config.ConfigError naming the file and key."""
    return load_config(path, CloudConfig)
