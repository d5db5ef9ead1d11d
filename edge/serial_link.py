"""Serial ports of the terminal: one reader thread per port, reopened forever when they vanish.

A reader only decodes and hands records to the agent's queue; the agent's main thread is
the only writer to SQLite. The queue is bounded: if the agent falls behind, the reader
blocks and the bytes wait in the operating system's serial buffer instead of in our memory.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import serial

from edge import interpret
from edge.firmware_push import FirmwareJob, result_event
from edge.tap import Tap
from edge.wallclock import WallClock
from firmware_bridge import codec, fwmsg
from firmware_bridge import tap as tap_proto
from firmware_bridge.port_holders import describe_holders
from xiaodian.backoff import Backoff

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.2
# Re-ask for HELLO if the device has not introduced itself by then.
HELLO_RETRY_S = 2.0
HELLO_AGAIN_MIN_S = 1.0
# How long to wait after blocking on a full queue before checking for stop.
PUT_TIMEOUT_S = 0.5
# Host commands (docs/protocol.md §5): no ACK within this, send again with the same seq.
COMMAND_ACK_TIMEOUT_S = 0.25
COMMAND_RETRIES = 4
# Read timeout while a command waits for its ACK, so retries keep to the 250 ms above.
COMMAND_POLL_S = 0.02


class _LostWithData(serial.SerialException):
    """The port failed after some bytes were read: those bytes are still delivered."""

    def __init__(self, data: bytes, cause: Exception) -> None:
        super().__init__(str(cause))
        self.data = data


def _read_available(ser: serial.Serial) -> bytes:
    """Wait up to the port timeout for one byte, then take whatever else is already there.

    Not `ser.read(4096)`: pyserial keeps collecting until the timeout and, if the port dies
    meanwhile (cable pulled, device gone), raises and drops what it had collected. A frame
    that reached the terminal must not be lost that way.
    """
    data = ser.read(1)
    if not data:
        return b""
    try:
        waiting = ser.in_waiting
        if waiting:
            data += ser.read(waiting)
    except (serial.SerialException, OSError) as exc:
        raise _LostWithData(data, exc) from exc
    return data


class DeviceCommand:
    """One command for a fridge, handed from the agent's thread to the port's reader thread.

    The agent may `cancel()` it only while it is still queued: once a byte of it has gone
    to the device it runs to an outcome, so a command reported as not done never executes.
    """

    def __init__(self, msg_type: int, payload: bytes) -> None:
        self.msg_type = msg_type
        self.payload = payload
        self.done = threading.Event()
        # ACK status name (ok, duplicate, busy...), or timeout, link_lost, device_restarted
        self.outcome = ""
        self.attempts = 0  # frames written: 1 + retransmissions
        self.seq: int | None = None
        self._lock = threading.Lock()
        self._state = "queued"  # -> sent -> done, or -> cancelled

    @property
    def executed(self) -> bool:
        """The device says it ran the command (now or on an earlier attempt)."""
        return self.outcome in ("ok", "duplicate")

    def cancel(self) -> bool:
        with self._lock:
            if self._state != "queued":
                return False
            self._state = "cancelled"
            return True

    def claim(self) -> bool:
        """The reader takes it for sending; False if the agent cancelled it first."""
        with self._lock:
            if self._state != "queued":
                return False
            self._state = "sent"
            return True

    def finish(self, outcome: str) -> None:
        with self._lock:
            self._state = "done"
            self.outcome = outcome
        self.done.set()


class PortReader(threading.Thread):
    """Owns one serial port: open, read, decode, enqueue; on any error close and retry."""

    def __init__(
        self,
        device: str,
        port: Path,
        baudrate: int,
        out: queue.Queue[interpret.Item],
        stop: threading.Event,
        clock: WallClock,
        *,
        backoff: Backoff | None = None,
        tap: Tap | None = None,
    ) -> None:
        super().__init__(name=f"serial-{device}", daemon=True)
        self.device = device
        self.port = port
        self.baudrate = baudrate
        self.out = out
        self.stop_event = stop
        self.clock = clock
        self.backoff = backoff or Backoff(0.2, 10.0)
        self.reconnects = 0
        self.last_error = ""
        self.alive_at = time.monotonic()  # for the agent's watchdog
        self.opened = threading.Event()  # set once the port was first opened
        self.tap = tap  # sniffs and captures get a copy of every byte, never the port
        self.shared_with = ""  # other processes that had the port open when we opened it

    def write(self, ser: serial.Serial, data: bytes) -> None:
        ser.write(data)
        if self.tap is not None:
            self.tap.tee(self.device, tap_proto.OUT, data)

    # Subclasses turn bytes into records.
    def on_open(self, ser: serial.Serial) -> None:
        pass

    def on_bytes(self, data: bytes) -> None:
        raise NotImplementedError

    def on_idle(self, ser: serial.Serial) -> None:
        pass

    def on_lost(self) -> None:
        """The port failed or closed: whatever waited for an answer on it will not get one."""

    def stats(self) -> dict[str, Any]:
        return {"reconnects": self.reconnects, "last_error": self.last_error,
                "shared_with": self.shared_with}

    def emit(self, item: interpret.Item) -> None:
        while not self.stop_event.is_set():
            try:
                self.out.put(item, timeout=PUT_TIMEOUT_S)
                return
            except queue.Full:
                self.alive_at = time.monotonic()

    def run(self) -> None:
        up = False
        while not self.stop_event.is_set():
            self.alive_at = time.monotonic()
            try:
                # Exclusive (flock): a second opener gets an error instead of half the bytes.
                with serial.Serial(str(self.port), self.baudrate, timeout=READ_TIMEOUT_S,
                                   exclusive=True) as ser:
                    log.info("%s: opened %s", self.device, self.port)
                    # A tool that takes no lock (cat, screen) can still have it open; it
                    # would take bytes from us. Kept reading (the cold chain comes first),
                    # but said loudly and shown in the status (and by `xiaodian doctor`).
                    self.shared_with = describe_holders(str(self.port))
                    if self.shared_with:
                        log.error("%s: %s is also open in %s: it takes bytes from this link",
                                  self.device, self.port, self.shared_with)
                    self.opened.set()
                    wall, synced = self.clock.read()
                    self.emit(
                        interpret.link_event(
                            self.device,
                            "up",
                            wall,
                            synced,
                            port=str(self.port),
                            reconnects=self.reconnects,
                        )
                    )
                    up = True
                    self.backoff.reset()
                    self.on_open(ser)
                    while not self.stop_event.is_set():
                        self.alive_at = time.monotonic()
                        data = _read_available(ser)
                        if data:
                            if self.tap is not None:
                                self.tap.tee(self.device, tap_proto.IN, data)
                            self.on_bytes(data)
                        self.on_idle(ser)
            except (serial.SerialException, OSError) as exc:
                if isinstance(exc, _LostWithData):
                    if self.tap is not None:
                        self.tap.tee(self.device, tap_proto.IN, exc.data)
                    self.on_bytes(exc.data)
                self.on_lost()
                self.last_error = str(exc)
                if not up:  # could not open: say who holds the port, if anyone does
                    held = describe_holders(str(self.port))
                    if held:
                        self.last_error = f"{exc} (held by {held})"

                if up:
                    wall, synced = self.clock.read()
                    log.warning("%s: port %s lost: %s", self.device, self.port, exc)
                    self.emit(
                        interpret.link_event(self.device, "down", wall, synced, error=str(exc))
                    )
                    up = False
                else:
                    log.debug("%s: cannot open %s: %s", self.device, self.port, exc)
                self.reconnects += 1
                self.stop_event.wait(self.backoff.next_delay())


class FridgeReader(PortReader):
    """A fridge controller speaking the framed protocol.

    Records (readings, door, compressor...) are kept in the device's log until we RECEIPT
    them, which the agent asks for only after they are committed to SQLite. Records that
    arrive before this connection's HELLO are ignored: without the device's boot count they
    have no identity, and the device sends them again after the HELLO anyway.
    """

    def __init__(
        self, *args: Any, monotonic: Callable[[], float] = time.monotonic, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.decoder = codec.FrameDecoder()
        self.monotonic = monotonic
        self.host_seq = 0
        self.hello: dict[str, Any] | None = None
        self.hello_asked_at = 0.0
        self.hello_again = False  # the device booted while we listened: say GET_HELLO
        self.bad_messages = 0
        self.before_hello = 0
        self.receipts_sent = 0
        self._receipts: queue.SimpleQueue[tuple[int, list[int]]] = queue.SimpleQueue()
        self._commands: queue.SimpleQueue[DeviceCommand] = queue.SimpleQueue()
        self._command: DeviceCommand | None = None  # the one awaiting its ACK
        self._command_sent_at = 0.0
        self.command_counts = {"sent": 0, "retransmitted": 0, "timeouts": 0, "link_lost": 0}
        # A firmware update in progress (edge/firmware_push.py), set by the agent's thread.
        self.fw_job: FirmwareJob | None = None
        self._fw_reported: set[tuple[int, str, str]] = set()  # FW_RESULT events made

    def _next_seq(self) -> int:
        self.host_seq = (self.host_seq + 1) & 0xFFFF
        return self.host_seq

    def _ask_hello(self, ser: serial.Serial) -> None:
        # A leading delimiter flushes any half frame the device may hold from before.
        self.write(
            ser,
            b"\x00"
            + codec.encode_frame(codec.GET_HELLO, self._next_seq(), b"", codec.ACK_REQUESTED),
        )
        self.hello_asked_at = self.monotonic()

    def receipt(self, dev_boot: int, seqs: list[int]) -> None:
        """Called by the agent (another thread) once these records are committed."""
        self._receipts.put((dev_boot, seqs))

    def send_command(self, msg_type: int, payload: bytes) -> DeviceCommand:
        """Queue a command (any thread); the reader sends it once the device said HELLO."""
        command = DeviceCommand(msg_type, payload)
        self._commands.put(command)
        return command

    def on_open(self, ser: serial.Serial) -> None:
        self.hello = None
        self._ask_hello(ser)

    def on_lost(self) -> None:
        if self.fw_job is not None:
            self.fw_job.link_lost()
        # The device may or may not have run it; a retry on a new connection could not be
        # told from a new command (the device forgets seqs at GET_HELLO), so report it.
        if self._command is not None:
            self.command_counts["link_lost"] += 1
            self._command.finish("link_lost")
            self._command = None

    def _device_restarted(self) -> None:
        # A HELLO while a command waits: the device may have rebooted and forgotten which
        # seqs it ran, so a retry could run it twice. Stop; the outcome is unknown.
        if self._command is not None:
            self.command_counts["link_lost"] += 1
            self._command.finish("device_restarted")
            self._command = None

    def _command_step(self, ser: serial.Serial) -> None:
        """One command at a time: send, retransmit unchanged but flagged, or give up."""
        cmd = self._command
        if cmd is None:
            if self.hello is None:
                return  # not yet sure who is on the line
            while cmd is None:
                try:
                    cmd = self._commands.get_nowait()
                except queue.Empty:
                    break
                if not cmd.claim():
                    cmd = None  # cancelled by the agent while it waited
            if cmd is None:
                if ser.timeout != READ_TIMEOUT_S:
                    ser.timeout = READ_TIMEOUT_S
                return
            cmd.seq = self._next_seq()
            self._command = cmd
            self.command_counts["sent"] += 1
            self._write_command(ser, cmd, 0)
            ser.timeout = COMMAND_POLL_S
            return
        if self.monotonic() - self._command_sent_at < COMMAND_ACK_TIMEOUT_S:
            return
        if cmd.attempts > COMMAND_RETRIES:
            self.command_counts["timeouts"] += 1
            self._command = None
            cmd.finish("timeout")
            return
        self.command_counts["retransmitted"] += 1
        self._write_command(ser, cmd, codec.RETRANSMISSION)

    def _write_command(self, ser: serial.Serial, cmd: DeviceCommand, flags: int) -> None:
        assert cmd.seq is not None
        frame = codec.encode_frame(cmd.msg_type, cmd.seq, cmd.payload, codec.ACK_REQUESTED | flags)
        self.write(ser, frame)
        cmd.attempts += 1
        self._command_sent_at = self.monotonic()

    def _command_ack(self, frame: codec.Frame) -> None:
        cmd = self._command
        msg = codec.decode_message(frame.type, frame.payload)
        if cmd is None or msg is None or msg["acked_seq"] != cmd.seq:
            return  # the GET_HELLO's ACK, or a late one for a command already settled
        self._command = None
        cmd.finish(str(msg["status"]))

    def on_idle(self, ser: serial.Serial) -> None:
        since = self.monotonic() - self.hello_asked_at
        # At most one GET_HELLO a second for boot HELLOs: a device that (wrongly) answers
        # GET_HELLO with an unflagged HELLO must not turn this into a ping-pong.
        if (self.hello_again and since > HELLO_AGAIN_MIN_S) or (
            self.hello is None and since > HELLO_RETRY_S
        ):
            self.hello_again = False
            self._ask_hello(ser)
        self._command_step(ser)
        job = self.fw_job
        if job is not None:
            for kind, payload, flags in job.take():
                self.write(ser, codec.encode_frame(kind, self._next_seq(), payload, flags))
            # While it runs, look again soon: the window refills on each status.
            ser.timeout = READ_TIMEOUT_S if job.done.is_set() else COMMAND_POLL_S
            if job.done.is_set():
                self.fw_job = None
        while True:
            try:
                dev_boot, seqs = self._receipts.get_nowait()
            except queue.Empty:
                break
            for i in range(0, len(seqs), codec.MAX_RECEIPT_SEQS):
                body = codec.pack_receipt(dev_boot, seqs[i : i + codec.MAX_RECEIPT_SEQS])
                self.write(ser, codec.encode_frame(codec.RECEIPT, self._next_seq(), body))
                self.receipts_sent += 1

    def on_bytes(self, data: bytes) -> None:
        wall, synced = self.clock.read()
        for frame in self.decoder.feed(data):
            job = self.fw_job
            if job is not None and (frame.type == codec.HELLO or frame.type in fwmsg.TYPE_NAMES):
                job.on_frame(frame)
            if frame.type in fwmsg.TYPE_NAMES:
                # The update's own frames; an outcome (a rollback above all) is an event.
                boot = int(self.hello["boot_count"]) if self.hello else 0
                event = result_event(self.device, frame, wall, synced, boot, self._fw_reported)
                if event is not None:
                    self.emit(event)
                continue
            if frame.type == codec.ACK:
                self._command_ack(frame)
            if frame.type == codec.HELLO:
                msg = codec.decode_message(frame.type, frame.payload)
                if msg is not None:
                    self.hello = msg
                    if self.tap is not None:
                        self.tap.describe(self.device, hello=msg)
                    self._device_restarted()
                    if not frame.flags & codec.REPLY:
                        # A boot HELLO: the controller restarted and, like a fresh board,
                        # streams only after a GET_HELLO (docs/firmware.md). Ask again.
                        self.hello_again = True
            elif self.hello is None and frame.type in codec.LOGGED_TYPES:
                self.before_hello += 1
                continue
            dev_boot = int(self.hello["boot_count"]) if self.hello else 0
            items, msg = interpret.from_frame(self.device, frame, wall, synced, dev_boot)
            if msg is None:
                self.bad_messages += 1
                continue
            for item in items:
                self.emit(item)

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            **self.decoder.stats(),
            "bad_messages": self.bad_messages,
            "before_hello": self.before_hello,
            "receipts_sent": self.receipts_sent,
            "commands": dict(self.command_counts),
            "hello": self.hello,
        }


class ScannerReader(PortReader):
    """A barcode scanner in serial mode: AIM-prefixed lines ending in CR/LF."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.splitter = interpret.LineSplitter()
        self.lines = 0

    def on_bytes(self, data: bytes) -> None:
        wall, synced = self.clock.read()
        for line in self.splitter.feed(data):
            self.lines += 1
            self.emit(interpret.from_scan_line(self.device, line, wall, synced))

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "lines": self.lines, "overlong": self.splitter.overlong}
