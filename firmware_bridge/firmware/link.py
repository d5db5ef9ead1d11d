"""The device end of the serial link: sequence numbers, frames out, frames in.

Records go through the record log (docs/protocol.md §5a) and are sent only once a host
has said GET_HELLO since boot: a UART cannot tell whether anyone listens, so until then
the records wait in the log and nothing but the boot HELLO goes on the wire.
"""

import codec
from records import RecordLog, SeqMemory

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

RESEND_LIMIT = 32  # retransmissions per pass, so one pass never floods the line


class Link:
    def __init__(self, uart: "Any", log: "RecordLog") -> None:
        self.uart = uart
        self.log = log
        self.attached = False
        self.commands = SeqMemory(8)
        self.decoder = codec.FrameDecoder()
        self.tx_short = 0  # writes the UART did not take whole
        self._seq = 0

    def next_seq(self) -> int:
        seq = self._seq
        self._seq = (seq + 1) & 0xFFFF
        return seq

    def send(self, msg_type: int, payload: bytes, flags: int = 0) -> int:
        """A link frame (HELLO, HEARTBEAT, ACK, state report): never logged or resent."""
        seq = self.next_seq()
        self._write(codec.encode_frame(msg_type, seq, payload, flags))
        return seq

    def record(self, now_ms: int, msg_type: int, payload: bytes) -> int:
        seq = self.next_seq()
        entry = self.log.add(seq, msg_type, payload)
        if self.attached:
            entry.sent_ms = now_ms
            self._write(codec.encode_frame(msg_type, seq, payload))
        return seq

    def resend(self, now_ms: int, everything: bool = False) -> int:
        if not self.attached:
            return 0
        due = self.log.due(now_ms, everything, RESEND_LIMIT)
        for e in due:
            self._write(codec.encode_frame(e.msg_type, e.seq, e.payload, codec.RETRANSMISSION))
        return len(due)

    def ack(self, acked_seq: int, status: int) -> None:
        self.send(codec.ACK, codec.pack_ack(acked_seq, status), codec.REPLY)

    def receive(self) -> "list[codec.Frame]":
        """Frames that arrived since the last call; never blocks."""
        if not self.uart.any():
            return []
        data = self.uart.read()
        if not data:
            return []
        return self.decoder.feed(data)

    @property
    def rx_errors(self) -> int:
        d = self.decoder
        return d.cobs_errors + d.crc_errors + d.length_errors + d.oversize + d.version_errors

    def _write(self, frame: bytes) -> None:
        n = self.uart.write(frame)
        if n is not None and n < len(frame):
            self.tx_short += 1
