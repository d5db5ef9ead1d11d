"""A private Mosquitto broker: config, ACL and process control, from the PKI directory.

The broker listens with TLS only and requires a client certificate (checked against the CA's
CRL) whose CN becomes the MQTT username *and* the client id, so no client can take over
another's session; the ACL confines each store to `xd/v1/<its id>/...`, and a subscription
filter (the dynamic-security plugin, see `subscribe_rules`) keeps stores out of other trees
and out of the cloud's shared groups.
`Broker` runs its own `mosquitto` on a free loopback port for the demo and the tests and
never touches a system broker; `write_broker_config` also serves a deployed broker
(`xiaodian broker config`).
"""

from __future__ import annotations

import glob
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from xiaodian.pki import list_certificates
from xiaodian.pki.ca import DevPki
from xiaodian.pki.names import check_name

log = logging.getLogger(__name__)

CONF_NAME = "mosquitto.conf"
ACL_NAME = "acl"
SUBSCRIBE_RULES_NAME = "subscribe-rules.json"
LOG_NAME = "mosquitto.log"
DATA_DIR = "data"
# Debian installs the broker in /usr/sbin, which is not on an ordinary user's PATH.
EXTRA_BIN_DIRS: tuple[str, ...] = ("/usr/sbin", "/usr/local/sbin")
# Where Debian/Ubuntu and a source install put the dynamic-security plugin.
DYNSEC_GLOBS: tuple[str, ...] = (
    "/usr/lib/*/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/*mosquitto_dynamic_security.so",
)

# What a store may do, with %u = its certificate CN = store id (see MQTT.md).
_STORE_PATTERNS = (
    "pattern write xd/v1/%u/telemetry",
    "pattern write xd/v1/%u/events",
    "pattern write xd/v1/%u/alerts",
    "pattern write xd/v1/%u/state",
    "pattern write xd/v1/%u/cmd/res",
    "pattern read xd/v1/%u/orders",
    "pattern read xd/v1/%u/catalogue",
    "pattern read xd/v1/%u/cmd/req",
    "pattern read xd/v1/%u/receipts",
)
# What a cloud-side service may do: read everything stores send, send orders and commands.
_SERVICE_TOPICS = (
    "topic read xd/v1/#",
    "topic write xd/v1/+/orders",
    "topic write xd/v1/+/catalogue",
    "topic write xd/v1/+/cmd/req",
    "topic write xd/v1/+/receipts",
)


# Topic filters a store may SUBSCRIBE to, beyond which it gets nothing (see subscribe_rules).
_STORE_SUBSCRIPTIONS = ("orders", "catalogue", "cmd/req", "receipts")


class BrokerError(RuntimeError):
    """The broker could not be found, configured or started; the message says why."""


def find_dynsec_plugin() -> str:
    """Path of Mosquitto's dynamic-security plugin, or a BrokerError naming the package."""
    for pattern in DYNSEC_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    raise BrokerError(
        "mosquitto_dynamic_security.so not found (looked for "
        + ", ".join(DYNSEC_GLOBS)
        + "): it comes with the Debian/Ubuntu package 'mosquitto' 2.0 or later"
    )


def find_mosquitto() -> str:
    """Path of the `mosquitto` binary, or a BrokerError naming the package to install."""
    found = shutil.which("mosquitto") or shutil.which(
        "mosquitto", path=os.pathsep.join(EXTRA_BIN_DIRS)
    )
    if found is None:
        raise BrokerError(
            "mosquitto not found on PATH or in "
            + ", ".join(EXTRA_BIN_DIRS)
            + ": install the Debian/Ubuntu package 'mosquitto' "
            "(sudo apt-get install -y mosquitto mosquitto-clients)"
        )
    return found


def acl_text(services: Sequence[str]) -> str:
    """The Mosquitto ACL file: stores by pattern, then one block per cloud-side service.

    Every service gets the same rights as `cloud-gateway` (read all store traffic, write
    orders and commands); names not listed are stores and get only the patterns.
    """
    lines = [
        "# Written by devstack.broker. Usernames are certificate CNs (= client ids).",
        "# Stores: confined to their own subtree. This file never checks a SUBSCRIBE",
        "# (Mosquitto 2.0), only each delivery; subscribe-rules.json decides those.",
        *_STORE_PATTERNS,
    ]
    for name in services:
        check_name(name)
        lines += ["", f"user {name}", *_SERVICE_TOPICS]
    return "\n".join(lines) + "\n"


