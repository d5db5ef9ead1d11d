"""`xiaodian edge status` for a person (edge/status_text.py): per device link, probes, door,
compressor, open alerts, and the likely cause when something is wrong."""

from __future__ import annotations

from typing import Any

from edge.status_text import likely_cause, render
from xiaodian.i18n import translator

LINK = {"state": "up", "hello": {"boot_count": 1}, "frames_ok": 900, "crc_errors": 0,
        "missed_frames": 0, "reconnects": 0}


def fridge(**parts: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "link": dict(LINK), "reading": {"probes": [[0, "ok", 3.2], [1, "ok", 3.6]]},
        "door": {"open": False}, "compressor": {"on": False, "reason": "thermostat"}}
    base.update(parts)
    return base


def cause(d: dict[str, Any]) -> str | None:
    c = likely_cause(d, "fridge")
    return None if c is None else str(c)


def test_a_healthy_fridge_has_no_cause_and_says_none_for_alerts() -> None:
    text = render(translator("en"), {"fridge-1": ("fridge", fridge())})
    assert text.splitlines() == [
        "fridge-1 (fridge)",
        "  link up, 900 frames, 0 CRC errors, 0 missed, 0 reconnects",
        "  probes 0: 3.2 °C, 1: 3.6 °C",
        "  door closed",
        "  compressor off (thermostat)",
        "  open alerts: none",
    ]
    assert cause(fridge()) is None


def test_the_likely_cause_most_basic_first() -> None:
    warm = {"probes": [[0, "ok", 7.5], [1, "ok", 6.1]]}
    assert "no data" in str(cause(fridge(link={"state": "down", "last_error": "EIO"})))
    noisy = {**LINK, "crc_errors": 40}
    assert "noisy" in str(cause(fridge(link=noisy, reading=warm)))
    probe = {"probes": [[0, "ok", 3.0], [1, "missing", None]]}
    assert "probe" in str(cause(fridge(reading=probe)))
    assert cause(fridge(reading=warm, door={"open": True})) == "the door is open"
    running = fridge(reading=warm, compressor={"on": True, "reason": "thermostat"})
    assert "condenser" in str(cause(running))
    assert "compressor is off" in str(cause(fridge(reading=warm)))


def test_alerts_are_listed_and_chinese_is_the_default() -> None:
    alert = {"rule": "door_open", "severity": "warning", "message": "door open 3 min"}
    d = fridge(link={**LINK, "alerts": [alert]}, door={"open": True})
    en = render(translator("en"), {"fridge-1": ("fridge", d)})
    assert "  open alert: door_open (warning) door open 3 min" in en.splitlines()
    assert "likely cause: see the open alerts" in en
    zh = render(translator("zh_CN"), {"fridge-1": ("fridge", fridge())})
    assert zh.splitlines()[0] == "fridge-1（冰箱）" and "未处理告警：无" in zh
    assert render(translator("en"), {}) == "Devices: none\n"
