"""Two stores as the technician's fleet pages see them: store-001's day (haccp_day) with
hellos, four weeks of hourly vitals and a halted firmware rollout; store-002's terminal gone
for hours. Both belong to the technician TECH. Used by the fleet page, inventory and
rollout tests."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from haccp_day import STORE, T0, fill_day

from cloud_gateway import accounts, commands, rollouts, stores
from cloud_gateway.db import Database
from cloud_gateway.ingest_core import ingest
from xiaodian.wire.commands import key_id_for, sign_command
from xiaodian.wire.health import HEALTH_DEVICE
from xiaodian.wire.payloads import batch_payload, event_record, reading_record, state_payload

NOW = T0 + 86_400 + 60  # a minute after fill_day's last readings
STORE2 = "store-002"
H = 3600
DATA = ["tech", "English", "fridge-1", "fridge-2", "fridge-9", "store-002"]  # names, switch
TECH, PASSWORD = "tech", "tech-password-1234"  # the technician of both stores


def _vitals(fridge: str, hour: int, duty: float, per_10k: float | None) -> dict[str, Any]:
    return {"fridge": fridge, "hour": hour, "readings": 60, "compressor_known_s": 3600.0,
            "compressor_on_s": round(3600 * duty, 1), "duty": duty, "compressor_starts": 3,
            "defrosts": ([{"duration_s": 1500.0 + hour % 7 * 60, "ended_on": "timeout"}]
                         if hour % 6 == 0 else []),
            "defrost_s": 1500.0 if hour % 6 == 0 else 0.0, "door_openings": 4,
            "door_open_s": 80.0, "pulldowns_s": [240.0 + (hour % 24) * 5],
            "pulldown_unrecovered": 0, "reboots": [], "probes": [], "mains_lost": 0,
            "mains_off_s": 0.0, "firmware": "0.1.0",
            "link": None if per_10k is None else {"frames": 1000, "errors": 1, "missed": 0,
                                                  "reconnects": 0, "per_10k": per_10k}}


def fill_fleet(db: Database) -> None:
    fill_day(db)  # store-001: fridge-1 and fridge-2 (an open critical alert), a day of data
    hello = {"protocol": [1, 0], "firmware": [0, 1, 0], "reset_cause": "watchdog",
             "capabilities": 0, "probe_count": 2, "lane_count": 0, "boot_count": 3,
             "device_id": "x"}
    for i, device in enumerate(("fridge-1", "fridge-2")):
        ingest(db, f"xd/v1/{STORE}/events", batch_payload("events", STORE, device, 1, [
            event_record(900 + i, "hello", 1, 5, T0 + 60, True, hello)]), "w", T0 + 61)
    last = int(NOW // H) - 1
    for device, start, per_10k in (("fridge-1", last - 28 * 24, 2.0), ("fridge-2", last - 30,
                                                                         350.0)):
        records = [event_record(i + 1, "vitals", None, None, h * H + 1860.0, True,
                                _vitals(device, h, round(0.35 + (h - start) / 3000, 4),
                                        per_10k))
                   for i, h in enumerate(range(start, last + 1))]
        for i in range(0, len(records), 200):  # within a message's 256 KiB
            out = ingest(db, f"xd/v1/{STORE}/health", batch_payload(
                "events", STORE, HEALTH_DEVICE, 10 + int(device[-1]), records[i:i + 200]),
                "w", NOW - 30)
            assert out.action == "stored", out.reason
    # store-002: its terminal went away hours ago.
    ingest(db, f"xd/v1/{STORE2}/telemetry", batch_payload("readings", STORE2, "fridge-9", 1, [
        reading_record(1, 1, 1000, NOW - 5 * H, True, [(0, "ok", 3.0), (1, "ok", 3.5)])]),
        "w", NOW - 5 * H)
    ingest(db, f"xd/v1/{STORE2}/state", state_payload(STORE2, False, 1, NOW - 5 * H, "0.1",
                                                       ["fridge-9"]), "w", NOW - 5 * H)
    fill_rollout(db)
    with db.transaction() as conn:
        stores.set_profile(conn, STORE, NOW, name="和平路店", tz="Asia/Shanghai")
        stores.set_profile(conn, STORE2, NOW, name="长江路店", tz="Asia/Shanghai")
        accounts.add_user(conn, TECH, "technician", [STORE, STORE2], PASSWORD, 0.0)


class SigningIssuer:
    """Signs and records `update` commands as the cloud's Commander does, without a broker
    (the page reads the database; the e2e test test_fw_cloud_rollout.py sends them)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.key = Ed25519PrivateKey.generate()

    def issue(self, store: str, action: str, params: dict[str, Any], now: float | None = None,
              *, issued_by: str = "") -> str:
        signed = sign_command(self.key, key_id_for(self.key.public_key()), target=store,
                              action=action, params=params, issued_at=int(now or NOW))
        commands.insert_command(self.db, signed, issued_by)
        return signed.command.command_id


def fill_rollout(db: Database) -> None:
    """A rollout of 1.1.0 to fridge-1 at both stores: the canary (store-001) rolled it back,
    so it halted by itself and store-002 was never sent it."""
    sha = "ab" * 32
    art = rollouts.Artefact("firmware", "fridge-1", f"https://cloud.example:8443/artefacts/{sha}",
                            sha, 61_494, "1.1.0")
    rid = rollouts.create(db, art, [STORE, STORE2], NOW - 600, share=0.5, created_by="tech")
    issuer = SigningIssuer(db)
    assert rollouts.tick(db, issuer, rid, NOW - 600).start == (STORE,)
    (cid,) = [r["command_id"] for r in rollouts.store_rows(db, rid)]
    for i, (state, pct) in enumerate((("downloading", 0), ("downloaded", 100),
                                      ("updating", 50), ("done", 100))):
        data = {"command": cid, "kind": "firmware", "state": state, "percent": pct,
                "sha256": sha, "version": "1.1.0"}
        if state == "done":
            data |= {"result": "rolled_back", "ok": False}
        out = ingest(db, f"xd/v1/{STORE}/events", batch_payload("events", STORE, "fridge-1", 1, [
            event_record(950 + i, "update", None, None, NOW - 500 + i, True, data)]),
            "w", NOW - 400)
        assert out.action == "stored", out.reason
    assert rollouts.tick(db, issuer, rid, NOW - 300).state.value == "halted"
