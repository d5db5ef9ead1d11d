"""The private Mosquitto broker's files: mosquitto.conf, the ACL and the subscribe rules.

The ACL and the subscribe rules are rendered from `devstack.broker_rules.RULES`, as is
EMQX's acl.conf (`devstack.broker_emqx`).

Split out of `devstack.broker` (which re-exports every name here and keeps the process
control): what a store and a cloud-side service may publish and subscribe to, written from
the PKI directory. docs/security.md quotes `acl_text` and `subscribe_rules` verbatim
(tests/security/test_docs_security.py).
"""

from __future__ import annotations

import glob
import ipaddress
import json
import os
from collections.abc import Sequence
from pathlib import Path

from xiaodian.pki import list_certificates
from xiaodian.pki.ca import DevPki
from xiaodian.pki.names import check_name

from .broker_rules import OWN, RULES, SHARE_PREFIX, Scope, rule_topic
from .process import StackError

_ACCESS = {"publish": "write", "subscribe": "read"}

CONF_NAME = "mosquitto.conf"
ACL_NAME = "acl"
SUBSCRIBE_RULES_NAME = "subscribe-rules.json"
LOG_NAME = "mosquitto.log"
DATA_DIR = "data"
# Where Debian/Ubuntu and a source install put the dynamic-security plugin.
DYNSEC_GLOBS: tuple[str, ...] = (
    "/usr/lib/*/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/*mosquitto_dynamic_security.so",
)

class BrokerError(StackError):
    """The broker could not be found, configured or started; the message says why."""


def find_dynsec_plugin() -> str:
    """Path of Mosquitto's dynamic-security plugin, or a BrokerError naming the package."""
    for pattern in DYNSEC_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    raise BrokerError(
        "mosquitto_dynamic_security.so not found (looked for "
        + ", ".join(DYNSEC_GLOBS)
        + "): it comes with the Debian/Ubuntu package 'mosquitto' 2.0 or later"
    )


def acl_text(services: Sequence[str]) -> str:
    """The Mosquitto ACL file, rendered from `broker_rules.RULES`: every certificate's own
    subtree by pattern (%u = its CN), then one block per cloud-side service.

    Publishing is `write`; subscribing is `read`, which Mosquitto checks on each delivery
    against the real topic (so a service's shared groups need no line of their own).
    """
    lines = [
        "# Written by devstack.broker. Usernames are certificate CNs (= client ids).",
        "# Stores: confined to their own subtree. This file never checks a SUBSCRIBE",
        "# (Mosquitto 2.0), only each delivery; subscribe-rules.json decides those.",
    ]
    lines += [
        f"pattern {_ACCESS[r.action]} {r.topic.replace(OWN, '%u')}"
        for r in RULES if r.scope is Scope.EVERYONE
    ]
    for name in services:
        check_name(name)
        lines += ["", f"user {name}"]
        lines += [f"topic {_ACCESS[r.action]} {r.topic}"
                  for r in RULES if r.scope is Scope.SERVICES]
    return "\n".join(lines) + "\n"