def subscribe_rules(stores: Sequence[str], services: Sequence[str]) -> dict[str, object]:
    """The dynamic-security plugin's configuration: who may SUBSCRIBE to what.

    Mosquitto 2.0's ACL file never checks a SUBSCRIBE (only each delivery), so without this
    a store could join the cloud's shared group `$share/ingest/xd/v1/+/telemetry`: the broker
    would hand it its turn of every store's messages and then drop them on the read ACL. The
    plugin runs before the ACL file and decides every subscription of the names it lists:
    a store only its own downlink topics, a service `xd/v1/...` and shared groups on it.
    Publishing and delivery it leaves to the ACL file (no publish rule, default deny ->
    the plugin defers). A name it does not list (a store certified after this file was
    written) falls through to the ACL file, which allows the SUBSCRIBE: regenerate and
    restart the broker after enrolling a store.
    """

    def rule(kind: str, topic: str, allow: bool = True, priority: int = 0) -> dict[str, object]:
        return {"acltype": kind, "topic": topic, "allow": allow, "priority": priority}

    roles: list[dict[str, object]] = [{
        "rolename": "service",
        "acls": [rule("subscribePattern", "xd/v1/#"), rule("subscribePattern", "$share/+/xd/v1/#")],
    }]
    clients: list[dict[str, object]] = []
    for name in services:
        clients.append({"username": check_name(name), "roles": [{"rolename": "service"}]})
    for name in stores:
        check_name(name)
        acls = [rule("subscribeLiteral", f"xd/v1/{name}/{leaf}") for leaf in _STORE_SUBSCRIPTIONS]
        # Checked last: an explicit refusal, since "no rule" would defer to the ACL file.
        acls.append(rule("subscribePattern", "#", allow=False, priority=-1))
        roles.append({"rolename": f"store-{name}", "acls": acls})
        clients.append({"username": name, "roles": [{"rolename": f"store-{name}"}]})
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": clients,
        "groups": [],
        "roles": roles,
    }


def _stores_of(pki: DevPki) -> list[str]:
    """Every store the CA ever certified (also those enrolled by CSR, whose key is elsewhere)."""
    names = list(pki.stores)
    try:
        issued = list_certificates(pki.ca.parent)
    except (OSError, ValueError):  # a PKI without an index: only what DevPki names
        return names
    for item in issued:
        if item.kind == "store" and item.name not in names:
            names.append(item.name)
    return names


