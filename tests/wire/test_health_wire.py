"""The vitals record on the wire (xiaodian/wire/health.py): its own topic, strict limits."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from xiaodian.wire.health import HEALTH_DEVICE, Vitals
from xiaodian.wire.payloads import (
    Batch,
    PayloadError,
    batch_payload,
    event_record,
    leaf_for,
    parse,
)

STORE = "store-001"


def vitals(**change: Any) -> dict[str, Any]:
    v = {"fridge": "fridge-1", "hour": 493_000, "readings": 60, "compressor_known_s": 3600.0,
         "compressor_on_s": 1500.0, "duty": 0.4167, "compressor_starts": 3,
         "defrosts": [{"duration_s": 1500.0, "ended_on": "timeout"}], "defrost_s": 1500.0,
         "door_openings": 4, "door_open_s": 80.0, "pulldowns_s": [120.0, 0.0],
         "pulldown_unrecovered": 0, "reboots": [{"boot_count": 3, "cause": "watchdog"}],
         "probes": [{"index": 0, "ok": 60, "crc": 0, "missing": 0, "suspect": 0}],
         "mains_lost": 0, "mains_off_s": 0.0, "firmware": "0.1.0",
         "link": {"frames": 700, "errors": 1, "missed": 0, "reconnects": 0, "per_10k": 14.29}}
    v.update(change)
    return v


def message(data: dict[str, Any], device: str = HEALTH_DEVICE, type_: str = "vitals") -> bytes:
    return batch_payload("events", STORE, device, 1,
                         [event_record(1, type_, None, None, 1.7e9, True, data)])


def test_vitals_travel_on_their_own_topic() -> None:
    assert leaf_for("events", HEALTH_DEVICE) == "health"
    batch = parse(f"xd/v1/{STORE}/health", message(vitals()))
    assert isinstance(batch, Batch) and batch.device == HEALTH_DEVICE
    v = msgspec.convert(batch.records[0].data, Vitals)  # type: ignore[union-attr]
    assert (v.duty, v.defrosts[0].ended_on, v.link and v.link.per_10k) == (0.4167, "timeout",
                                                                          14.29)


@pytest.mark.parametrize(("change", "why"), [
    ({"duty": 1.5}, "duty"),
    ({"compressor_on_s": 3601.0}, "compressor_on_s"),
    ({"compressor_on_s": 3000.0, "compressor_known_s": 2000.0}, "exceeds"),
    ({"defrosts": [{"duration_s": 60.0, "ended_on": "melted"}]}, "ended_on"),
    ({"firmware": "1.0"}, "firmware"),
    ({"probes": [{"index": 0, "ok": 1, "crc": 0, "missing": 0, "suspect": 0}] * 2}, "twice"),
    ({"fridge": "fridge 1"}, "fridge"),
    ({"extra": 1}, "extra"),
    ({"pulldowns_s": [1.0] * 121}, "pulldowns_s"),
])
def test_a_bad_vitals_record_is_refused_with_its_field(change: dict[str, Any], why: str) -> None:
    with pytest.raises(PayloadError, match=why):
        parse(f"xd/v1/{STORE}/health", message(vitals(**change)))


def test_the_health_topic_carries_vitals_only_and_vitals_go_nowhere_else() -> None:
    with pytest.raises(PayloadError, match="only vitals"):
        parse(f"xd/v1/{STORE}/health", message({"open": True}, type_="door"))
    with pytest.raises(PayloadError, match="topic health"):
        parse(f"xd/v1/{STORE}/health", message(vitals(), device="fridge-1"))
    with pytest.raises(PayloadError, match="topic health"):
        parse(f"xd/v1/{STORE}/events", message(vitals()))
    with pytest.raises(PayloadError, match="topic health only"):
        parse(f"xd/v1/{STORE}/events", message(vitals(), device="fridge-1"))
