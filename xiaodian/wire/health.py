"""A fridge's vitals for one hour: what the terminal sends so a technician sees trouble early.

One `vitals` event per fridge and hour, in the event stream of the device `health`, on the
topic `xd/v1/{s}/health` (`payloads.leaf_for`). The record has the ordinary identity,
receipts and dedupe of every event; the cloud also keeps the first copy of each
(store, fridge, hour) in a table of its own (`cloud_gateway/health.py`).

`hour` is a UTC epoch hour, `floor(unix seconds / 3600)`: the same integer on the terminal
and the cloud whatever a store's time zone is, or becomes (a profile's zone can be changed
later; zones with half-hour offsets and daylight saving would make local hours overlap,
skip or not line up between stores). Pages show it in the store's zone.

Every limit is declared on the fields, so a vitals record the cloud accepts is one a page can
draw without further checks.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

from .ids import DeviceId

HEALTH_DEVICE = "health"  # the event stream (and topic) of vitals; data names the fridge
HOUR_S = 3600
MAX_DEFROSTS = 60  # more defrosts in an hour is nonsense; refused rather than stored
MAX_PULLDOWNS = 120
MAX_REBOOTS = 60
MAX_PROBES = 16

Hour = Annotated[int, Meta(ge=0, le=2**40)]  # UTC epoch hours (year 125 million: ample)
InHour = Annotated[float, Meta(ge=0.0, le=HOUR_S)]  # seconds within one hour
Share = Annotated[float, Meta(ge=0.0, le=1.0)]
Count = Annotated[int, Meta(ge=0, le=1_000_000)]
Frames = Annotated[int, Meta(ge=0, le=2**40)]
Span = Annotated[float, Meta(ge=0.0, le=86_400.0)]  # a defrost or pull-down, seconds
# How a defrost ended, the controller's DEFROST reason (firmware_bridge/codec.py):
# `temperature` = the evaporator reached its termination temperature, `timeout` = its
# maximum time ran out; `power` and `fault` cut it short; `unknown` = the end was not seen.
DefrostEnd = Literal["temperature", "timeout", "power", "fault", "command", "schedule",
                     "unknown"]
ResetCause = Annotated[str, Meta(pattern=r"^[a-z_]{1,32}$")]


class Defrost(Struct, frozen=True, forbid_unknown_fields=True):
    """A defrost that ended in the hour (it may have started in the one before)."""

    duration_s: Span | None  # None when its start was not seen
    ended_on: DefrostEnd


class Reboot(Struct, frozen=True, forbid_unknown_fields=True):
    """A controller boot seen in the hour: a HELLO with a boot count not seen before."""

    boot_count: Annotated[int, Meta(ge=0, le=2**32 - 1)]
    cause: ResetCause  # codec.RESET_CAUSE_NAMES: power_on, watchdog, brownout, soft, ...


class ProbeHealth(Struct, frozen=True, forbid_unknown_fields=True):
    """One probe's readings in the hour by status (codec: ok, crc, missing, suspect)."""

    index: Annotated[int, Meta(ge=0, lt=256)]
    ok: Count
    crc: Count
    missing: Count
    suspect: Count


class LinkHealth(Struct, frozen=True, forbid_unknown_fields=True):
    """The serial link's counters over the hour (the agent's reader, `FrameDecoder.stats`).
    Absent from a record when the agent did not run through the whole hour's end."""

    frames: Frames  # frames decoded whole
    errors: Frames  # CRC, COBS, length, version and oversize errors
    missed: Frames  # frames lost, from sequence gaps
    reconnects: Count
    per_10k: Annotated[float, Meta(ge=0.0)] | None  # (errors + missed) per 10 000 frames


class Vitals(Struct, frozen=True, forbid_unknown_fields=True):
    fridge: DeviceId
    hour: Hour
    readings: Count  # temperature readings in the hour
    # Seconds of the hour in which the compressor's state was known, and of those, on.
    compressor_known_s: InHour
    compressor_on_s: InHour
    duty: Share | None  # on / known; None when less than 10 min were known
    compressor_starts: Count
    defrosts: Annotated[tuple[Defrost, ...], Meta(max_length=MAX_DEFROSTS)]
    defrost_s: InHour  # seconds of the hour spent defrosting
    door_openings: Count
    door_open_s: InHour
    # Seconds from a door's closing until the air probe was back to where it was before the
    # opening (within 0.5 °C), per opening that closed in the hour and was not followed by
    # another within that time; `pulldown_unrecovered`: back not within PULLDOWN_MAX_S.
    pulldowns_s: Annotated[tuple[Span, ...], Meta(max_length=MAX_PULLDOWNS)]
    pulldown_unrecovered: Count
    reboots: Annotated[tuple[Reboot, ...], Meta(max_length=MAX_REBOOTS)]
    probes: Annotated[tuple[ProbeHealth, ...], Meta(max_length=MAX_PROBES)]
    mains_lost: Count  # mains failures that began in the hour
    mains_off_s: InHour
    firmware: Annotated[str, Meta(pattern=r"^[0-9]{1,5}\.[0-9]{1,5}\.[0-9]{1,5}$")] | None
    link: LinkHealth | None = None

    def __post_init__(self) -> None:
        if self.compressor_on_s > self.compressor_known_s:
            raise ValueError("compressor_on_s exceeds compressor_known_s")
        if len({p.index for p in self.probes}) != len(self.probes):
            raise ValueError("a probe appears twice")