def write_broker_config(
    directory: Path,
    pki: DevPki,
    port: int,
    *,
    persistence: bool = True,
    bind: str = "127.0.0.1",
    dev_plaintext_port: int | None = None,
) -> Path:
    """Write `mosquitto.conf`, its ACL and its subscribe rules into `directory`; return the
    config's path.

    The broker's log, persistence database, ACL and subscribe rules (for every store and
    service in the CA's index: regenerate after enrolling one) all live in `directory`. The TLS
    listener binds `bind` (loopback by default; a store-facing broker needs its LAN or
    public address). When the PKI has a CRL, the broker checks client certificates
    against it; Mosquitto 2.0.11 reads the CRL only at start-up, so a revocation takes
    effect at the next restart (see docs/security.md).

    `dev_plaintext_port` adds a plaintext listener on 127.0.0.1 for local development only:
    there any local process can claim any identity, so it is never on by default.
    """
    for option, number in (("port", port), ("dev_plaintext_port", dev_plaintext_port)):
        if number is not None and not 1 <= number <= 65535:
            raise ValueError(f"{option}: must be between 1 and 65535")
    if dev_plaintext_port == port:
        raise ValueError("dev_plaintext_port: must differ from port")
    try:
        ipaddress.ip_address(bind)
    except ValueError:
        raise ValueError(f"bind: {bind!r} is not an IP address") from None
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir = directory / DATA_DIR
    data_dir.mkdir(mode=0o700, exist_ok=True)
    acl_path = directory / ACL_NAME
    acl_path.write_text(acl_text(pki.services), encoding="utf-8")
    rules_path = directory / SUBSCRIBE_RULES_NAME
    rules = subscribe_rules(_stores_of(pki), pki.services)
    rules_path.write_text(json.dumps(rules, indent=1) + "\n", encoding="utf-8")
    plugin = find_dynsec_plugin()
    paths = {
        "acl_file": acl_path,
        "plugin": Path(plugin),
        "plugin_opt_config_file": rules_path,
        "persistence_location": data_dir,
        "log_dest file": directory / LOG_NAME,
        "cafile": pki.ca,
        "certfile": pki.server_cert,
        "keyfile": pki.server_key,
    }
    if pki.crl is not None:
        paths["crlfile"] = pki.crl
    for key, value in paths.items():
        # Mosquitto splits option values at whitespace; refuse rather than misconfigure.
        if any(c.isspace() for c in str(value)):
            raise ValueError(f"{key}: path must not contain whitespace: {value}")

    lines = [
        "# Written by devstack.broker.write_broker_config; regenerated at every start.",
    ]
    if os.geteuid() == 0:
        # Started as root, Mosquitto 2.0 switches to the `mosquitto` user (the default of
        # `user`) before it opens the log, certificates and ACL, and that user cannot read
        # our 0600 keys or enter our 0700 directories. `user root` keeps it as root.
        # Not started as root, it never changes user, so the line is left out.
        lines.append("user root")
    lines += [
        "per_listener_settings false",
        # The dev plaintext listener needs self-declared usernames; TLS clients always get
        # their certificate's CN whatever this says (require_certificate).
        f"allow_anonymous {'true' if dev_plaintext_port is not None else 'false'}",
        f"acl_file {acl_path}",
        # Asked first, it decides every SUBSCRIBE of a listed name (subscribe_rules).
        f"plugin {plugin}",
        f"plugin_opt_config_file {rules_path}",
        "",
        f"persistence {'true' if persistence else 'false'}",
        f"persistence_location {data_dir}",
        # The default (1800 s) would lose up to half an hour of queued orders if the broker
        # crashed; SIGTERM always saves, this bounds the loss on SIGKILL or power failure.
        "autosave_interval 60",
        # Per-client queue of QoS 1 messages for an offline persistent session; the excess
        # is dropped silently. The default 1000 is too tight: a store offline over a long
        # weekend (3 days) at a busy 300 orders and commands a day needs ~900, and a cloud
        # worker restarting while 50 stores each send 3 messages a minute needs ~150 a
        # minute. A cloud worker is the other case: it announces a Receive Maximum, so a
        # burst of store backlogs after a shared outage queues here (bench.backlog_drain saw
        # 34,560 one-reading messages for one worker); 100000 at ~1 KB is 100 MB at worst.
        # Past it Mosquitto drops silently; the edge then republishes whatever the cloud
        # never confirmed (cloud receipts), so this bounds memory, not correctness.
        "max_queued_messages 100000",
        # Refuse (and disconnect) any packet over 512 KiB: twice the largest payload the
        # cloud accepts (payloads.MAX_PAYLOAD_BYTES), so nothing legitimate comes near it,
        # while a hostile client cannot make the broker buffer 256 MB per message.
        "max_packet_size 524288",
        "",
        f"log_dest file {directory / LOG_NAME}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        "log_timestamp true",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S%z",
        "",
        # TLS only, a client certificate required, its CN the username and the client id.
        f"listener {port} {bind}",
        f"cafile {pki.ca}",
        f"certfile {pki.server_cert}",
        f"keyfile {pki.server_key}",
        "tls_version tlsv1.2",  # the minimum; TLS 1.3 is accepted
        "require_certificate true",
        "use_identity_as_username true",
        # The client id a client sends is replaced by its CN: without this, any certificate
        # could connect as `store-001` (or a cloud worker), cut the real client off and take
        # over or wipe its persistent session. Each connection needs its own certificate.
        "use_username_as_clientid true",
    ]
    if pki.crl is not None:
        # Read once at start-up: restart the broker after `xiaodian pki revoke`.
        lines.append(f"crlfile {pki.crl}")
    if dev_plaintext_port is not None:
        lines += [
            "",
            "# INSECURE: plaintext listener for local development only (--dev-plaintext-local).",
            "# No TLS and no client certificate: any process on this machine can connect",
            "# under any username and gets that user's ACL rights. Never use in a shop.",
            f"listener {dev_plaintext_port} 127.0.0.1",
        ]
    conf_path = directory / CONF_NAME
    conf_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return conf_path


