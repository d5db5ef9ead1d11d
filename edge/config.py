"""The edge agent's configuration: one frozen object, validated when it is loaded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xiaodian.config import load_config
from xiaodian.mqtt import MqttSettings
from xiaodian.payloads import ID_PATTERN


@dataclass(frozen=True)
class FridgePort:
    id: str
    port: Path  # e.g. /dev/ttyUSB0; relative paths are relative to the config file
    baudrate: int = 115200

    def __post_init__(self) -> None:
        _check_id("id", self.id)
        _check_baud(self.baudrate)


@dataclass(frozen=True)
class ScannerPort:
    id: str
    port: Path
    baudrate: int = 9600

    def __post_init__(self) -> None:
        _check_id("id", self.id)
        _check_baud(self.baudrate)


@dataclass(frozen=True)
class EdgeSettings:
    store_id: str
    data_dir: Path
    # One message per fridge per interval: batching is what keeps the 4G bill small.
    publish_interval_s: float = 1.0
    max_batch: int = 500
    # Acknowledged history kept on the terminal for the kiosk and for diagnosis.
    retain_days: float = 30.0
    # A record the broker took (PUBACK) but the cloud has not confirmed by then is
    # published again; the cloud keeps it once.
    confirm_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        _check_id("store_id", self.store_id)
        if not 0.05 <= self.publish_interval_s <= 3600:
            raise ValueError("publish_interval_s: must be between 0.05 and 3600 seconds")
        if not 1 <= self.max_batch <= 2000:
            raise ValueError("max_batch: must be between 1 and 2000")
        if self.retain_days <= 0:
            raise ValueError("retain_days: must be positive")
        if self.confirm_timeout_s < 1:
            raise ValueError("confirm_timeout_s: must be at least 1 second")

    @property
    def db_path(self) -> Path:
        return self.data_dir / "edge.sqlite3"


@dataclass(frozen=True)
class EdgeConfig:
    edge: EdgeSettings
    mqtt: MqttSettings
    fridges: tuple[FridgePort, ...] = ()
    scanners: tuple[ScannerPort, ...] = ()

    def __post_init__(self) -> None:
        ids = [f.id for f in self.fridges] + [s.id for s in self.scanners]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"fridges: device id {dupes[0]!r} is used twice")

    @property
    def device_ids(self) -> list[str]:
        return [f.id for f in self.fridges] + [s.id for s in self.scanners]


def load(path: Path | str) -> EdgeConfig:
    return load_config(path, EdgeConfig)


def _check_id(field: str, value: str) -> None:
    if not ID_PATTERN.match(value):
        raise ValueError(f"{field}: {value!r} must be 1-64 letters, digits, '.', '_' or '-'")


def _check_baud(baudrate: int) -> None:
    if baudrate not in (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600):
        raise ValueError(f"baudrate: {baudrate} is not a standard rate")