def subscribe_rules(stores: Sequence[str], services: Sequence[str]) -> dict[str, object]:
    """The dynamic-security plugin's configuration: who may SUBSCRIBE to what.

    Mosquitto 2.0's ACL file never checks a SUBSCRIBE (only each delivery), so without this
    a store could join the cloud's shared group `$share/ingest/xd/v1/+/telemetry`: the broker
    would hand it its turn of every store's messages and then drop them on the read ACL. The
    plugin runs before the ACL file and decides every subscription of the names it lists,
    from `broker_rules.RULES`: a store only its own downlink topics (also as a shared
    group of its own, as EMQX would allow), a service `xd/v1/...` and shared groups on it.
    Publishing and delivery it leaves to the ACL file (no publish rule, default deny ->
    the plugin defers). A name it does not list (a store certified after this file was
    written) falls through to the ACL file, which allows the SUBSCRIBE: regenerate and
    restart the broker after enrolling a store.
    """

    def rule(kind: str, topic: str, allow: bool = True, priority: int = 0) -> dict[str, object]:
        return {"acltype": kind, "topic": topic, "allow": allow, "priority": priority}

    def subscriptions(scope: Scope, cn: str) -> list[str]:
        return [rule_topic(r, cn) for r in RULES if r.scope is scope and r.action == "subscribe"]

    # A shared group is judged on its real topic (broker_rules): `$share/+/` + each filter.
    service_acls = [rule("subscribePattern", t) for t in subscriptions(Scope.SERVICES, "")]
    service_acls += [rule("subscribePattern", SHARE_PREFIX + "+/" + t)
                     for t in subscriptions(Scope.SERVICES, "")]
    # Checked last: an explicit refusal, since "no rule" would defer to the ACL file, which
    # allows every SUBSCRIBE (a service could subscribe to `#` and get its own reads).
    refuse_rest = rule("subscribePattern", "#", allow=False, priority=-1)
    service_acls.append(refuse_rest)
    roles: list[dict[str, object]] = [{"rolename": "service", "acls": service_acls}]
    clients: list[dict[str, object]] = []
    for name in services:
        clients.append({"username": check_name(name), "roles": [{"rolename": "service"}]})
    for name in stores:
        check_name(name)
        own = subscriptions(Scope.EVERYONE, name)
        acls = [rule("subscribeLiteral", t) for t in own]
        acls += [rule("subscribePattern", SHARE_PREFIX + "+/" + t) for t in own]
        acls.append(refuse_rest)
        roles.append({"rolename": f"store-{name}", "acls": acls})
        clients.append({"username": name, "roles": [{"rolename": f"store-{name}"}]})
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": clients,
        "groups": [],
        "roles": roles,
    }


def _stores_of(pki: DevPki) -> list[str]:
    """Every store the CA ever certified (also those enrolled by CSR, whose key is elsewhere)."""
    names = list(pki.stores)
    try:
        issued = list_certificates(pki.ca.parent)
    except (OSError, ValueError):  # a PKI without an index: only what DevPki names
        return names
    for item in issued:
        if item.kind == "store" and item.name not in names:
            names.append(item.name)
    return names