class Broker:
    """A Mosquitto process on a free loopback port, configured by `write_broker_config`.

    Use as a context manager. `restart()` stops and starts it on the same port, keeping its
    persistence database, for tests of clients surviving a broker outage.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        directory: Path,
        pki: DevPki,
        *,
        persistence: bool = True,
        start_timeout: float = 10.0,
        port_attempts: int = 5,
    ) -> None:
        names = pki.services + pki.stores
        if not names:
            raise ValueError("pki: needs at least one client certificate to probe the broker")
        self.directory = directory
        self.pki = pki
        self.persistence = persistence
        self.start_timeout = start_timeout
        self.port_attempts = port_attempts
        self.conf_path = directory / CONF_NAME
        self.log_path = directory / LOG_NAME
        self._probe_tls = pki.client(names[0])
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise BrokerError("broker not started yet")
        return self._port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start on a new free port (first start) or on the previous port (restart)."""
        if self._proc is not None:
            raise BrokerError(f"broker already running (pid {self._proc.pid})")
        binary = find_mosquitto()
        if self._port is not None:
            try:
                self._start_on(binary, self._port)
            except _PortInUse:
                raise BrokerError(
                    f"cannot restart: port {self._port} was taken while the broker was stopped"
                ) from None
            return
        # A port found free can be taken before mosquitto binds it: try a few.
        for attempt in range(1, self.port_attempts + 1):
            port = _free_port(self.host)
            try:
                self._start_on(binary, port)
            except _PortInUse:
                log.info("port %d taken before mosquitto bound it (attempt %d)", port, attempt)
                continue
            self._port = port
            return
        raise BrokerError(f"no free port found after {self.port_attempts} attempts")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (Mosquitto then saves its database) and wait; SIGKILL after `timeout`."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("mosquitto (pid %d) ignored SIGTERM; killing it", proc.pid)
                proc.kill()
                proc.wait()

    def reload(self) -> None:
        """SIGHUP: Mosquitto 2.0.11 then re-reads its certificates and CRL (and the ACL).

        Asynchronous: the broker applies it in its main loop shortly after. Connections
        already open are kept, even those of a certificate just revoked; `restart()` ends them.
        """
        if self._proc is None or self._proc.poll() is not None:
            raise BrokerError("broker not running")
        self._proc.send_signal(signal.SIGHUP)

    def restart(self) -> None:
        """Stop and start again on the same port, so clients reconnect to the same address."""
        self.stop()
        self.start()

    def _start_on(self, binary: str, port: int) -> None:
        conf = write_broker_config(self.directory, self.pki, port, persistence=self.persistence)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        # Mosquitto prints start-up errors (before its log file is open) to stderr: send them
        # to the same file so one tail shows everything.
        with self.log_path.open("ab") as out:
            proc = subprocess.Popen(
                [binary, "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                process_group=0,  # a Ctrl-C meant for pytest must not kill it mid-test
            )
        try:
            self._wait_ready(proc, port, offset)
        except BaseException:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise
        self._proc = proc
        log.info("mosquitto running (pid %d) on %s:%d", proc.pid, self.host, port)

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int, offset: int) -> None:
        deadline = time.monotonic() + self.start_timeout
        last_error = "no attempt made"
        while True:
            if proc.poll() is not None:
                tail = self._log_tail(offset)
                if "Address already in use" in tail:
                    raise _PortInUse(port)
                raise BrokerError(
                    f"mosquitto exited with code {proc.returncode} at start-up "
                    f"(config {self.conf_path}); log:\n{tail}"
                )
            try:
                _probe(
                    self.host, port, self._probe_tls.ca, self._probe_tls.cert, self._probe_tls.key
                )
                return
            except _Refused as exc:
                raise BrokerError(
                    f"mosquitto refused the probe client: {exc}; log:\n{self._log_tail(offset)}"
                ) from None
            except OSError as exc:  # ssl.SSLError and socket timeouts are OSErrors too
                last_error = f"{exc.__class__.__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"mosquitto did not accept a TLS connection on {self.host}:{port} within "
                    f"{self.start_timeout:g} s (last error: {last_error}); "
                    f"log:\n{self._log_tail(offset)}"
                )
            time.sleep(0.05)

    def _log_tail(self, offset: int, lines: int = 20) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                text = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-lines:]) or "(log empty)"


class _PortInUse(Exception):
    pass


class _Refused(Exception):
    pass


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _probe(host: str, port: int, ca: Path, cert: Path, key: Path) -> None:
    """Complete a TLS handshake with a client certificate and get a CONNACK, then close.

    A CONNACK proves more than an open port: TLS, client-certificate checking and the
    broker's main loop all work. The CONNECT names protocol level 3 under "MQTT", which the
    broker refuses (return code 1) before it authenticates: an accepted CONNECT would take
    the certificate's CN as its client id (use_username_as_clientid) and so cut off, or with
    a clean session wipe, the real client of that name, e.g. a worker whose persistent
    session the broker just restored. Costs one "Invalid protocol version" log line.
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    client_id = f"xiaodian-probe-{os.getpid()}".encode()
    # Protocol level 3, clean session, keepalive 5 s; remaining length fits in one byte.
    body = b"\x00\x04MQTT\x03\x02\x00\x05" + len(client_id).to_bytes(2, "big") + client_id
    with (
        socket.create_connection((host, port), timeout=2.0) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(bytes([0x10, len(body)]) + body)
        connack = _read_exactly(tls, 4)
        if connack[:2] != b"\x20\x02":
            raise ConnectionError(f"not a CONNACK: {connack!r}")
        if connack[3] != 1:  # 1: unacceptable protocol version, as asked for
            raise _Refused(f"CONNACK return code {connack[3]}")


def _read_exactly(sock: ssl.SSLSocket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed before CONNACK")
        data += chunk
    return data
