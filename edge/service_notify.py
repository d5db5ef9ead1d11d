"""systemd's service protocol for the agent (`Type=notify`, `WatchdogSec=`), written here.

The protocol is one datagram per message on the AF_UNIX socket named by $NOTIFY_SOCKET
(a path, or `@name` for the abstract namespace), each a few `KEY=value` lines (sd_notify(3)):
  READY=1      start-up is done: systemd starts what waits for the agent (the kiosk);
  WATCHDOG=1   the main loop is alive; missing for WatchdogSec, systemd kills and restarts us;
  STATUS=...   one line `systemctl status` shows;
  STOPPING=1   we are shutting down on purpose.

`ServiceState` decides what to say (pure, time passed in); `Notifier` sends it. Outside
systemd (no $NOTIFY_SOCKET: tests, `make demo`) the notifier does nothing. No library: the
venv has none and the protocol is this small.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)

# A fridge missing at start-up must not keep the agent from ever becoming ready (systemd
# would kill it at TimeoutStartSec and start it again, in a loop, and the kiosk would never
# open): after this long it is ready anyway and STATUS names the ports it still waits for.
READY_GRACE_S = 30.0


class ServiceState:
    """What to tell systemd, from the ports opened so far and the time (monotonic s)."""

    def __init__(self, started: float, watchdog_s: float | None, version: str = "",
                 grace_s: float = READY_GRACE_S) -> None:
        self.started = started
        self.prefix = f"xiaodian {version}: " if version else ""
        self.grace_s = grace_s
        # Fed at half the interval, as sd_watchdog_enabled(3) advises.
        self.feed_every = watchdog_s / 2 if watchdog_s else None
        self.ready = False
        self.next_feed = started
        self.status = ""

    def step(self, now: float, ports_open: Mapping[str, bool]) -> list[str]:
        """The messages due now (each one datagram)."""
        out: list[str] = []
        waiting = sorted(d for d, is_open in ports_open.items() if not is_open)
        status = ("serial ports open: " + ", ".join(sorted(ports_open)) if not waiting
                  else "waiting for serial ports: " + ", ".join(waiting))
        if not ports_open:
            status = "running (no serial devices configured)"
        status = self.prefix + status
        if not self.ready and (not waiting or now - self.started >= self.grace_s):
            self.ready = True
            out.append(f"READY=1\nSTATUS={status}")
            self.status = status
        elif status != self.status and self.ready:
            out.append(f"STATUS={status}")
            self.status = status
        if self.feed_every is not None and now >= self.next_feed:
            out.append("WATCHDOG=1")
            self.next_feed = now + self.feed_every
        return out


def watchdog_seconds(env: Mapping[str, str], pid: int) -> float | None:
    """The watchdog interval systemd set for this process, or None (sd_watchdog_enabled)."""
    usec = env.get("WATCHDOG_USEC", "")
    owner = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and owner != str(pid):  # meant for another process (a parent shell)
        return None
    return int(usec) / 1_000_000


def socket_address(value: str) -> str | None:
    """$NOTIFY_SOCKET as an address for socket.sendto; None when unusable."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # vsock addresses (VMs) are not for a store terminal


class Notifier:
    """Sends sd_notify messages; does nothing when systemd did not ask for them."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = socket_address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_s = watchdog_seconds(env, os.getpid()) if self.address else None
        self.sock: socket.socket | None = None
        if self.address is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self.sock is not None

    def send(self, message: str) -> bool:
        if self.sock is None or self.address is None:
            return False
        try:
            self.sock.sendto(message.encode("utf-8"), self.address)
            return True
        except OSError as exc:  # systemd restarting, socket gone: never stops the agent
            log.warning("sd_notify: could not send %r: %s", message.split("\n")[0], exc)
            return False

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class ServiceNotify:
    """The agent's one object for all of it: `step` from the main loop, `stopping` at exit."""

    def __init__(self, started: float, version: str,
                 env: Mapping[str, str] | None = None) -> None:
        self.notifier = Notifier(env)
        self.state = ServiceState(started, self.notifier.watchdog_s, version)

    def step(self, now: float, ports_open: Mapping[str, bool]) -> None:
        if not self.notifier.enabled:
            return
        for message in self.state.step(now, ports_open):
            self.notifier.send(message)

    def stopping(self) -> None:
        self.notifier.send("STOPPING=1")
        self.notifier.close()
