"""What `xiaodian doctor` looks at: the edge config, the ports and who holds them, the agent
(through its tap socket), its database (read-only), the certificate, the broker (one TLS
handshake, nothing sent) and the disk. Every probe is bounded so the whole runs in seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import ssl
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from edge.config import EdgeConfig
from edge.doctor_checks import (
    BrokerFacts,
    CertFacts,
    CommandFacts,
    DeviceFacts,
    Facts,
    PortFacts,
)
from edge.wallclock import _kernel_says_synced
from firmware_bridge import port_holders
from firmware_bridge import tap as tap_proto
from xiaodian.mqtt import MqttSettings

BROKER_TIMEOUT_S = 3.0


def agent_pid(cfg: EdgeConfig) -> int | None:
    try:
        return int(tap_proto.status(tap_proto.tap_path(cfg.edge.data_dir), 1.0)["pid"])
    except (tap_proto.TapError, KeyError, ValueError, TypeError):
        return None


def port_facts(cfg: EdgeConfig) -> tuple[PortFacts, ...]:
    out = []
    ports = [(f.id, str(f.port)) for f in cfg.fridges] + [(s.id, str(s.port))
                                                          for s in cfg.scanners]
    for device, port in ports:
        exists = os.path.exists(port)
        held = tuple((h.pid, h.command) for h in port_holders.holders(port)) if exists else ()
        out.append(PortFacts(device, port, exists, held))
    return tuple(out)


def _db(cfg: EdgeConfig) -> sqlite3.Connection | None:
    path = cfg.edge.db_path
    if not path.exists():
        return None
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    con.execute("PRAGMA busy_timeout=5000")
    return con


def device_facts(cfg: EdgeConfig, con: sqlite3.Connection | None, now: float
                 ) -> tuple[DeviceFacts, ...]:
    out = []
    kinds = {f.id: "fridge" for f in cfg.fridges} | {s.id: "scanner" for s in cfg.scanners}
    for device, kind in kinds.items():
        status: dict[str, Any] | None = None
        age = link = probes = None
        if con is not None:
            try:
                row = con.execute("SELECT updated_wall, status FROM device_status WHERE device=?",
                                  (device,)).fetchone()
                if row:
                    age, status = now - float(row[0]), json.loads(row[1])
                ev = con.execute("SELECT data FROM events WHERE device=? AND type='link' "
                                 "ORDER BY boot DESC, seq DESC LIMIT 1", (device,)).fetchone()
                link = json.loads(ev[0]).get("state") if ev else None
                rd = con.execute("SELECT probes FROM readings WHERE device=? "
                                 "ORDER BY boot DESC, seq DESC LIMIT 1", (device,)).fetchone()
                probes = json.loads(rd[0]) if rd else None
            except sqlite3.Error:
                pass  # reported by the integrity check
        out.append(DeviceFacts(device, kind, status, age, link, probes))
    return tuple(out)


def cert_facts(cert_path: Path, now: float) -> tuple[CertFacts, str | None]:
    """The certificate's validity and its CN (the store id the broker sees)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError) as exc:
        return CertFacts(str(cert_path), None, str(exc)), None
    left = (cert.not_valid_after_utc.timestamp() - now) / 86400
    early = cert.not_valid_before_utc.timestamp() > now
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(cns[0].value) if cns else None
    return CertFacts(str(cert_path), left, not_yet_valid=early), cn


