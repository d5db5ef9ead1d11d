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
        if it.get("price_fen") is not None:
            out.append(f"price_fen = {int(it['price_fen'])}  # what residents pay, in fen")
        out.append("")
    return "\n".join(out)


def _owner_alerts_toml(store: str, owner: str, webhook_url: str, webhook_secret_file: Path,
                       link_secret_file: Path, timezone: str) -> str:
    """The cloud's [alerts] table making `webhook_url` the store owner's only contact.

    The tick runs every second rather than every 5 s, and a failed delivery is retried
    after 1 s (doubling to 30 s), so that the demo's owner hears within a second or two."""
    return (
        f"[alerts]\nlink_secret_file = {_toml_str(link_secret_file)}\n"
        "tick_interval_s = 1.0\nretry_initial_s = 1.0\nretry_max_s = 30.0\n"
        f"[alerts.escalation]\ntimezone = {_toml_str(timezone)}\n"
        f"[[alerts.stores]]\nstore = {_toml_str(store)}\n"
        f"[[alerts.stores.contacts]]\nname = {_toml_str(owner)}\nrole = \"owner\"\n"
        f"webhook_url = {_toml_str(webhook_url)}\n"
        f"webhook_secret_file = {_toml_str(webhook_secret_file)}\n"
    )