def write_broker_config(
    directory: Path,
    pki: DevPki,
    port: int,
    *,
    persistence: bool = True,
    bind: str = "127.0.0.1",
    dev_plaintext_port: int | None = None,
) -> Path:
    """Write `mosquitto.conf`, its ACL and its subscribe rules into `directory`; return the
    config's path.

    The broker's log, persistence database, ACL and subscribe rules (for every store and
    service in the CA's index: regenerate after enrolling one) all live in `directory`. The TLS
    listener binds `bind` (loopback by default; a store-facing broker needs its LAN or
    public address). When the PKI has a CRL, the broker checks client certificates
    against it; Mosquitto 2.0.11 reads the CRL only at start-up, so a revocation takes
    effect at the next restart (see docs/security.md).

    `dev_plaintext_port` adds a plaintext listener on 127.0.0.1 for local development only:
    there any local process can claim any identity, so it is never on by default.
    """
    for option, number in (("port", port), ("dev_plaintext_port", dev_plaintext_port)):
        if number is not None and not 1 <= number <= 65535:
            raise ValueError(f"{option}: must be between 1 and 65535")
    if dev_plaintext_port == port:
        raise ValueError("dev_plaintext_port: must differ from port")
    try:
        ipaddress.ip_address(bind)
    except ValueError:
        raise ValueError(f"bind: {bind!r} is not an IP address") from None
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir = directory / DATA_DIR
    data_dir.mkdir(mode=0o700, exist_ok=True)
    acl_path = directory / ACL_NAME
    acl_path.write_text(acl_text(pki.services), encoding="utf-8")
    rules_path = directory / SUBSCRIBE_RULES_NAME
    rules = subscribe_rules(_stores_of(pki), pki.services)
    rules_path.write_text(json.dumps(rules, indent=1) + "\n", encoding="utf-8")
    plugin = find_dynsec_plugin()
    paths = {
        "acl_file": acl_path,
        "plugin": Path(plugin),
        "plugin_opt_config_file": rules_path,
        "persistence_location": data_dir,
        "log_dest file": directory / LOG_NAME,
        "cafile": pki.ca,
        "certfile": pki.server_cert,
        "keyfile": pki.server_key,
    }
    if pki.crl is not None:
        paths["crlfile"] = pki.crl
    for key, value in paths.items():
        # Mosquitto splits option values at whitespace; refuse rather than misconfigure.
        if any(c.isspace() for c in str(value)):
            raise ValueError(f"{key}: path must not contain whitespace: {value}")

    lines = [
        "# Written by devstack.broker.write_broker_config; regenerated at every start.",
    ]
    if os.geteuid() == 0:
        # Started as root, Mosquitto 2.0 switches to the `mosquitto` user (the default of
        # `user`) before it opens the log, certificates and ACL, and that user cannot read
        # our 0600 keys or enter our 0700 directories. `user root` keeps it as root.
        # Not started as root, it never changes user, so the line is left out.
        lines.append("user root")
    lines += [
        "per_listener_settings false",
        # The dev plaintext listener needs self-declared usernames; TLS clients always get
        # their certificate's CN whatever this says (require_certificate).
        f"allow_anonymous {'true' if dev_plaintext_port is not None else 'false'}",
        f"acl_file {acl_path}",
        # Asked first, it decides every SUBSCRIBE of a listed name (subscribe_rules).
        f"plugin {plugin}",
        f"plugin_opt_config_file {rules_path}",
        "",
        f"persistence {'true' if persistence else 'false'}",
        f"persistence_location {data_dir}",
        # The default (1800 s) would lose up to half an hour of queued orders if the broker
        # crashed; SIGTERM always saves, this bounds the loss on SIGKILL or power failure.
        "autosave_interval 60",
        # Per-client queue of QoS 1 messages for an offline persistent session; the excess
        # is dropped silently. The default 1000 is too tight: a store offline over a long
        # weekend (3 days) at a busy 300 orders and commands a day needs ~900, and a cloud
        # worker restarting while 50 stores each send 3 messages a minute needs ~150 a
        # minute. A cloud worker is the other case: it announces a Receive Maximum, so a
        # burst of store backlogs after a shared outage queues here (bench.backlog_drain saw
        # 34,560 one-reading messages for one worker); 100000 at ~1 KB is 100 MB at worst.
        # Past it Mosquitto drops silently; the edge then republishes whatever the cloud
        # never confirmed (cloud receipts), so this bounds memory, not correctness.
        "max_queued_messages 100000",
        # Refuse (and disconnect) any packet over 512 KiB: twice the largest payload the
        # cloud accepts (payloads.MAX_PAYLOAD_BYTES), so nothing legitimate comes near it,
        # while a hostile client cannot make the broker buffer 256 MB per message.
        "max_packet_size 524288",
        "",
        f"log_dest file {directory / LOG_NAME}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        "log_timestamp true",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S%z",
        "",
        # TLS only, a client certificate required, its CN the username and the client id.
        f"listener {port} {bind}",
        f"cafile {pki.ca}",
        f"certfile {pki.server_cert}",
        f"keyfile {pki.server_key}",
        "tls_version tlsv1.2",  # the minimum; TLS 1.3 is accepted
        "require_certificate true",
        "use_identity_as_username true",
        # The client id a client sends is replaced by its CN: without this, any certificate
        # could connect as `store-001` (or a cloud worker), cut the real client off and take
        # over or wipe its persistent session. Each connection needs its own certificate.
        "use_username_as_clientid true",
    ]
    if pki.crl is not None:
        # Read once at start-up: restart the broker after `xiaodian pki revoke`.
        lines.append(f"crlfile {pki.crl}")
    if dev_plaintext_port is not None:
        lines += [
            "",
            "# INSECURE: plaintext listener for local development only (--dev-plaintext-local).",
            "# No TLS and no client certificate: any process on this machine can connect",
            "# under any username and gets that user's ACL rights. Never use in a shop.",
            f"listener {dev_plaintext_port} 127.0.0.1",
        ]
    conf_path = directory / CONF_NAME
    conf_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return conf_path
