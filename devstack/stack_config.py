"""The TOML a stack writes for its parts: strings, the [mqtt] table, the demo catalogue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from devstack.broker import Broker
from xiaodian.pki.ca import DevPki


def _toml_str(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _mqtt_toml(broker: Broker, pki: DevPki, name: str, reconnect_max_s: float) -> str:
    tls = pki.client(name)
    return (
        f"[mqtt]\nhost = {_toml_str(broker.host)}\nport = {broker.port}\n"
        f"reconnect_max_s = {reconnect_max_s}\n"
        f"[mqtt.tls]\nca = {_toml_str(tls.ca)}\ncert = {_toml_str(tls.cert)}\n"
        f"key = {_toml_str(tls.key)}\n"
    )


def _catalogue_toml(items: list[dict[str, Any]]) -> str:
    out = []
    for it in items:
        out.append("[[items]]")
        for k in ("item", "name", "unit", "shelf_life_days", "storage"):
            out.append(f"{k} = {json.dumps(it[k], ensure_ascii=False)}")
        loc = it.get("location")
        if loc:
            out.append(f"location = {{ fridge = {json.dumps(loc['fridge'])}, lane = "
                       f"{loc['lane']}, unit_grams = {loc['unit_grams']} }}")
        out.append("")
    return "\n".join(out)
