"""Configuration of a cloud gateway worker: one validated, frozen object built at start-up.

Example (`cloud.toml`; relative paths are relative to the file):

    [cloud]
    db = "cloud.sqlite"
    worker_id = "cloud-1"
    http_host = "127.0.0.1"
    http_port = 8080          # 0 picks a free port; the URL is printed at start
    shared_group = "ingest"

    [mqtt]
    host = "localhost"
    port = 8883

    [mqtt.tls]
    ca = "pki/ca.pem"
    cert = "pki/cloud-gateway.pem"
    key = "pki/cloud-gateway.key"
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xiaodian.config import load_config
from xiaodian.mqtt import MqttSettings
from xiaodian.payloads import ID_PATTERN

from .clock import ClockPolicy


@dataclass(frozen=True)
class CloudSettings:
    db: Path
    # MQTT client id: each worker needs its own, stable across restarts, so that a restarted
    # worker resumes its session and receives what the broker queued for it meanwhile.
    worker_id: str
    http_host: str = "127.0.0.1"
    http_port: int = 0
    shared_group: str = "ingest"
    # Messages waiting for the database thread; beyond it messages are left unacknowledged.
    queue_size: int = 1000
    # How long the broker keeps this worker's session (and queues for it) while it is away.
    session_expiry_s: int = 7 * 24 * 3600
    # Terminal clock estimation (clock.py): the sliding window of the minimum, and how far
    # off a synchronised terminal may be before its wall is corrected too.
    clock_window_s: float = 600.0
    clock_threshold_s: float = 2.0

    def __post_init__(self) -> None:
        if not ID_PATTERN.match(self.worker_id):
            raise ValueError("worker_id: must be 1-64 characters of A-Z a-z 0-9 _ . -")
        if not self.http_host:
            raise ValueError("http_host: must not be empty")
        if not 0 <= self.http_port <= 65535:
            raise ValueError("http_port: must be between 0 and 65535 (0 = pick a free port)")
        if not ID_PATTERN.match(self.shared_group):
            raise ValueError("shared_group: must be 1-64 characters of A-Z a-z 0-9 _ . -")
        if not 1 <= self.queue_size <= 1_000_000:
            raise ValueError("queue_size: must be between 1 and 1000000")
        # MQTT 5 carries the interval as a u32; 0 would make the broker forget the session.
        if not 60 <= self.session_expiry_s <= 0xFFFFFFFF:
            raise ValueError("session_expiry_s: must be between 60 and 4294967295")
        if not 1.0 <= self.clock_window_s <= 86400.0:
            raise ValueError("clock_window_s: must be between 1 and 86400 seconds")
        if not 0.0 <= self.clock_threshold_s <= 3600.0:
            raise ValueError("clock_threshold_s: must be between 0 and 3600 seconds")

    @property
    def clock_policy(self) -> ClockPolicy:
        return ClockPolicy(window_s=self.clock_window_s, threshold_s=self.clock_threshold_s)


@dataclass(frozen=True)
class CloudConfig:
    cloud: CloudSettings
    mqtt: MqttSettings


def load(path: Path | str) -> CloudConfig:
    """Read a cloud config file; raises xiaodian.config.ConfigError naming the file and key."""
    return load_config(path, CloudConfig)
