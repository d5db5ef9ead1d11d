"""Why the terminal's own update ended as it did: reason codes with their parameters.

The root helper (edge/release_switch.py) judges the release on trial and says why in
reasons, each a code and its parameters: `{"code": "not_connected"}`,
`{"code": "devices_not_read", "devices": ["fridge-1"]}`, `{"code": "restarted", "times": 2}`.
It writes them in its status file beside `detail`; the agent (edge/self_update.py) carries
them in the `update` event's `reasons`, and the cloud renders them in the reader's language
(cloud_gateway/rollout_text.py). docs/contracts.md has both.

`describe(reason)` is the one wording: the helper's English `detail` (for logs and for
clouds that predate `reasons`) is `english(reasons)`, the pages render the same Messages
through the Translator, so the two cannot drift apart.

Parsing is strict like every message of the contract: a code this contract does not know
(a newer terminal's), a missing or unknown field, a wrong type or a value out of its bounds
is a PayloadError naming the field (`data.reasons[1].devices[0]: ...`). The reader then
has the event's free-text `detail`, which every report keeps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from msgspec import Meta, Struct

from xiaodian.i18n import N_, Message

from . import jsonio
from .ids import DeviceId
from .payloads import PayloadError, convert

MAX_REASONS = 32
MAX_DEVICES = 256
# A value the helper read off a file the agent's user writes: printable ASCII, bounded.
Shown = Annotated[str, Meta(pattern=r"\A[\x20-\x7e]{0,64}\Z")]
Pid = Annotated[int, Meta(ge=0, le=2**31 - 1)]
Count = Annotated[int, Meta(ge=1, le=1_000_000)]
Seconds = Annotated[int, Meta(ge=0, le=10**9)]
# The helper's states as the agent last saw them (self_update.StatusWatch): "" for none.
HelperState = Annotated[str, Meta(pattern=r"\A[a-z_]{0,32}\Z")]
_STATES = {"installing": N_("installing"), "trial": N_("on trial"), "": N_("none")}


class Reason(Struct, frozen=True, forbid_unknown_fields=True, tag_field="code"):
    """One reason; each subclass's tag is its code."""

    def message(self) -> Message:
        raise NotImplementedError


# ---------------------------------------------------------------- the health window


class NotHealthyWithin(Reason, tag="not_healthy_within", frozen=True):
    """The window ran out with the reasons after this one still true."""

    window_s: Seconds

    def message(self) -> Message:
        return Message(N_("not healthy within %(seconds)s s"), {"seconds": self.window_s})


class Restarted(Reason, tag="restarted", frozen=True):
    """systemd restarted the agent since the switch (a crash, or the watchdog's kill)."""

    times: Count

    def message(self) -> Message:
        return Message(N_("restarted by systemd %(times)s time(s) (crash or watchdog)"),
                       {"times": self.times})


class NoStatement(Reason, tag="no_statement", frozen=True):
    def message(self) -> Message:
        return Message(N_("no health statement"))


class WrongVersion(Reason, tag="wrong_version", frozen=True):
    version: Shown  # as the statement says it
    expected: Shown

    def message(self) -> Message:
        return Message(N_("statement by version %(version)s, not %(expected)s"),
                       {"version": self.version, "expected": self.expected})


class WrongPid(Reason, tag="wrong_pid", frozen=True):
    pid: Pid | None  # None: the statement names no process
    main_pid: Pid

    def message(self) -> Message:
        pid = Message(N_("none")) if self.pid is None else self.pid
        return Message(N_("statement by pid %(pid)s, the unit's main pid is %(main_pid)s"),
                       {"pid": pid, "main_pid": self.main_pid})


class NoFreshStatement(Reason, tag="no_fresh_statement", frozen=True):
    def message(self) -> Message:
        return Message(N_("no statement since the switch"))


class StaleStatement(Reason, tag="stale_statement", frozen=True):
    age_s: Seconds

    def message(self) -> Message:
        return Message(N_("statement %(seconds)s s old (main loop stuck)"),
                       {"seconds": self.age_s})


class NotReady(Reason, tag="not_ready", frozen=True):
    def message(self) -> Message:
        return Message(N_("not ready (READY=1 not sent)"))