def broker_facts(mqtt: MqttSettings, timeout: float = BROKER_TIMEOUT_S) -> BrokerFacts:
    """One TLS handshake with the store's certificate, and a moment to hear a refusal
    (TLS 1.3 tells a client its certificate was refused only after the handshake). No MQTT
    is spoken: connecting as the store would push the running agent off the broker."""
    def facts(cause: str, detail: str = "") -> BrokerFacts:
        return BrokerFacts(mqtt.host, mqtt.port, cause, detail)

    try:
        ctx = ssl.create_default_context(cafile=str(mqtt.tls.ca))
        ctx.load_cert_chain(str(mqtt.tls.cert), str(mqtt.tls.key))
    except (OSError, ssl.SSLError) as exc:
        return facts("tls", f"cannot load the TLS files: {exc}")
    try:
        raw = socket.create_connection((mqtt.host, mqtt.port), timeout=timeout)
    except socket.gaierror as exc:
        return facts("dns", str(exc))
    except ConnectionRefusedError as exc:
        return facts("refused", str(exc))
    except TimeoutError as exc:
        return facts("timeout", str(exc))
    except OSError as exc:
        return facts("error", str(exc))
    try:
        with ctx.wrap_socket(raw, server_hostname=mqtt.host) as tls:
            tls.settimeout(0.5)
            with contextlib.suppress(TimeoutError):
                tls.recv(1)  # a broker says nothing before CONNECT, unless it refuses us
    except ssl.SSLCertVerificationError as exc:
        code = exc.verify_code
        if code in (18, 19, 20, 21):
            return facts("unknown_ca", exc.verify_message)
        if code == 62:
            return facts("hostname", exc.verify_message)
        if code == 10:
            return facts("server_cert_expired", exc.verify_message)
        return facts("tls", exc.verify_message)
    except ssl.SSLError as exc:
        text = str(exc).lower()
        if any(k in text for k in ("unknown ca", "bad certificate", "certificate required",
                                   "certificate unknown", "certificate revoked")):
            return facts("client_cert_rejected", exc.reason or str(exc))
        return facts("tls", exc.reason or str(exc))
    except TimeoutError:
        return facts("timeout", "TLS handshake timed out")
    except OSError as exc:
        return facts("client_cert_rejected" if isinstance(exc, ConnectionResetError)
                     else "error", str(exc))
    return facts("ok")


def gather(cfg: EdgeConfig, *, offline: bool = False, now: float | None = None) -> Facts:
    now = time.time() if now is None else now
    con = _db(cfg)
    used = None
    check: str | None = None
    if con is not None:
        try:
            rows = con.execute("PRAGMA quick_check").fetchall()
            check = "ok" if rows == [("ok",)] else "; ".join(str(r[0]) for r in rows[:3])
            page = con.execute("PRAGMA page_size").fetchone()[0]
            pages = con.execute("PRAGMA page_count").fetchone()[0]
            free = con.execute("PRAGMA freelist_count").fetchone()[0]
            used = (pages - free) * page + sum(
                p.stat().st_size for p in (Path(f"{cfg.edge.db_path}-wal"),
                                           Path(f"{cfg.edge.db_path}-shm")) if p.exists())
        except sqlite3.Error as exc:
            check = str(exc)
    devices = device_facts(cfg, con, now)
    if con is not None:
        con.close()
    cert, cn = cert_facts(cfg.mqtt.tls.cert, now)
    replay_dir = cfg.replay_db_path.parent
    data_dir = cfg.edge.data_dir if cfg.edge.data_dir.exists() else Path("/")
    try:
        synced = _kernel_says_synced()
    except OSError:
        synced = False
    return Facts(
        store_id=cfg.edge.store_id,
        agent_pid=agent_pid(cfg),
        ports=port_facts(cfg),
        devices=devices,
        clock_synced=synced,
        cert=cert,
        broker=None if offline else broker_facts(cfg.mqtt),
        disk_used=used,
        disk_budget=int(cfg.edge.disk_budget_mb * 1_000_000),
        disk_free=shutil.disk_usage(data_dir).free,
        db_check=check,
        commands=CommandFacts(
            configured=cfg.commands is not None,
            key_ids=tuple(k.id for k in cfg.commands.keys) if cfg.commands else (),
            replay_dir_writable=os.access(replay_dir if replay_dir.exists() else data_dir,
                                          os.W_OK),
            cert_cn=cn),
        skew_s=cfg.commands.skew_s if cfg.commands else 120,
    )
