"""The terminal's half of a firmware update: offer, a window of chunks, install, confirm.

`Pusher` is pure: frames in (`on_frame`), time passing (`tick`), frames out as
(type, payload, flags) for the caller to number and write. A transfer keeps `window` chunks
in flight (go-back-N: the device takes only the next offset and answers every chunk with
FW_STATUS); lost chunks are sent again from the device's offset after two statuses that
did not move it, or after `rto_s` without progress. After any cut the device's FW_STATUS
(answering the offer again) says where to go on: nothing already written is sent twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from firmware_bridge import codec, fwmsg

Out = tuple[int, bytes, int]  # type, payload, flags


@dataclass
class Pusher:
    image: bytes
    version: tuple[int, int, int]
    hardware: str
    window: int = 8
    chunk: int = fwmsg.CHUNK_DATA
    rto_s: float = 1.0
    confirm_every_s: float = 1.0
    # offering, sending, installing, restarting, trial, reverted (old version seen), done, failed
    state: str = "offering"
    result: str = ""  # a FW_RESULT name when done or failed ("confirmed" = success)
    acked: int = 0  # bytes the device holds
    chunks_sent: int = 0
    rewinds: int = 0
    sha: bytes = field(init=False)
    _next: int = 0
    _progress_at: float = 0.0
    _dups: int = 0
    _rewound_at: int = -1
    _sent_at: float = 0.0
    _offer_answered: bool = False  # the next status answers an offer, not a chunk
    # Taken up after the install by a restarted agent: the device's HELLO already names the
    # image's version, so it runs it, on trial or confirmed; only the confirm is left.
    installed: bool = False

    def __post_init__(self) -> None:
        self.sha = hashlib.sha256(self.image).digest()

    @property
    def size(self) -> int:
        return len(self.image)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    def start(self, now: float) -> list[Out]:
        self._progress_at = self._sent_at = now
        if self.installed:
            self.state, self.acked = "restarting", self.size
            return [self._commit("confirm")]
        return [self._offer()]

    def _offer(self) -> Out:
        return fwmsg.FW_OFFER, fwmsg.pack_offer(self.sha, self.size, self.version,
                                                self.hardware), 0

    def _commit(self, action: str) -> Out:
        return fwmsg.FW_COMMIT, fwmsg.pack_commit(self.sha, action), 0

    def _fail(self, reason: str) -> list[Out]:
        self.state, self.result = "failed", reason
        return []

    def on_frame(self, now: float, frame: codec.Frame) -> list[Out]:
        if frame.type == codec.HELLO:
            return self._hello(now, frame)
        msg = fwmsg.decode(frame.type, frame.payload)
        if msg is None or msg.get("sha256") != self.sha:
            return []
        if msg["type"] == "fw_result":
            return self._result(now, msg["result"])
        if msg["type"] == "fw_status":
            return self._status(now, msg)
        return []

    def _hello(self, now: float, frame: codec.Frame) -> list[Out]:
        hello = codec.decode_message(frame.type, frame.payload)
        out: list[Out] = []
        if hello is None:
            return out
        if not frame.flags & codec.REPLY:
            out.append((codec.GET_HELLO, b"", codec.ACK_REQUESTED))  # it restarted: attach
            if self.state in ("offering", "sending"):
                out.append(self._offer())  # resume from what it wrote to flash
        if self.state in ("installing", "restarting", "trial"):
            if tuple(hello["firmware"]) == self.version:
                self.state = "trial"
            elif self.state != "installing":
                # Restarted on the old version: the device's FW_RESULT rolled_back follows
                # the GET_HELLO; `tick` gives up waiting for it after a while.
                self.state = "reverted"
                self._sent_at = now
        return out

    def _result(self, now: float, result: str) -> list[Out]:
        if result == "accepted":
            self._offer_answered = True
            return []
        if result == "installed" and self.state == "installing":
            self.state = "restarting"
            self._progress_at = self._sent_at = now
            return []
        if result == "confirmed":
            self.state, self.result = "done", result
            return []
        if result == "unknown_image" and self.installed and self.state in ("restarting",
                                                                          "trial"):
            # It runs this version and is on no trial: confirmed before the agent restarted
            # (a trial not confirmed answers busy or confirmed; a rolled back one runs the
            # old version and answers rolled_back).
            self.state, self.result = "done", "confirmed"
            return []
        if result == "busy" and self.state in ("installing", "restarting", "trial"):
            self.state = "trial"  # on trial, not healthy yet: ask again later
            return []
        if result in ("unknown_image", "incomplete") and self.state in ("installing", "sending"):
            self.state = "offering"  # the device lost the staged image: from its offset
            return [self._offer()]
        return self._fail(result)

    def _status(self, now: float, msg: dict[str, object]) -> list[Out]:
        st, nxt = str(msg["state"]), int(str(msg["next_offset"]))
        if st == "healthy" and self.state in ("restarting", "trial"):
            self.state = "trial"
            self._sent_at = now
            return [self._commit("confirm")]
        if st not in ("receiving", "complete") or self.state not in ("offering", "sending"):
            return []
        was_offering = self.state == "offering"
        # A status answering an offer (one more after a restart) says where the device is;
        # it is no sign of a lost chunk.
        answers_offer, self._offer_answered = self._offer_answered, False
        if was_offering or (answers_offer and nxt < self.acked):
            # Where the device is, from the offer's answer: also backwards, when a power
            # cut cost it the chunks it had not written yet.
            self.state = "sending"
            self._next = nxt
            self.acked = nxt
        if nxt > self.acked or was_offering:
            self.acked = nxt
            self._progress_at = now
            self._dups = 0
        elif not answers_offer:
            self._dups += 1
        if self._next < self.acked:
            self._next = self.acked
        if self._dups >= 2 and self._rewound_at != self.acked:
            # The device skipped chunks ahead of a lost one: send from its offset again,
            # once per offset (a later status of the same lost chunk says nothing new).
            self._rewound_at = self.acked
            self._next = self.acked
            self.rewinds += 1
        if st == "complete" or self.acked >= self.size:
            self.state = "installing"
            self._sent_at = now
            return [self._commit("install")]
        return self._fill()

    def _fill(self) -> list[Out]:
        out: list[Out] = []
        limit = min(self.size, self.acked + self.window * self.chunk)
        while self._next < limit:
            data = self.image[self._next : self._next + self.chunk]
            out.append((fwmsg.FW_CHUNK, fwmsg.pack_chunk(self._next, self.sha, data), 0))
            self._next += len(data)
            self.chunks_sent += 1
        return out

    def tick(self, now: float) -> list[Out]:
        """Timers: no progress for rto_s: ask where the device is (the offer again)."""
        if self.state in ("offering", "sending") and now - self._progress_at >= self.rto_s:
            self._progress_at = now
            self._next = self.acked
            self._rewound_at = -1
            self.rewinds += 1
            self.state = "offering"
            return [self._offer()]
        if self.state == "installing" and now - self._sent_at >= self.rto_s:
            self._sent_at = now
            return [self._commit("install")]
        if self.state == "reverted" and now - self._sent_at >= 5 * self.rto_s:
            return self._fail("rolled_back")
        # Restarting or on trial: ask for the confirm now and then. The answer says where the
        # device is even when its HELLO was lost: busy (trial, not healthy yet), confirmed,
        # rolled_back.
        if self.state in ("restarting", "trial") and now - self._sent_at >= self.confirm_every_s:
            self._sent_at = now
            return [self._commit("confirm")]
        return []


class Port(Protocol):
    """What `drive` needs of a serial port (pyserial's Serial has both)."""

    def read(self, size: int = 1) -> bytes: ...
    def write(self, data: bytes) -> int | None: ...


def drive(port: Port, pusher: Pusher, clock: Callable[[], float],
          deadline_s: float = 300.0, progress: Callable[[Pusher], None] | None = None) -> str:
    """Run an update over an open port (read with a short timeout) until it ends.

    Frames other than the update's (records, heartbeats) are left alone: they stay in the
    device's log until the agent receipts them (docs/protocol.md §5a), so nothing the
    cold chain needs is lost while a stand-alone tool holds the port.
    """
    decoder = codec.FrameDecoder()
    seq = 0

    def send(items: list[Out]) -> None:
        nonlocal seq
        for kind, payload, flags in items:
            port.write(codec.encode_frame(kind, seq, payload, flags))
            seq = (seq + 1) & 0xFFFF

    start = clock()
    send([(codec.GET_HELLO, b"", codec.ACK_REQUESTED)])
    send(pusher.start(start))
    while not pusher.finished:
        now = clock()
        if now - start > deadline_s:
            pusher.state, pusher.result = "failed", "timeout"
            break
        data = port.read(4096)
        for frame in decoder.feed(data) if data else []:
            send(pusher.on_frame(clock(), frame))
        send(pusher.tick(clock()))
        if progress is not None:
            progress(pusher)
    return pusher.result