class NotConnected(Reason, tag="not_connected", frozen=True):
    def message(self) -> Message:
        return Message(N_("not connected to the cloud"))


class DevicesNotRead(Reason, tag="devices_not_read", frozen=True):
    devices: Annotated[tuple[DeviceId, ...], Meta(min_length=1, max_length=MAX_DEVICES)]

    def message(self) -> Message:
        return Message(N_("devices not read: %(devices)s"), {"devices": ", ".join(self.devices)})


class OutboxNotMoving(Reason, tag="outbox_not_moving", frozen=True):
    def message(self) -> Message:
        return Message(N_("outbox not moving (no record confirmed by the cloud)"))


# ---------------------------------------------------------------- the helper's own troubles


class WatchFailed(Reason, tag="watch_failed", frozen=True):
    """systemd could not be asked or the agent restarted (the error is in `detail`)."""

    def message(self) -> Message:
        return Message(N_("the root helper could not watch the trial"))


class KeptAfterRestart(Reason, tag="kept_after_restart", frozen=True):
    def message(self) -> Message:
        return Message(N_("kept after a restart: no release to go back to"))


class Interrupted(Reason, tag="interrupted", frozen=True):
    def message(self) -> Message:
        return Message(N_("interrupted by a restart before its trial"))


# ---------------------------------------------------------------- the agent's, no verdict


class NeverTaken(Reason, tag="never_taken", frozen=True):
    def message(self) -> Message:
        return Message(N_("the root helper never took the request (is xiaodian-update.path "
                          "enabled?); withdrawn"))


class NoVerdict(Reason, tag="no_verdict", frozen=True):
    state: HelperState  # the helper's last state the agent saw ("" none)

    def message(self) -> Message:
        known = _STATES.get(self.state)
        state = Message(known) if known is not None else self.state
        return Message(N_("no verdict from the root helper (last state: %(state)s)"),
                       {"state": state})


AnyReason = (NotHealthyWithin | Restarted | NoStatement | WrongVersion | WrongPid
             | NoFreshStatement | StaleStatement | NotReady | NotConnected | DevicesNotRead
             | OutboxNotMoving | WatchFailed | KeptAfterRestart | Interrupted | NeverTaken
             | NoVerdict)
Reasons = Annotated[tuple[AnyReason, ...], Meta(max_length=MAX_REASONS)]
CODES = frozenset(t.__struct_config__.tag for t in AnyReason.__args__)


def describe(reason: Reason) -> Message:
    """The reason as a sentence: `str()` is the English, `Translator.render` any language."""
    return reason.message()


def english(reasons: Sequence[Reason]) -> str:
    """The reasons as the English `detail` ("not healthy within 180 s; not connected to ...")."""
    return "; ".join(str(describe(r)) for r in reasons)


def parse_reasons(value: Any, root: str = "data.reasons") -> tuple[Reason, ...]:
    """A `reasons` list (already parsed JSON) as Reasons; PayloadError if it is not one."""
    return convert(value, Reasons, root=root)


def reasons_of(data: Mapping[str, Any]) -> tuple[Reason, ...] | None:
    """The `reasons` of an `update` event's data, None when it has none (an older terminal,
    or a result without them: the `detail` is the terminal's own words then)."""
    if "reasons" not in data:
        return None
    return parse_reasons(data["reasons"])


def reasons_data(reasons: Sequence[Reason]) -> list[dict[str, Any]]:
    """`reasons` as JSON data, checked as the reader will check it (building a Struct
    checks no bounds): PayloadError rather than something the cloud would refuse."""
    data: list[dict[str, Any]] = jsonio.decode(jsonio.encode(list(reasons)), list[dict[str, Any]])
    parse_reasons(data)
    return data


__all__ = ["CODES", "MAX_REASONS", "AnyReason", "DevicesNotRead", "Interrupted",
           "KeptAfterRestart", "NeverTaken", "NoFreshStatement", "NoStatement", "NoVerdict",
           "NotConnected", "NotHealthyWithin", "NotReady", "OutboxNotMoving", "PayloadError",
           "Reason", "Restarted", "StaleStatement", "WatchFailed", "WrongPid", "WrongVersion",
           "describe", "english", "parse_reasons", "reasons_data", "reasons_of"]
