"""The record log (docs/protocol.md §5a): every record is kept until a RECEIPT names it.

Pure: time comes in as device milliseconds. Insertion order is kept in a list beside a
dict because MicroPython's dict does not promise insertion order and its OrderedDict has
no popitem(last=False).
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class Entry:
    __slots__ = ("msg_type", "payload", "sent_ms", "seq")

    def __init__(self, seq: int, msg_type: int, payload: bytes) -> None:
        self.seq = seq
        self.msg_type = msg_type
        self.payload = payload
        self.sent_ms = -1  # device time of the last send; -1 = not sent yet


class RecordLog:
    def __init__(self, capacity: int = 2048, retransmit_after_ms: int = 30000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.retransmit_after_ms = retransmit_after_ms
        self.dropped = 0  # pushed out of a full log: reported as tx_dropped
        self._by_seq: dict[int, Entry] = {}
        self._order: list[Entry] = []
        # Simulator hooks (None on a board): ground truth learns what was made and lost.
        self.on_add: Callable[[Entry], Any] | None = None
        self.on_drop: Callable[[Entry], Any] | None = None

    def __len__(self) -> int:
        return len(self._by_seq)

    def add(self, seq: int, msg_type: int, payload: bytes) -> "Entry":
        old = self._by_seq.get(seq)
        if old is not None:
            # Only after 65536 frames with this one never receipted: the old one is lost.
            self._drop(old)
        while len(self._by_seq) >= self.capacity:
            self._drop(self._oldest())
        entry = Entry(seq, msg_type, payload)
        self._by_seq[seq] = entry
        self._order.append(entry)
        if self.on_add is not None:
            self.on_add(entry)
        return entry

    def receipt(self, seqs: "list[int]") -> int:
        """Forget the records named; returns how many were held."""
        n = 0
        for seq in seqs:
            if self._by_seq.pop(seq, None) is not None:
                n += 1
        # Compact lazily: removals from the middle of a list are O(n) each.
        if len(self._order) > 2 * len(self._by_seq) + 16:
            self._order = [e for e in self._order if self._by_seq.get(e.seq) is e]
        return n

    def entries(self) -> "list[Entry]":
        """Held records, oldest first."""
        return [e for e in self._order if self._by_seq.get(e.seq) is e]

    def due(self, now_ms: int, everything: bool, limit: int = 32) -> "list[Entry]":
        """Records to (re)send now, marked as sent at `now_ms`: never sent, or not receipted
        within retransmit_after_ms; with `everything`, all of them (after a HELLO)."""
        out: list[Entry] = []
        for e in self._order:
            if not everything and len(out) >= limit:
                break
            if self._by_seq.get(e.seq) is not e:
                continue
            if everything or e.sent_ms < 0 or now_ms - e.sent_ms >= self.retransmit_after_ms:
                e.sent_ms = now_ms
                out.append(e)
        return out

    def _oldest(self) -> "Entry":
        while True:
            e = self._order.pop(0)
            if self._by_seq.get(e.seq) is e:
                self._order.insert(0, e)
                return e

    def _drop(self, entry: "Entry") -> None:
        del self._by_seq[entry.seq]
        self._order.remove(entry)
        self.dropped += 1
        if self.on_drop is not None:
            self.on_drop(entry)


class SeqMemory:
    """The last `size` command sequence numbers executed: a retry is acknowledged as a
    duplicate and not run again (docs/protocol.md §5)."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._seqs: list[int] = []

    def seen(self, seq: int) -> bool:
        return seq in self._seqs

    def remember(self, seq: int) -> None:
        if seq in self._seqs:
            return
        self._seqs.append(seq)
        if len(self._seqs) > self.size:
            self._seqs.pop(0)

    def forget_all(self) -> None:
        self._seqs = []
