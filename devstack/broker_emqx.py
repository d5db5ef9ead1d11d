"""An EMQX 5 configuration with the same identities, client-id binding, ACL and worker
groups as the Mosquitto one (`devstack.broker_config`): `emqx.conf` (HOCON) and `acl.conf`
(EMQX's file authorization, Erlang terms), both from the PKI directory; the ACL from the
same rules (`devstack.broker_rules.RULES`). docs/scale.md says how a cluster uses them.

EMQX is not run here; tests/security/test_broker_emqx.py parses both files and evaluates
acl.conf against the real Mosquitto, case by case.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from pathlib import Path

from xiaodian.pki.ca import DevPki
from xiaodian.pki.names import check_name

from .broker_rules import OWN, RULES, Scope

EMQX_CONF_NAME = "emqx.conf"
EMQX_ACL_NAME = "acl.conf"
# EMQX 5 topic placeholders (emqx_authz_rule: ${username}, ${clientid}; EMQX 4 had %u, %c).
USERNAME = "${username}"


def _erl_string(text: str) -> str:
    """An Erlang string literal; names and topics are ASCII without quotes or backslashes,
    json.dumps escapes anything else the way Erlang reads it."""
    return json.dumps(text, ensure_ascii=True)


def _erl_list(items: Sequence[str]) -> str:
    return "[\n  " + ",\n  ".join(_erl_string(i) for i in items) + "\n]"


def acl_conf(services: Sequence[str]) -> str:
    """EMQX's acl.conf: first match wins, then `{deny, all}` (and `no_match = deny`).

    Own-subtree rules use `${username}`, which `peer_cert_as_username = cn` makes the
    certificate CN, as Mosquitto's `%u`. A subscription `$share/<group>/<filter>` reaches
    these rules as `<filter>` (EMQX strips the prefix), so services need no group rule.
    """
    lines = [
        "%% Written by devstack.broker_emqx. Username = client id = certificate CN",
        "%% (peer_cert_as_username/clientid = cn). First matching rule decides.",
        "%% Stores (any certificate): confined to their own subtree.",
    ]
    for action in ("publish", "subscribe"):
        topics = [r.topic.replace(OWN, USERNAME) for r in RULES
                  if r.scope is Scope.EVERYONE and r.action == action]
        lines.append(f"{{allow, all, {action}, {_erl_list(topics)}}}.")
    for name in services:
        check_name(name)
        lines.append(f"%% Cloud-side service {name}.")
        for action in ("publish", "subscribe"):
            topics = [r.topic for r in RULES if r.scope is Scope.SERVICES and r.action == action]
            who = f"{{user, {_erl_string(name)}}}"
            lines.append(f"{{allow, {who}, {action}, {_erl_list(topics)}}}.")
    lines += ["%% Everything else.", "{deny, all}."]
    return "\n".join(lines) + "\n"


def _hocon_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=True)  # a HOCON quoted string is a JSON string


def emqx_conf(pki: DevPki, port: int, bind: str, acl_path: Path) -> str:
    """The settings xiaodian needs on every EMQX node (include it from the node's own
    etc/emqx.conf, which keeps `node` and `cluster`)."""
    files = {"cacertfile": pki.ca, "certfile": pki.server_cert, "keyfile": pki.server_key}
    ssl_options = "\n".join(f"    {k} = {_hocon_string(str(v))}" for k, v in files.items())
    return f"""# Written by `xiaodian broker config --flavour emqx` (devstack.broker_emqx).
# Include it at the end of each node's etc/emqx.conf; regenerate after issuing a service.

# TLS only: EMQX's default plaintext and WebSocket listeners are switched off.
listeners.tcp.default.enable = false
listeners.ws.default.enable = false
listeners.wss.default.enable = false
listeners.ssl.default {{
  enable = true
  bind = {_hocon_string(f"{bind}:{port}" if ":" not in bind else f"[{bind}]:{port}")}
  ssl_options {{
{ssl_options}
    # A client certificate from the project's CA is required: no anonymous client.
    verify = verify_peer
    fail_if_no_peer_cert = true
    versions = ["tlsv1.3", "tlsv1.2"]
  }}
}}

mqtt {{
  # The certificate CN is the username AND the client id, whatever the client sends, so
  # no certificate can take over another store's or a worker's session.
  peer_cert_as_username = cn
  peer_cert_as_clientid = cn
  # As Mosquitto: 512 KiB packets at most, 100000 queued messages per offline session.
  max_packet_size = 512KB
  max_mqueue_len = 100000
  # The ingest workers' groups ($share/ingest/...); round_robin is EMQX's default strategy.
  shared_subscription = true
}}

# No authenticator: the TLS listener has already verified the client certificate.
authentication = []
authorization {{
  no_match = deny
  deny_action = ignore
  sources = [
    {{
      type = file
      enable = true
      path = {_hocon_string(str(acl_path))}
    }}
  ]
}}
"""


def write_emqx_config(directory: Path, pki: DevPki, port: int, *, bind: str = "127.0.0.1") -> Path:
    """Write `emqx.conf` and `acl.conf` into `directory`; return emqx.conf's path.

    acl.conf names the CA's services (regenerate after `pki issue-service`); stores need
    no entry. Revocation: EMQX checks CRLs only from a certificate's distribution point,
    which this CA does not write, so a revoked store must also be banned (docs/scale.md).
    """
    if not 1 <= port <= 65535:
        raise ValueError("port: must be between 1 and 65535")
    try:
        ipaddress.ip_address(bind)
    except ValueError:
        raise ValueError(f"bind: {bind!r} is not an IP address") from None
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    acl_path = directory / EMQX_ACL_NAME
    acl_path.write_text(acl_conf(pki.services), encoding="utf-8")
    conf_path = directory / EMQX_CONF_NAME
    conf_path.write_text(emqx_conf(pki, port, bind, acl_path), encoding="utf-8")
    return conf_path
