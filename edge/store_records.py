"""The records the edge store takes in and the batches it hands the uplink.

Split out of `edge.store`, which re-exports every name here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xiaodian.wire.payloads import Kind

# Events go out before routine readings when both are waiting.
KIND_ORDER: tuple[Kind, ...] = ("events", "readings")


@dataclass(frozen=True)
class NewReading:
    device: str
    fseq: int
    dev_ms: int
    wall: float
    synced: bool
    probes: list[tuple[int, str, float | None]]
    dev_boot: int = 0  # the device's boot count (HELLO): with fseq and dev_ms, its identity


@dataclass(frozen=True)
class NewEvent:
    device: str
    type: str
    fseq: int | None
    dev_ms: int | None
    wall: float
    synced: bool
    data: dict[str, Any]
    dev_boot: int | None = None  # None for events the agent makes itself (link, scan)
    # What the agent needs at once but must never store or send (a scanned pickup code:
    # whoever reads it could collect the order). Not part of the record.
    transient: str | None = field(default=None, compare=False, repr=False)


@dataclass
class Added:
    """What one `add` did: records new to the store, source duplicates, and per device the
    (device boot, frame seq) of every device record now durable, for its RECEIPT."""

    stored: int = 0
    duplicates: int = 0
    durable: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    fresh: list[NewReading | NewEvent] = field(default_factory=list)  # the stored ones


RecordKey = tuple[Kind, str, int, int]  # (kind, device, boot, seq)


@dataclass(frozen=True)
class PendingBatch:
    kind: Kind
    device: str
    boot: int
    records: list[dict[str, Any]]

    @property
    def keys(self) -> list[RecordKey]:
        return [(self.kind, self.device, self.boot, r["seq"]) for r in self.records]
