"""`xiaodian edge status` for a person: per device its link, probes, door, compressor, open
alerts and, when something is wrong, the likely cause. Pure: the JSON the command already
builds (`store.latest()` per device) in, Messages out; the command renders them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xiaodian.i18n import N_, Message, Translator

WARM_C = 5.0
# The protocol's codes (docs/protocol.md §4), as a technician reads them.
REASON_TEXT = {
    "thermostat": N_("thermostat"), "min_off_time": N_("min_off_time"),
    "defrost_start": N_("defrost_start"), "defrost_end": N_("defrost_end"),
    "command": N_("command"), "power": N_("power"), "fault": N_("fault"),
}
RESET_TEXT = {
    "unknown": N_("unknown"), "power_on": N_("power_on"), "hard": N_("hard"),
    "watchdog": N_("watchdog"), "deep_sleep": N_("deep_sleep"), "soft": N_("soft"),
    "brownout": N_("brownout"),
}


def code_text(names: Mapping[str, str], code: object) -> Message | str:
    """A protocol code as a Message to translate, or as it is when unknown."""
    text = names.get(str(code))
    return str(code) if text is None else Message(text)


def render_message(t: Translator, m: Message) -> str:
    """`t.render(m)` with any Message among its values rendered first."""
    params = {k: render_message(t, v) if isinstance(v, Message) else v
              for k, v in m.params.items()}
    return t.render(Message(m.msgid, params))


def _probes(reading: Mapping[str, Any] | None) -> tuple[Message, list[str]]:
    if not reading:
        return Message(N_("no reading yet")), []
    parts, bad = [], []
    for index, status, celsius in reading.get("probes", []):
        if status == "ok" and celsius is not None:
            parts.append(f"{index}: {celsius:.1f} °C")
        else:
            parts.append(f"{index}: {status}")
            bad.append(str(index))
    return Message(N_("probes %(probes)s"), {"probes": ", ".join(parts) or "-"}), bad


def likely_cause(d: Mapping[str, Any], kind: str) -> Message | None:
    """The first explanation that fits, most basic first (no link explains everything)."""
    link = d.get("link") or {}
    if link.get("state") == "down" or (link and not link.get("hello") and kind == "fridge"):
        return Message(N_("no data from the controller: check its power and the serial"
                          " cable"))
    if kind != "fridge":
        return None
    bad = sum(int(link.get(k) or 0) for k in ("crc_errors", "cobs_errors"))
    if bad and bad / max(1, int(link.get("frames_ok") or 0) + bad) > 0.01:
        return Message(N_("a noisy serial line: check the cable and its grounding"))
    probes = (d.get("reading") or {}).get("probes", [])
    if any(status != "ok" for _, status, _ in probes):
        return Message(N_("a temperature probe is faulty or unplugged"))
    temps = [c for _, status, c in probes if status == "ok" and c is not None]
    warm = bool(temps) and max(temps) > WARM_C
    door_open = bool((d.get("door") or {}).get("open"))
    running = bool((d.get("compressor") or {}).get("on"))
    if warm and door_open:
        return Message(N_("the door is open"))
    if warm and running:
        return Message(N_("warm although the compressor runs: dirty condenser, refrigerant"
                          " leak, iced evaporator or a bad door seal"))
    if warm and (d.get("defrost") or {}).get("active"):
        return Message(N_("a defrost is running; it should cool again after it ends"))
    if warm:
        return Message(N_("warm and the compressor is off: check the compressor and its"
                          " relay"))
    if link.get("alerts"):
        return Message(N_("see the open alerts"))
    return None


def device_lines(device: str, kind: str, d: Mapping[str, Any]) -> list[Message]:
    link = d.get("link") or {}
    state = link.get("state")
    kind_text = Message(N_("fridge")) if kind == "fridge" else Message(N_("scanner"))
    lines = [Message(N_("%(device)s (%(kind)s)"), {"device": device, "kind": kind_text})]
    if state == "up":
        lines.append(Message(N_("link up, %(frames)s frames, %(crc)s CRC errors, %(missed)s"
                                " missed, %(reconnects)s reconnects"),
                             {"frames": link.get("frames_ok", link.get("lines", 0)),
                              "crc": link.get("crc_errors", 0),
                              "missed": link.get("missed_frames", 0),
                              "reconnects": link.get("reconnects", 0)}))
    else:
        lines.append(Message(N_("link down: %(error)s"),
                             {"error": link.get("last_error") or link.get("error") or "-"}))
    if kind == "fridge":
        probes, _ = _probes(d.get("reading"))
        lines.append(probes)
        door = d.get("door")
        lines.append(Message(N_("door unknown")) if door is None else
                     Message(N_("door open")) if door.get("open") else Message(N_("door closed")))
        comp = d.get("compressor")
        if comp is None:
            lines.append(Message(N_("compressor unknown")))
        else:
            lines.append(Message(N_("compressor on (%(reason)s)") if comp.get("on")
                                 else N_("compressor off (%(reason)s)"),
                                 {"reason": code_text(REASON_TEXT, comp.get("reason", "-"))}))
    alerts = link.get("alerts") or []
    if alerts:
        for a in alerts:
            lines.append(Message(N_("open alert: %(rule)s (%(severity)s) %(message)s"),
                                 {"rule": a.get("rule"), "severity": a.get("severity"),
                                  "message": a.get("message", "")}))
    else:
        lines.append(Message(N_("open alerts: none")))
    cause = likely_cause(d, kind)
    if cause is not None:
        lines.append(Message(N_("likely cause: %(cause)s"), {"cause": cause}))
    return lines


def render(t: Translator, devices: Mapping[str, tuple[str, Mapping[str, Any]]]) -> str:
    """The whole summary; `devices` maps id → (kind, latest)."""
    if not devices:
        return t.gettext("Devices: none") + "\n"
    out = []
    for device, (kind, d) in devices.items():
        head, *rest = device_lines(device, kind, d)
        out.append(render_message(t, head))
        out.extend("  " + render_message(t, m) for m in rest)
    return "\n".join(out) + "\n"
