"""The device end of a pseudo-terminal, standing in for a USB-serial adapter.

How Linux ptys behave, which this module relies on (checked on 6.x kernels):

- After `openpty()` we close our own slave fd. With no process holding the slave open, poll
  on the master reports POLLHUP and `read(master)` fails with EIO. When a host opens the slave
  path, POLLHUP clears; when its last fd closes, POLLHUP returns. So POLLHUP on the master is
  "no host has the port open", and the slave can be reopened any number of times while the
  master stays open (the edge agent closes and reopens it when it restarts).
- Termios settings belong to the slave tty and survive close/reopen, so raw mode set once
  stays set.
- Bytes written to the master while no host has the slave open are NOT discarded: they wait
  in the slave's input queue and the next opener reads them (tcflush on the master does not
  clear that queue). So we never write while hung up, and on each hang-up we open the slave
  briefly and TCIFLUSH it, discarding what the old host left unread; otherwise the new host
  would read stale frames that ground truth attributes to the old session.
- Bytes a host wrote just before closing are still readable from the master (POLLIN with
  POLLHUP), so we read before acting on a hang-up.
- Closing the master while a host holds the slave (a pulled cable, `unplug()`) makes the
  host's reads and writes fail with EIO, as a vanished USB-serial adapter does; the host
  must then open the link again, which `replug()` points at a fresh pty.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import select
import struct
import termios
import time
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_READ_CHUNK = 4096


@dataclass
class _Pending:
    data: bytes
    sent: int
    on_written: Callable[[], None] | None


@dataclass
class PortStats:
    bytes_written: int = 0
    bytes_read: int = 0
    frames_written: int = 0
    tx_overflow_drops: int = 0  # whole writes refused because the tx buffer was full
    discarded_on_hangup: int = 0  # queued writes thrown away when the host went
    hangups: int = 0
    unplugs: int = 0  # cable pulls (fault injection)


class PtyPort:
    """One pty pair with `link_path` → slave, and a bounded device-side transmit buffer.

    Not thread-safe; meant for a single poll loop. `service()` reads host bytes, notices
    hang-ups and pushes queued bytes; it never blocks.
    """

    def __init__(self, link_path: Path, tx_limit: int = 4096, baud: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if tx_limit < 1:
            raise ValueError("tx_limit: must be >= 1")
        self.link_path = link_path
        # baud > 0: each direction carries at most baud / 10 bytes a second (8N1), as a
        # UART does; host bytes wait in rx_backlog (the host's own transmit buffer).
        self.rx_line = LineRate(baud, clock)
        self.tx_line = LineRate(baud, clock)
        self.rx_backlog = bytearray()
        self.tx_limit = tx_limit
        self.stats = PortStats()
        self._queue: deque[_Pending] = deque()
        self._queued_bytes = 0
        # The cable from the host: its bytes pass through this on the way (line noise).
        self.rx_filter: Callable[[bytes], bytes] | None = None
        self.master_fd: int | None = None
        self.slave_name = ""
        self.host_present = False
        self._poll = select.poll()
        self._open()

    def _open(self) -> None:
        master, slave = os.openpty()
        try:
            self.slave_name = os.ttyname(slave)
            tty.setraw(slave)  # no echo, no line editing, no CR/LF translation
        finally:
            # Only the host may hold the slave open, or POLLHUP would never be reported.
            os.close(slave)
        os.set_blocking(master, False)
        self.master_fd = master
        self._poll = select.poll()
        self._poll.register(master, select.POLLIN)
        self.host_present = False
        try:
            _replace_symlink(self.link_path, self.slave_name)
        except BaseException:
            self.close()
            raise

    @property
    def plugged(self) -> bool:
        return self.master_fd is not None

    def unplug(self) -> bool:
        """The cable is pulled: the pty goes away at once (no drain: bytes in flight are lost)
        and so does the link, as a USB-serial adapter's device node does. Returns whether a
        host had the port open."""
        was_present = self.host_present
        if self.master_fd is not None:
            self.stats.unplugs += 1
            self.stats.discarded_on_hangup += len(self._queue)
        self._release()
        return was_present

    def replug(self) -> None:
        """A new pty at the same link path (most likely another /dev/pts/N): the host must
        open the port again."""
        if self.master_fd is None:
            self._open()

    @property
    def fileno(self) -> int:
        if self.master_fd is None:
            raise ValueError("port is closed")
        return self.master_fd

    @property
    def wants_write(self) -> bool:
        return bool(self._queue)

    @property
    def line_busy(self) -> bool:
        """A throttled line still has bytes to carry in either direction."""
        return bool(self.rx_line.baud and (self.rx_backlog or self._queue))

    def service(self) -> tuple[bytes, bool]:
        """Read what the host sent and flush queued output.

        Returns (host bytes, hung_up) where hung_up is True when the host closed the port since
        the previous call (queued output is then discarded, never delivered to the next host).
        """
        data, hung_up = self._read_and_check()
        if self.rx_line.baud:
            self.rx_backlog += data
            n = self.rx_line.take(len(self.rx_backlog))
            data = bytes(self.rx_backlog[:n])
            del self.rx_backlog[:n]
            if hung_up:
                self.rx_backlog.clear()  # what the old host sent never arrives
        if data and self.rx_filter is not None:
            data = self.rx_filter(data)
        if not hung_up and self.host_present:
            self._flush()
        return data, hung_up

    def send(self, data: bytes, on_written: Callable[[], None] | None = None) -> bool:
        """Queue `data` for the host; `on_written` runs once its last byte is in the pty.

        Refuses (False, counted) when no host is present or the tx buffer cannot take it all:
        a device's UART driver drops whole frames rather than sending half of one.
        """
        if self.master_fd is None or not self.host_present:
            return False
        if self._queued_bytes + len(data) > self.tx_limit:
            self.stats.tx_overflow_drops += 1
            return False
        self._queue.append(_Pending(data, 0, on_written))
        self._queued_bytes += len(data)
        self._flush()
        return True

    def close(self, drain_timeout_s: float = 1.0) -> None:
        """Close the master (the host sees a hang-up) and remove our symlink.

        Like a UART finishing its last byte before power-off, wait (bounded) for the host to
        read what is already written: closing a pty master discards the slave's unread input,
        and those frames are already in the ground truth as emitted.
        """
        if self.master_fd is not None and self.host_present:
            # The kernel moves written bytes to the slave's input queue asynchronously, so
            # FIONREAD can read 0 for a moment after a write: require two empty looks.
            deadline = time.monotonic() + drain_timeout_s
            empty_looks = 0
            while empty_looks < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
                empty_looks = empty_looks + 1 if self._host_unread() == 0 else 0
        self._release()

    def _release(self) -> None:
        if self.master_fd is not None:
            with contextlib.suppress(KeyError):
                self._poll.unregister(self.master_fd)
            os.close(self.master_fd)
            self.master_fd = None
        self._queue.clear()
        self._queued_bytes = 0
        self.host_present = False
        # Leave the link alone if a newer simulator has already taken the name over.
        with contextlib.suppress(OSError):
            if os.readlink(self.link_path) == self.slave_name:
                self.link_path.unlink()

    # -- internals ---------------------------------------------------------------------------

    def _read_and_check(self) -> tuple[bytes, bool]:
        if self.master_fd is None:
            return b"", False
        chunks: list[bytes] = []
        hup = False
        while True:
            try:
                chunk = os.read(self.master_fd, _READ_CHUNK)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                hup = True  # EIO: no slave open (the host closed the port)
                break
            if not chunk:
                break
            chunks.append(chunk)
        if not hup:
            revents = self._poll.poll(0)
            hup = any(ev & select.POLLHUP for _, ev in revents)
        data = b"".join(chunks)
        self.stats.bytes_read += len(data)
        if hup:
            was_present = self.host_present
            if was_present:
                self._on_hangup()
            return data, was_present
        self.host_present = True
        return data, False

    def _on_hangup(self) -> None:
        self.host_present = False
        self.stats.hangups += 1
        self.stats.discarded_on_hangup += len(self._queue)
        self._queue.clear()
        self._queued_bytes = 0
        self._discard_unread()

    def _host_unread(self) -> int:
        """Bytes written to the host that it has not read yet (FIONREAD on the slave)."""
        try:
            fd = os.open(self.slave_name, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return 0
        try:
            buf = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
            return int(struct.unpack("i", buf)[0])
        except OSError:
            return 0
        finally:
            os.close(fd)

    def _discard_unread(self) -> None:
        # Frames the old host did not read would otherwise reach the next one (see module doc).
        try:
            fd = os.open(self.slave_name, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as exc:
            log.warning(
                "%s: cannot open %s to discard stale output: %s",
                self.link_path.name,
                self.slave_name,
                exc,
            )
            return
        try:
            termios.tcflush(fd, termios.TCIFLUSH)
        finally:
            os.close(fd)

    def _flush(self) -> None:
        assert self.master_fd is not None
        # Re-check just before writing: bytes written after the host left would be counted
        # as emitted yet never read. `service()` reports the hang-up on its next call.
        if self._queue and any(ev & select.POLLHUP for _, ev in self._poll.poll(0)):
            return
        while self._queue:
            head = self._queue[0]
            room = len(head.data) - head.sent
            if self.tx_line.baud:
                room = self.tx_line.take(room)
                if room == 0:
                    return  # the line is busy: the rest goes at the next service()
            try:
                n = os.write(self.master_fd, head.data[head.sent : head.sent + room])
            except BlockingIOError:
                return  # pty full: the host is not reading; keep it queued
            except OSError as exc:
                if exc.errno == errno.EIO:
                    return
                raise
            head.sent += n
            self.stats.bytes_written += n
            if head.sent < len(head.data):
                return
            self._queue.popleft()
            self._queued_bytes -= len(head.data)
            self.stats.frames_written += 1
            if head.on_written is not None:
                head.on_written()


class LineRate:
    """How many bytes a line of `baud` (8N1) has carried since the last look: the time
    passed times baud / 10. Time the line stood idle is not saved up beyond 16 bytes (a
    UART's FIFO), so an idle line never sends a burst faster than the line rate."""

    CAP = 16

    def __init__(self, baud: int, clock: Callable[[], float]) -> None:
        self.baud = baud
        self._clock = clock
        self._carry = 0.0
        self._at = clock()

    def take(self, want: int) -> int:
        now = self._clock()
        allowance = self._carry + (now - self._at) * self.baud / 10
        self._at = now
        n = min(want, int(allowance))
        self._carry = min(allowance - n, float(self.CAP))
        return n


def _replace_symlink(link: Path, target: str) -> None:
    """Point `link` at `target`, replacing an old symlink atomically (never a real file)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.exists() and not link.is_symlink():
        raise FileExistsError(f"{link}: exists and is not a symlink; refusing to replace it")
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)
