"""A day of a store's fridges in the cloud database, as the HACCP, dashboard, owner and fleet
tests read it: minute readings for fridge-1 and fridge-2, doors, defrosts, compressor runs,
and fridge-2's warm excursion with its alert (raised, then critical)."""

from __future__ import annotations

import math
from typing import Any

from cloud_gateway.db import Database
from cloud_gateway.ingest import ingest
from xiaodian.wire.payloads import batch_payload, event_record, reading_record

STORE = "store-001"
T0 = 1_748_736_000.0  # 2025-06-01T00:00:00Z


def _alert(fridge: str, rule: str, change: str, severity: str, started: float, at: float,
           peak: float | None, message: str,
           data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"change": change, "id": f"{fridge}/{rule}/{round(started * 1000)}",
            "fridge": fridge, "rule": rule, "severity": severity, "audience": "owner",
            "started_at": started, "at": at, "duration_s": at - started, "peak_c": peak,
            "message": message, "late": False, "data": data or {}}


# fridge-2's alert as a current agent sends it: the reason code and its numbers.
WARM_RAISED = {"reason": "warm", "value_c": 6.0, "limit_c": 5.0, "for_s": 1800}
WARM_CRITICAL = {"reason": "warm", "value_c": 9.0, "limit_c": 8.0, "for_s": 900}


Ev = tuple[str, float, dict[str, Any]]  # type, wall, data


def fridge2_product(minute: int) -> float:
    """3 °C, except 10:00-11:00 above 5 °C, with 10:30-10:45 at 9 °C."""
    if 630 <= minute < 645:
        return 9.0
    return 6.0 if 600 <= minute < 660 else 3.0


def fill_day(db: Database) -> None:
    """A day of minute readings for two fridges; fridge-2 has an excursion and an alert."""
    for device in ("fridge-1", "fridge-2"):
        records = []
        for m in range(1440):
            product = 3.0 + 0.5 * math.sin(m / 60) if device == "fridge-1" else fridge2_product(m)
            air = 2.0 + (m % 30) / 10  # a compressor saw-tooth, 2..4.9 °C
            records.append(reading_record(m + 1, m + 1, 60_000 * m, T0 + 60 * m, True,
                                          [(0, "ok", air), (1, "ok", round(product, 3))]))
        for i in range(0, 1440, 480):
            chunk = records[i:i + 480]
            ingest(db, f"xd/v1/{STORE}/telemetry",
                   batch_payload("readings", STORE, device, 1, chunk), "w-1",
                   chunk[-1]["wall"] + 1.0)
    h = 3600.0
    f1: list[Ev] = [
          ("door", T0 + 8 * h, {"open": True, "duration_ms": 0}),
          ("door", T0 + 8 * h + 600, {"open": False, "duration_ms": 600_000}),
          ("defrost", T0 + 6 * h, {"active": True, "reason": "schedule"}),
          ("defrost", T0 + 6 * h + 1500, {"active": False, "reason": "schedule"}),
          ("alert", T0 + 8 * h + 300, _alert("fridge-1", "door", "raised", "warning",
                                            T0 + 8 * h, T0 + 8 * h + 300, None,
                                            "door open 5 min")),
          ("alert", T0 + 8 * h + 600, _alert("fridge-1", "door", "cleared", "warning",
                                            T0 + 8 * h, T0 + 8 * h + 600, None, "door closed"))]
    for hour in range(24):
        f1.append(("compressor", T0 + hour * h, {"on": True, "reason": "thermostat"}))
        f1.append(("compressor", T0 + hour * h + 1200, {"on": False, "reason": "thermostat"}))
    f2 = [("alert", T0 + 10.5 * h, _alert("fridge-2", "warm", "raised", "warning", T0 + 10 * h,
                                          T0 + 10.5 * h, 6.0,
                                          "product 6.0 °C, above 5 °C for 30 min",
                                          WARM_RAISED)),
          ("alert", T0 + 10.75 * h, _alert("fridge-2", "warm", "updated", "critical",
                                           T0 + 10 * h, T0 + 10.75 * h, 9.0,
                                           "product 9.0 °C, above 8 °C for 15 min",
                                           WARM_CRITICAL))]
    # fridge-1's alert came from an older agent (with the fridge's own events), fridge-2's
    # from a current one (the `alerts` stream on its own topic): a report finds both.
    for device, leaf, evs in (("fridge-1", "events", f1), ("alerts", "alerts", f2)):
        evs.sort(key=lambda e: e[1])
        records = [event_record(i + 1, type_, None, None, wall, True, data)
                   for i, (type_, wall, data) in enumerate(evs)]
        ingest(db, f"xd/v1/{STORE}/{leaf}", batch_payload("events", STORE, device, 1, records),
               "w-1", T0 + 86_400.0)
