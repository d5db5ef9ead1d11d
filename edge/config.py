"""The edge agent's configuration: one frozen object, validated when it is loaded."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge.retail.clerks import check_hash
from xiaodian.config import load_config
from xiaodian.i18n import DEFAULT_TZ
from xiaodian.mqtt import MqttSettings
from xiaodian.pki.keys import load_command_public_key
from xiaodian.pki.names import PkiError
from xiaodian.private_files import check_private_file
from xiaodian.wire import ids
from xiaodian.wire.commands import DEFAULT_SKEW_S, key_id_for


@dataclass(frozen=True)
class FridgePort:
    id: str
    port: Path  # e.g. /dev/ttyUSB0; relative paths are relative to the config file
    baudrate: int = 115200

    def __post_init__(self) -> None:
        _check_device_id(self.id)
        _check_baud(self.baudrate)


@dataclass(frozen=True)
class ScannerPort:
    id: str
    port: Path
    baudrate: int = 9600

    def __post_init__(self) -> None:
        _check_device_id(self.id)
        _check_baud(self.baudrate)


@dataclass(frozen=True)
class EdgeSettings:
    store_id: str
    data_dir: Path
    # Alerts, stock, orders and other events go out within this (with wire_format "json"
    # a fridge's door and compressor events too); a live alert is never held back.
    publish_interval_s: float = 1.0
    # A fridge's routine records (readings, door/compressor/defrost events, vitals) are
    # sent every this long; 240 s keeps a store on a small data plan (docs/store-and-forward.md,
    # "Cadence") and its traffic alone keeps a mobile carrier's NAT mapping open.
    readings_interval_s: float = 240.0
    # MQTT keep-alive of the terminal's connection (the [mqtt] keepalive is the cloud's):
    # longer than readings_interval_s, so at steady state no PINGREQ is ever sent, and
    # under the ~5 min a carrier's NAT may keep an idle TCP mapping.
    keepalive_s: int = 270
    max_batch: int = 500
    # "compact": every stream due goes out in one message per store, in the compact
    # format (xiaodian.wire.compact, ~1/20 of JSON's bytes); "json": one version-1 JSON
    # message per stream, for a cloud that predates the compact format.
    wire_format: str = "compact"
    # Acknowledged history kept on the terminal for the kiosk and for diagnosis.
    retain_days: float = 30.0
    # A record the broker took (PUBACK) but the cloud has not confirmed by then is
    # published again; the cloud keeps it once.
    confirm_timeout_s: float = 30.0
    # ...but first after only this long, doubling each round that finds records (see
    # Agent.republish_unconfirmed); a receipt resets it.
    confirm_min_s: float = 3.0
    # Disk the database may use. Over it: confirmed history goes first, then the oldest
    # readings still waiting for the cloud are compacted into 10-minute aggregates. Events,
    # alerts, orders and stock movements are never compacted or dropped.
    disk_budget_mb: float = 512.0
    compact_bucket_s: float = 600.0
    # Readings per fridge handed to the network but not yet confirmed by the cloud. Those
    # can no longer be compacted (the cloud may hold them raw), so while the cloud is silent
    # (broker up, cloud down) only this many go out and the rest stay compactable; fewer
    # when they would take more than a quarter of disk_budget_mb.
    unconfirmed_readings_max: int = 5000
    # Cold-chain rules (docs/alerts.md); absent = the defaults of
    # docs/design.md ("Cold chain") for every fridge.
    rules_file: Path | None = None
    # The terminal's own page (fridges, alerts, buzzer) on loopback; 0 = not served.
    kiosk_port: int = 0
    kiosk_host: str = "127.0.0.1"
    # The counter page hands over orders and books stock without a login: another address
    # than loopback puts that on the shop's network, so it must be asked for explicitly.
    kiosk_allow_remote: bool = False
    # Prometheus metrics on http://127.0.0.1:PORT/metrics (loopback only); 0 = not served.
    metrics_port: int = 0
    # The store's own time zone (IANA name): the terminal's pages show times and the
    # counter counts days (expiry) in it, whatever zone the terminal's OS is set to.
    tz: str = DEFAULT_TZ

    def __post_init__(self) -> None:
        if not ids.is_store_id(self.store_id):
            raise ValueError(f"store_id: {self.store_id!r} must be 1-64 letters, digits, '_' or"
                             " '-', starting with a letter or digit (a certificate name)")
        check_tz(self.tz)
        if not 0.05 <= self.publish_interval_s <= 3600:
            raise ValueError("publish_interval_s: must be between 0.05 and 3600 seconds")
        if not 0.05 <= self.readings_interval_s <= 3600:
            raise ValueError("readings_interval_s: must be between 0.05 and 3600 seconds")
        if not 5 <= self.keepalive_s <= 65535:
            raise ValueError("keepalive_s: must be between 5 and 65535 seconds")
        if self.wire_format not in ("compact", "json"):
            raise ValueError(f"wire_format: {self.wire_format!r} is not 'compact' or 'json'")
        if not 1 <= self.max_batch <= 2000:
            raise ValueError("max_batch: must be between 1 and 2000")
        if self.retain_days <= 0:
            raise ValueError("retain_days: must be positive")
        if self.kiosk_port and not self.kiosk_allow_remote and not is_loopback(self.kiosk_host):
            raise ValueError(
                f"kiosk_host: {self.kiosk_host!r} is not a loopback address; the counter page"
                " needs no login, so serving it on the network takes kiosk_allow_remote = true")
        if not 0 <= self.metrics_port <= 65535:
            raise ValueError("metrics_port: must be between 0 (off) and 65535")
        if self.disk_budget_mb <= 0:
            raise ValueError("disk_budget_mb: must be positive")
        if self.unconfirmed_readings_max < 1:
            raise ValueError("unconfirmed_readings_max: must be at least 1")
        if self.compact_bucket_s < 10:
            raise ValueError("compact_bucket_s: must be at least 10 seconds")
        if not 0.1 <= self.confirm_min_s <= self.confirm_timeout_s:
            raise ValueError("confirm_min_s: must be between 0.1 s and confirm_timeout_s")
        if self.confirm_timeout_s < 1:
            raise ValueError("confirm_timeout_s: must be at least 1 second")

    @property
    def db_path(self) -> Path:
        return self.data_dir / "edge.sqlite3"


@dataclass(frozen=True)
class CommandKey:
    """A command-signing public key this store trusts, pinned under its key id."""

    id: str
    public_key: Path  # PEM from `xiaodian pki command-key` (the .pub file)

    def __post_init__(self) -> None:
        if not ids.is_key_id(self.id):
            raise ValueError(f"id: {self.id!r} is not a key id")
        # Checked at start-up: a wrong or unreadable key would refuse every command later.
        try:
            key = load_command_public_key(self.public_key)
        except (OSError, ValueError, PkiError) as exc:
            raise ValueError(f"public_key: cannot load {self.public_key}: {exc}") from None
        if key_id_for(key) != self.id:
            raise ValueError(f"public_key: {self.public_key} has key id {key_id_for(key)}")


@dataclass(frozen=True)
class CommandSettings:
    """Signed commands from the cloud; without this table the store takes none."""

    keys: tuple[CommandKey, ...]
    replay_db: Path | None = None  # default: DATA_DIR/commands.sqlite3
    skew_s: int = DEFAULT_SKEW_S  # clock difference tolerated on issue and expiry times

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("keys: at least one trusted key is needed")
        ids = [k.id for k in self.keys]
        if len(set(ids)) != len(ids):
            raise ValueError("keys: a key id is listed twice")
        if not 0 <= self.skew_s <= 600:
            raise ValueError("skew_s: must be between 0 and 600 seconds")


@dataclass(frozen=True)
class PickupSettings:
    """The store's pickup-code key (HMAC-SHA256, hex in a file; docs/retail.md).
    Without this table the terminal refuses every pickup code and says why."""

    key_file: Path  # relative paths are relative to the config file
    key_id: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.key_id <= 255:
            raise ValueError(f"key_id: {self.key_id} out of range 0..255")
        # Read once here: a missing or short key should stop the agent at start-up, not
        # refuse the first customer of the day.
        self.key()

    def key(self) -> bytes:
        try:
            # Whoever reads the key can make pickup codes for any order of this store.
            check_private_file(self.key_file, "pickup key")
        except PermissionError as exc:
            raise ValueError(f"key_file: {exc}") from None
        except OSError:
            pass  # a missing or unreadable file: said below, with the reason
        try:
            text = self.key_file.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"key_file: cannot read {self.key_file}: {exc}") from None
        try:
            key = bytes.fromhex(text)
        except ValueError:
            raise ValueError(f"key_file: {self.key_file} is not hex") from None
        if len(key) < 16:
            raise ValueError(f"key_file: {self.key_file} holds {len(key)} bytes (at least 16)")
        return key


@dataclass(frozen=True)
class Clerk:
    """A clerk's own account at the counter (edge/retail/clerks.py): signs receipts off."""

    account: str
    pin_hash: str

    def __post_init__(self) -> None:
        if not (1 <= len(self.account) <= 64 and self.account.isprintable()
                and self.account == self.account.strip()):
            raise ValueError("account: 1 to 64 printable characters")
        check_hash(self.pin_hash)


