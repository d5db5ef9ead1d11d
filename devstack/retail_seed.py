"""Retail in a stack: keys and config for both sides, and seeding a shop's first morning.

`retail_setup` writes what `StoreStack(retail=True)` needs (pickup key, command key, API
token, catalogue TOML); `seed_retail` pushes the demo catalogue, scans the delivery in at
the counter and places two orders, over the same HTTP APIs a user would use.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xiaodian.pki.ca import DevPki
from xiaodian.pki.keys import (
    COMMAND_KEY_NAME,
    load_command_private_key,
    make_command_key,
    make_pickup_key,
    pickup_key_path,
)
from xiaodian.wire.commands import key_id_for

from .process import StackError, _ro
from .stack_config import _catalogue_toml, _toml_str

if TYPE_CHECKING:
    from .stack import StoreStack

# The demo's catalogue: chilled goods in the lanes of the smart fridge-1, others on the open
# fridge-2, where the clerk takes them by hand (GTIN-14s with valid check
# digits, and one item weighed in the shop). Also written as cloud/catalogue.toml, the
# format of `xiaodian cloud catalogue push`. `price_fen` is what residents pay (the cloud
# keeps it; the store's copy has none); the weighed item is priced at the scale.
DEMO_CATALOGUE: list[dict[str, Any]] = [
    {"item": "06901234567892", "name": "Fresh milk 1 L", "unit": "piece", "shelf_life_days": 7,
     "storage": "chilled", "location": {"fridge": "fridge-1", "lane": 0, "unit_grams": 1030},
     "price_fen": 1250},
    {"item": "06901234567809", "name": "Yoghurt 4x100 g", "unit": "piece",
     "shelf_life_days": 21, "storage": "chilled",
     "location": {"fridge": "fridge-1", "lane": 1, "unit_grams": 420}, "price_fen": 1590},
    {"item": "06901234567816", "name": "Chilled dumplings 500 g", "unit": "piece",
     "shelf_life_days": 5, "storage": "chilled", "location": None, "price_fen": 2200},
    {"item": "06901234567823", "name": "Tofu 400 g", "unit": "piece", "shelf_life_days": 3,
     "storage": "chilled", "location": None, "price_fen": 450},
    {"item": "in:12345", "name": "Pork belly (weighed)", "unit": "weight",
     "shelf_life_days": 2, "storage": "chilled", "location": None},
]
# The demo terminal's clerk account (signs deliveries off against their manifests). A
# development stack's PIN, printed in the docs; a real store makes its own hashes.
DEMO_CLERK = ("店员小李", "2468")
# Opening delivery scanned at the counter: (GTIN-14, pieces, batch, expiry YYMMDD).
DEMO_DELIVERY = [("06901234567892", 8, "M2611", "271201"),
                 ("06901234567809", 6, "Y2611", "271215"),
                 ("06901234567816", 6, "D2611", "271130")]


def _covers(stock: list[dict[str, Any]], wanted: dict[str, int]) -> bool:
    """True when the stock rows make every wanted quantity available."""
    available = {row["item"]: row["available"] for row in stock}
    return all(available.get(item, 0) >= qty for item, qty in wanted.items())


def _edge_has_catalogue(db: Path) -> bool:
    if not db.exists():
        return False
    import sqlite3

    try:
        con = _ro(db)
        try:
            return bool(con.execute("SELECT count(*) FROM catalogue").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return False


def retail_setup(stack: StoreStack, pki: DevPki) -> tuple[str, str]:
    """Keys and token (kept between runs, like the certificates); TOML for both sides."""
    key_file = pickup_key_path(pki.directory, stack.store)
    if not key_file.exists():
        make_pickup_key(pki.directory, stack.store)
    cmd_dir = stack.workdir / "cmdkey"
    if not (cmd_dir / COMMAND_KEY_NAME).exists():
        make_command_key(cmd_dir)
    signing_key = cmd_dir / COMMAND_KEY_NAME
    key_id = key_id_for(load_command_private_key(signing_key).public_key())
    token = stack.service_token_file
    if not token.exists():
        token.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    cloud = (
        f"[commands]\nsigning_key = {_toml_str(signing_key)}\nkey_id = {_toml_str(key_id)}\n"
        f"api_token_file = {_toml_str(token)}\n"
        f"[pickup]\nkeys_dir = {_toml_str(key_file.parent)}\nkey_id = 0\n"
    )
    catalogue_toml = stack.workdir / "cloud" / "catalogue.toml"
    catalogue_toml.write_text(_catalogue_toml(DEMO_CATALOGUE), encoding="utf-8")
    edge = ""
    # Written only for an edge that knows these tables (an unknown key stops it).
    from edge.config import EdgeConfig

    known = {f.name for f in dataclasses.fields(EdgeConfig)}
    if "pickup" in known:
        edge += f"[pickup]\nkey_file = {_toml_str(key_file)}\nkey_id = 0\n"
    if "retail" in known:
        edge += "[retail]\nexpiry_window_days = 2\n"
        from edge.config import RetailSettings

        if "clerks" in {f.name for f in dataclasses.fields(RetailSettings)}:
            from edge.retail.clerks import hash_pin

            edge += (f"[[retail.clerks]]\naccount = {_toml_str(DEMO_CLERK[0])}\n"
                     f"pin_hash = {_toml_str(hash_pin(DEMO_CLERK[1]))}\n")
    return cloud, edge


def seed_retail(stack: StoreStack, timeout: float = 20.0) -> dict[str, Any]:
    """What a shop's first morning looks like: the cloud pushes the catalogue, the clerk
    scans the delivery in at the counter, two residents order. Never raises: what did
    not work is reported under "problems" (the cold-chain demo goes on regardless)."""
    out: dict[str, Any] = {"counter_url": stack.counter_url, "orders": [], "problems": []}
    try:
        _, cat = _api_write(stack, "PUT", f"api/stores/{stack.store}/catalogue",
                                 {"items": DEMO_CATALOGUE})
        out["catalogue_version"] = cat.get("version")
        deadline = time.monotonic() + timeout
        while not _edge_has_catalogue(stack.edge_db):
            if time.monotonic() > deadline:
                raise StackError("the terminal did not get the catalogue")
            time.sleep(0.2)
        counter_request(stack, "mode", {"mode": "receive"})
        for gtin, pieces, batch, expiry in DEMO_DELIVERY:
            for _ in range(pieces):  # GS1 DataMatrix: GTIN, expiry, batch
                counter_request(stack, "scan", {"code": f"]d201{gtin}17{expiry}10{batch}"})
        counter_request(stack, "mode", {"mode": "sale"})
        orders: tuple[dict[str, Any], ...] = (
            {"items": [{"item": "06901234567892", "qty": 2},
                       {"item": "06901234567816", "qty": 1}],
             "mode": "pickup", "customer": "Wang L.", "expires_in_s": 4 * 3600},
            {"items": [{"item": "06901234567809", "qty": 1}], "mode": "delivery",
             "customer": "Chen Y.", "expires_in_s": 4 * 3600},
        )
        wanted: dict[str, int] = {}
        for body in orders:
            for line in body["items"]:
                wanted[line["item"]] = wanted.get(line["item"], 0) + line["qty"]
        # Every ordered item must be in the cloud's stock: an item the cloud has not yet
        # heard of has no row at all, so "all rows suffice" alone would pass too early.
        while not _covers(_stock(stack), wanted):
            if time.monotonic() > deadline:
                raise StackError("the cloud did not get the delivery's stock movements")
            time.sleep(0.2)
        for body in orders:
            _, order = _api_write(stack, "POST", f"api/stores/{stack.store}/orders",
                                       body)
            out["orders"].append({"id": order.get("id"), "mode": body["mode"],
                                  "pickup_code": order.get("pickup_code")})
    except (OSError, ValueError, StackError) as exc:
        out["problems"].append(str(exc))
    return out


def _api_write(stack: StoreStack, method: str, path: str, body: Any) -> tuple[int, Any]:
    token = stack.api_token_file.read_text(encoding="ascii").strip()
    req = urllib.request.Request(
        stack.http_url + path, data=json.dumps(body).encode(), method=method,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return int(resp.status), json.load(resp)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:300]
        raise StackError(f"{method} /{path}: {exc.code} {detail}") from None


def counter_request(stack: StoreStack, action: str, body: dict[str, Any]) -> Any:
    """A POST to the terminal's counter API, as its page sends it; the answer."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{stack.kiosk_port}/api/counter/{action}",
        data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def _stock(stack: StoreStack) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = stack.api(f"api/stores/{stack.store}/stock")["items"]
    return items
