"""`xiaodian doctor`'s judgement: what was found on the terminal in, one verdict per check out.

Pure: `edge/doctor_probe.py` does the looking (ports, /proc, TLS, SQLite, the agent's tap)
and hands over `Facts`; nothing here touches the machine or the clock. Each verdict says
what is wrong and what to do, as i18n Messages the command renders for the technician.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from edge.status_text import RESET_TEXT, code_text
from xiaodian.i18n import N_, Message

Level = Literal["ok", "warning", "failure"]
EXIT = {"ok": 0, "warning": 1, "failure": 2}
CERT_WARN_DAYS = 30
STATUS_STALE_S = 30.0  # the agent reports every 5 s
ERROR_RATE_WARN = 0.01  # bad frames per frame received: 1 in 100 is a noisy line
DISK_WARN = 0.9


@dataclass(frozen=True)
class Verdict:
    check: str  # stable id: "port:fridge-1", "broker", ...
    level: Level
    message: Message
    fix: Message | None = None

    def as_dict(self, render: Any) -> dict[str, Any]:
        return {"check": self.check, "level": self.level, "message": render(self.message),
                "fix": None if self.fix is None else render(self.fix)}


@dataclass(frozen=True)
class PortFacts:
    device: str
    port: str
    exists: bool
    holders: tuple[tuple[int, str], ...] = ()  # (pid, command line), the agent included


@dataclass(frozen=True)
class DeviceFacts:
    device: str
    kind: str  # fridge | scanner
    status: dict[str, Any] | None  # the agent's last status report (device_status)
    status_age_s: float | None
    link_state: str | None  # last link event: up | down
    probes: list[list[Any]] | None  # latest reading: [index, status, celsius]


@dataclass(frozen=True)
class CertFacts:
    path: str
    days_left: float | None  # None: could not be read
    error: str = ""
    not_yet_valid: bool = False


@dataclass(frozen=True)
class BrokerFacts:
    host: str
    port: int
    # ok | dns | refused | timeout | unknown_ca | hostname | server_cert_expired |
    # client_cert_rejected | tls | error
    cause: str
    detail: str = ""


@dataclass(frozen=True)
class CommandFacts:
    configured: bool
    key_ids: tuple[str, ...] = ()
    replay_dir_writable: bool = True
    cert_cn: str | None = None  # the client certificate's CN: the broker routes by it


@dataclass(frozen=True)
class Facts:
    store_id: str
    agent_pid: int | None
    ports: tuple[PortFacts, ...]
    devices: tuple[DeviceFacts, ...]
    clock_synced: bool
    cert: CertFacts
    broker: BrokerFacts | None  # None: not checked (--offline)
    disk_used: int | None
    disk_budget: int
    disk_free: int
    db_check: str | None  # "ok", SQLite's complaint, or None: no database yet
    commands: CommandFacts
    skew_s: int = 120


def worst(verdicts: list[Verdict]) -> Level:
    levels: list[Level] = ["ok", "warning", "failure"]
    return max((v.level for v in verdicts), key=levels.index, default="ok")


def diagnose(f: Facts) -> list[Verdict]:
    out = [_agent(f)]
    out += [_port(p, f.agent_pid) for p in f.ports]
    out += [_link(d, f.agent_pid) for d in f.devices]
    out += [v for d in f.devices if d.kind == "fridge" for v in _device(d)]
    out.append(_clock(f))
    out.append(_cert(f.cert))
    if f.broker is not None:
        out.append(_broker(f.broker))
    out.append(_disk(f))
    out.append(_database(f.db_check))
    out.append(_commands(f))
    return out


def _agent(f: Facts) -> Verdict:
    if f.agent_pid is None:
        return Verdict("agent", "failure", Message(N_("The edge agent is not running.")),
                       Message(N_("Start it: xiaodian edge run --config FILE (or its service),"
                                  " then run doctor again.")))
    return Verdict("agent", "ok", Message(N_("The edge agent is running (pid %(pid)s)."),
                                          {"pid": f.agent_pid}))


def _port(p: PortFacts, agent: int | None) -> Verdict:
    check = f"port:{p.device}"
    if not p.exists:
        return Verdict(check, "failure",
                       Message(N_("%(device)s: port %(port)s is missing."),
                               {"device": p.device, "port": p.port}),
                       Message(N_("Check the USB-serial cable and adapter, and the port name"
                                  " in the edge config.")))
    others = [(pid, cmd) for pid, cmd in p.holders if pid != agent]
    if others:
        pid, cmd = others[0]
        return Verdict(check, "failure",
                       Message(N_("%(device)s: port %(port)s is open in another process, pid"
                                  " %(pid)s (%(command)s); it takes bytes from the agent."),
                               {"device": p.device, "port": p.port, "pid": pid, "command": cmd}),
                       Message(N_("Stop that process. To watch the line use xiaodian serial"
                                  " sniff --config FILE DEVICE, which reads through the"
                                  " agent.")))
    return Verdict(check, "ok", Message(N_("%(device)s: port %(port)s is present."),
                                        {"device": p.device, "port": p.port}))


def _link(d: DeviceFacts, agent: int | None) -> Verdict:
    check = f"link:{d.device}"
    s = d.status or {}
    who = {"device": d.device}
    if agent is None:  # what the database says is history, not the link now
        return Verdict(check, "warning",
                       Message(N_("%(device)s: link not checked: the agent is not running."),
                               who))
    if d.status_age_s is None or d.status_age_s > STATUS_STALE_S:
        return Verdict(check, "failure",
                       Message(N_("%(device)s: the agent has not reported this link lately."),
                               who),
                       Message(N_("The agent may be stuck: look at its log, restart it.")))
    if s.get("stalled"):
        return Verdict(check, "failure", Message(N_("%(device)s: the serial reader is stuck."),
                                                 who),
                       Message(N_("Restart the agent and look at its log.")))
    if d.link_state != "up":
        err = str(s.get("last_error") or "")
        return Verdict(check, "failure",
                       Message(N_("%(device)s: the link is down (%(error)s)."),
                               {**who, "error": err or "-"}),
                       Message(N_("Check the cable and the controller's power.")))
    if d.kind == "fridge" and not s.get("hello"):
        return Verdict(check, "failure",
                       Message(N_("%(device)s: the port is open but the controller does not"
                                  " answer."), who),
                       Message(N_("Check the controller's power, the baud rate and that the"
                                  " cable reaches the right controller.")))
    bad = sum(int(s.get(k) or 0) for k in ("crc_errors", "cobs_errors", "length_errors"))
    frames = int(s.get("frames_ok") or 0)
    if d.kind == "fridge" and bad and bad / max(1, frames + bad) > ERROR_RATE_WARN:
        return Verdict(check, "warning",
                       Message(N_("%(device)s: a noisy line: %(bad)s bad frames in %(total)s."),
                               {**who, "bad": bad, "total": frames + bad}),
                       Message(N_("Check the cable, its length and grounding, and keep it away"
                                  " from the compressor's power lead.")))
    return Verdict(check, "ok",
                   Message(N_("%(device)s: link up, %(frames)s frames, %(bad)s bad."),
                           {**who, "frames": frames if d.kind == "fridge" else s.get("lines", 0),
                            "bad": bad}))


def _device(d: DeviceFacts) -> list[Verdict]:
    s = d.status or {}
    hello = s.get("hello") or {}
    out: list[Verdict] = []
    if hello:
        fw = ".".join(str(x) for x in hello.get("firmware", ()))
        cause = str(hello.get("reset_cause", "unknown"))
        params = {"device": d.device, "firmware": fw, "cause": code_text(RESET_TEXT, cause),
                  "boots": hello.get("boot_count", "?")}
        if cause in ("watchdog", "brownout"):
            out.append(Verdict(f"firmware:{d.device}", "warning",
                               Message(N_("%(device)s: firmware %(firmware)s, last restart by"
                                          " %(cause)s (boot %(boots)s)."), params),
                               Message(N_("A watchdog or brownout restart: check the"
                                          " controller's supply; if it repeats, replace the"
                                          " controller."))))
        else:
            out.append(Verdict(f"firmware:{d.device}", "ok",
                               Message(N_("%(device)s: firmware %(firmware)s, last restart by"
                                          " %(cause)s (boot %(boots)s)."), params)))
    if d.probes is None:
        out.append(Verdict(f"probes:{d.device}", "warning",
                           Message(N_("%(device)s: no temperature reading stored yet."),
                                   {"device": d.device}),
                           Message(N_("Wait a minute for the first reading, then check"
                                      " again."))))
        return out
    bad = [f"{p[0]}:{p[1]}" for p in d.probes if p[1] != "ok"]
    if bad:
        level: Level = "failure" if len(bad) == len(d.probes) else "warning"
        out.append(Verdict(f"probes:{d.device}", level,
                           Message(N_("%(device)s: probe trouble: %(probes)s."),
                                   {"device": d.device, "probes": ", ".join(bad)}),
                           Message(N_("Check the probe's plug and cable; replace the probe if"
                                      " it stays missing or reads 85 °C."))))
    else:
        out.append(Verdict(f"probes:{d.device}", "ok",
                           Message(N_("%(device)s: %(n)s probes read fine."),
                                   {"device": d.device, "n": len(d.probes)})))
    return out


def _clock(f: Facts) -> Verdict:
    if f.clock_synced:
        return Verdict("clock", "ok", Message(N_("The clock is synchronised (NTP).")))
    return Verdict("clock", "warning", Message(N_("The clock is not synchronised.")),
                   Message(N_("Enable NTP (timedatectl set-ntp true). Records are marked as"
                              " unsynchronised, and signed commands are refused when the clock"
                              " is off by more than %(skew)s s."), {"skew": f.skew_s}))


def _cert(c: CertFacts) -> Verdict:
    if c.days_left is None:
        return Verdict("certificate", "failure",
                       Message(N_("Cannot read the store certificate %(path)s: %(error)s."),
                               {"path": c.path, "error": c.error}),
                       Message(N_("Install the store's certificate and key from the"
                                  " programme (xiaodian pki).")))
    days = int(c.days_left)
    if c.not_yet_valid:
        return Verdict("certificate", "failure",
                       Message(N_("The store certificate is not valid yet.")),
                       Message(N_("Check the terminal's date and time.")))
    if c.days_left <= 0:
        return Verdict("certificate", "failure",
                       Message(N_("The store certificate has expired.")),
                       Message(N_("Ask for a new store certificate (xiaodian pki) and install"
                                  " it.")))
    if days < CERT_WARN_DAYS:
        return Verdict("certificate", "warning",
                       Message(N_("The store certificate expires in %(days)s days."),
                               {"days": days}),
                       Message(N_("Ask for a new store certificate before it expires.")))
    return Verdict("certificate", "ok",
                   Message(N_("The store certificate is valid for %(days)s more days."),
                           {"days": days}))


_BROKER_CAUSES: dict[str, tuple[str, str]] = {
    "dns": (N_("Cannot reach the broker %(host)s:%(port)s: the name does not resolve."),
            N_("Check the host name in [mqtt] and the terminal's DNS.")),
    "refused": (N_("Cannot reach the broker %(host)s:%(port)s: connection refused."),
                N_("Check the port in [mqtt]; is the broker running?")),
    "timeout": (N_("Cannot reach the broker %(host)s:%(port)s: no answer."),
                N_("Check the shop's internet connection and firewall.")),
    "unknown_ca": (N_("The broker %(host)s:%(port)s is not signed by the CA in [mqtt.tls] ca."),
                   N_("Install the programme's CA file as ca; a different CA means the wrong"
                      " broker or a wrong file.")),
    "hostname": (N_("The broker's certificate does not name %(host)s."),
                 N_("Use the host name the broker's certificate was made for.")),
    "server_cert_expired": (N_("The broker's certificate has expired."),
                            N_("The operator must renew the broker's certificate.")),
    "client_cert_rejected": (N_("The broker refused the store certificate."),
                             N_("The store certificate is not from the programme's CA or was"
                                " revoked: install the right certificate and key.")),
    "tls": (N_("TLS with the broker %(host)s:%(port)s failed: %(detail)s."),
            N_("Check the files in [mqtt.tls] and the terminal's date.")),
    "error": (N_("Cannot reach the broker %(host)s:%(port)s: %(detail)s."),
              N_("Check [mqtt] in the edge config and the network.")),
}


def _broker(b: BrokerFacts) -> Verdict:
    params = {"host": b.host, "port": b.port, "detail": b.detail}
    if b.cause == "ok":
        return Verdict("broker", "ok",
                       Message(N_("The broker %(host)s:%(port)s accepts the store certificate."),
                               params))
    text, fix = _BROKER_CAUSES.get(b.cause, _BROKER_CAUSES["error"])
    return Verdict("broker", "failure", Message(text, params), Message(fix))


def _disk(f: Facts) -> Verdict:
    mb = 1_000_000
    used = f.disk_used or 0
    params = {"used": round(used / mb, 1), "budget": round(f.disk_budget / mb, 1),
              "free": round(f.disk_free / mb, 1)}
    if f.disk_free < max(0, f.disk_budget - used):
        return Verdict("disk", "failure",
                       Message(N_("The disk has %(free)s MB free, less than the database may"
                                  " still need (%(used)s of %(budget)s MB used)."), params),
                       Message(N_("Free space on the terminal, or lower disk_budget_mb in"
                                  " [edge].")))
    if used > DISK_WARN * f.disk_budget:
        return Verdict("disk", "warning",
                       Message(N_("The database uses %(used)s of its %(budget)s MB budget."),
                               params),
                       Message(N_("The cloud has not confirmed records for a long time:"
                                  " check the broker line; old readings are being compacted.")))
    return Verdict("disk", "ok",
                   Message(N_("The database uses %(used)s of %(budget)s MB; %(free)s MB free."),
                           params))


def _database(check: str | None) -> Verdict:
    if check is None:
        return Verdict("database", "warning", Message(N_("There is no database yet.")),
                       Message(N_("The agent makes it when it starts.")))
    if check != "ok":
        return Verdict("database", "failure",
                       Message(N_("The database is damaged: %(problem)s."), {"problem": check}),
                       Message(N_("Restart the agent: it moves a damaged database aside and"
                                  " starts a new one (the fridges send again what the cloud"
                                  " lacks).")))
    return Verdict("database", "ok", Message(N_("The database passes its integrity check.")))


def _commands(f: Facts) -> Verdict:
    c = f.commands
    if not c.configured:
        return Verdict("commands", "warning",
                       Message(N_("This terminal accepts no signed commands from the cloud:"
                                  " the edge config has no [commands] table.")),
                       Message(N_("Add [commands] with the cloud's command key (keys = [{id ="
                                  " ..., public_key = ...}] from xiaodian pki command-key),"
                                  " then restart the agent.")))
    if c.cert_cn is not None and c.cert_cn != f.store_id:
        return Verdict("commands", "failure",
                       Message(N_("Commands cannot arrive: the certificate is for %(cn)s, the"
                                  " config says store %(store)s."),
                               {"cn": c.cert_cn, "store": f.store_id}),
                       Message(N_("Use this store's own certificate, or fix store_id.")))
    if not c.replay_dir_writable:
        return Verdict("commands", "failure",
                       Message(N_("Commands would be refused: the replay memory cannot be"
                                  " written.")),
                       Message(N_("Make the data directory writable for the agent.")))
    if not f.clock_synced:
        return Verdict("commands", "warning",
                       Message(N_("Signed commands are accepted (keys %(keys)s) if the clock is"
                                  " right; it is not synchronised."),
                               {"keys": ", ".join(c.key_ids)}),
                       Message(N_("Enable NTP.")))
    return Verdict("commands", "ok",
                   Message(N_("Signed commands are accepted from keys %(keys)s."),
                           {"keys": ", ".join(c.key_ids)}))