@dataclass(frozen=True)
class RetailSettings:
    # Stock expiring within this many days is listed for the clerk (first expired first).
    expiry_window_days: int = 2
    # Who may sign a delivery off against its manifest; none: no receipt can be signed.
    clerks: tuple[Clerk, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.expiry_window_days <= 60:
            raise ValueError("expiry_window_days: must be between 0 and 60")
        names = [c.account for c in self.clerks]
        if len(set(names)) != len(names):
            raise ValueError("clerks: an account is listed twice")


@dataclass(frozen=True)
class FirmwareSettings:
    """Firmware-signing public keys this terminal trusts (`xiaodian pki firmware-key`'s .pub
    files); without this table the agent updates no fridge (docs/firmware_update.md)."""

    keys: tuple[Path, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("keys: name at least one firmware-signing public key")
        for path in self.keys:  # checked at start-up, not at the first update
            try:
                load_command_public_key(path)
            except (OSError, ValueError, PkiError) as exc:
                raise ValueError(f"keys: cannot load {path}: {exc}") from None


@dataclass(frozen=True)
class AgentUpdateSettings:
    """The terminal's own software update (docs/contracts.md, "Self-update files"): the
    agent checks a release with `keys` and hands it to the root helper through files."""

    # Agent-signing public keys (`xiaodian pki agent-key`'s .pub); none: the agent takes no
    # update of itself. The root helper checks again with its own copy in /etc/xiaodian.
    keys: tuple[Path, ...] = ()
    # How long the root helper waits for a healthy new agent before it rolls back; the
    # agent waits that long (and a margin) for the helper's verdict after a restart. At
    # most 1800 s: with the agent's margins (edge/self_update.py, 900 s) and a download,
    # a terminal then still reports within the cloud rollout's settle time (3600 s).
    health_window_s: float = 180.0
    update_dir: Path | None = None  # default: DATA_DIR/update (the agent's, for the helper)
    # Written by the root helper only; the agent reads it.
    status_file: Path = Path("/var/lib/xiaodian-update/status.json")
    # Default: the unit's runtime directory, else DATA_DIR (EdgeConfig.health_path).
    health_file: Path | None = None

    def __post_init__(self) -> None:
        if not 30 <= self.health_window_s <= 1800:
            raise ValueError("health_window_s: must be between 30 and 1800 seconds")
        for path in self.keys:  # checked at start-up, not at the first update
            try:
                load_command_public_key(path)
            except (OSError, ValueError, PkiError) as exc:
                raise ValueError(f"keys: cannot load {path}: {exc}") from None


@dataclass(frozen=True)
class EdgeConfig:
    edge: EdgeSettings
    mqtt: MqttSettings
    fridges: tuple[FridgePort, ...] = ()
    scanners: tuple[ScannerPort, ...] = ()
    commands: CommandSettings | None = None
    pickup: PickupSettings | None = None
    retail: RetailSettings = RetailSettings()
    firmware: FirmwareSettings | None = None
    agent_update: AgentUpdateSettings = AgentUpdateSettings()

    def __post_init__(self) -> None:
        names = self.device_ids
        dupes = sorted({i for i in names if names.count(i) > 1})
        if dupes:
            raise ValueError(f"fridges: device id {dupes[0]!r} is used twice")

    @property
    def replay_db_path(self) -> Path:
        if self.commands is not None and self.commands.replay_db is not None:
            return self.commands.replay_db
        return self.edge.data_dir / "commands.sqlite3"

    @property
    def update_dir(self) -> Path:
        return self.agent_update.update_dir or self.edge.data_dir / "update"

    def health_path(self, runtime_dir: str = "") -> Path:
        """Where the agent states its health (edge/health_file.py): `[agent_update]
        health_file` if set; else in `runtime_dir`, $RUNTIME_DIRECTORY, which systemd sets
        for the unit's RuntimeDirectory= (/run/xiaodian: tmpfs, gone when the agent stops);
        else DATA_DIR (`xiaodian edge run` by hand; a unit file from before
        RuntimeDirectory=, whose helper reads only there). The root helper looks in the same
        places (edge/release_switch.py, `_health_files`)."""
        if self.agent_update.health_file is not None:
            return self.agent_update.health_file
        if runtime_dir:  # several directories are joined by ":"; the unit names one
            return Path(runtime_dir.split(":")[0]) / "health.json"
        return self.edge.data_dir / "health.json"

    @property
    def device_ids(self) -> list[str]:
        return [f.id for f in self.fridges] + [s.id for s in self.scanners]


def load(path: Path | str) -> EdgeConfig:
    return load_config(path, EdgeConfig)


def check_tz(tz: str) -> None:
    """An IANA time zone name this machine knows ("Asia/Shanghai"), else ValueError."""
    try:
        if not tz or tz != tz.strip() or tz.startswith(("/", ".")):
            raise ValueError
        ZoneInfo(tz)
    except (ValueError, ZoneInfoNotFoundError):
        raise ValueError(f"tz: {tz!r} is not a time zone name such as 'Asia/Shanghai'") from None


def is_loopback(host: str) -> bool:
    """Whether `host` is only reachable from this machine ("" and 0.0.0.0 are every
    interface; a name other than localhost may resolve anywhere)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# Streams the agent writes itself: a device of the same name would mix its records into
# them (a fridge called "alerts" would publish its doors on the alerts topic, refused there).
RESERVED_DEVICE_IDS = frozenset({"alerts", "health", "ledger", "orders", "counter", "terminal"})


def _check_device_id(value: str) -> None:
    if not ids.is_device_id(value):
        raise ValueError(f"id: {value!r} must be 1-64 letters, digits, '.', '_' or '-',"
                         " starting with a letter or digit")
    if value.lower() in RESERVED_DEVICE_IDS:
        raise ValueError(f"id: {value!r} is the name of one of the agent's own streams"
                         f" ({', '.join(sorted(RESERVED_DEVICE_IDS))}); choose another")


def _check_baud(baudrate: int) -> None:
    if baudrate not in (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600):
        raise ValueError(f"baudrate: {baudrate} is not a standard rate")
