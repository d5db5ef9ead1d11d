"""A private Mosquitto broker: config, ACL and process control, from the PKI directory.

The broker listens with TLS only and requires a client certificate (checked against the CA's
CRL) whose CN becomes the MQTT username *and* the client id, so no client can take over
another's session; the ACL confines each store to `xd/v1/<its id>/...`, and a subscription
filter (the dynamic-security plugin, see `subscribe_rules`) keeps stores out of other trees
and out of the cloud's shared groups.
The files (config, ACL, subscribe rules) are written by `devstack.broker_config`, whose
names are re-exported here; this module finds the binary and runs the process.
`Broker` runs its own `mosquitto` on a free loopback port for the demo and the tests and
never touches a system broker; `write_broker_config` also serves a deployed broker
(`xiaodian broker config`).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from types import TracebackType

from devstack.broker_config import (
    ACL_NAME,
    CONF_NAME,
    DATA_DIR,
    DYNSEC_GLOBS,
    LOG_NAME,
    SUBSCRIBE_RULES_NAME,
    BrokerError,
    acl_text,
    find_dynsec_plugin,
    subscribe_rules,
    write_broker_config,
)
from xiaodian.pki.ca import DevPki

# Re-exported: callers import these from devstack.broker.
__all__ = [
    "ACL_NAME", "CONF_NAME", "DATA_DIR", "DYNSEC_GLOBS", "EXTRA_BIN_DIRS", "LOG_NAME",
    "SUBSCRIBE_RULES_NAME", "Broker", "BrokerError", "acl_text", "find_dynsec_plugin",
    "find_mosquitto", "subscribe_rules", "write_broker_config",
]

log = logging.getLogger(__name__)

# Debian installs the broker in /usr/sbin, which is not on an ordinary user's PATH.
EXTRA_BIN_DIRS: tuple[str, ...] = ("/usr/sbin", "/usr/local/sbin")


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
