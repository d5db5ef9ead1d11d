"""Who may publish and subscribe to what on the broker: ONE list of rules, rendered by
`devstack.broker_config` (Mosquitto's ACL file and subscribe rules) and by
`devstack.broker_emqx` (EMQX's acl.conf), and evaluated here by `allows` for the tests.

Identities are certificate CNs: the broker makes the CN a client's username and its client
id, whatever it claims (docs/security.md), so a rule never looks at a claimed client id.
`OWN` in a topic is the client's own CN, a whole topic level.

A shared subscription `$share/<group>/<filter>` is judged on `<filter>`, as EMQX does
(emqx_channel checks `emqx_topic:get_shared_real_topic`): the cloud's groups on store
uplinks stay closed to stores because `xd/v1/+/telemetry` is not a store's, while a store
may put its own downlink topics in a group of its own, which harms nobody.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Literal

OWN = "{own}"  # the client's own certificate CN (= store id), a whole topic level

Action = Literal["publish", "subscribe"]


class Scope(Enum):
    EVERYONE = "everyone"  # any certificate; with OWN, confined to its own subtree
    SERVICES = "services"  # the cloud-side services the CA issued (pki issue-service)


@dataclass(frozen=True)
class Rule:
    scope: Scope
    action: Action
    topic: str  # an MQTT topic filter, OWN standing for the client's CN


_UPLINK = ("telemetry", "events", "alerts", "health", "bundle", "state", "cmd/res")
_DOWNLINK = ("orders", "catalogue", "cmd/req", "receipts")

RULES: tuple[Rule, ...] = (
    # A store (any certificate, in its own subtree): what it sends ("bundle" is the compact
    # format, xiaodian.wire.compact) and what the cloud sends it.
    *(Rule(Scope.EVERYONE, "publish", f"xd/v1/{OWN}/{leaf}") for leaf in _UPLINK),
    *(Rule(Scope.EVERYONE, "subscribe", f"xd/v1/{OWN}/{leaf}") for leaf in _DOWNLINK),
    # A cloud-side service: read everything stores send (shared groups included), send
    # orders, catalogues, commands and receipts to any store.
    Rule(Scope.SERVICES, "subscribe", "xd/v1/#"),
    *(Rule(Scope.SERVICES, "publish", f"xd/v1/+/{leaf}") for leaf in _DOWNLINK),
)

SHARE_PREFIX = "$share/"


def real_topic(topic_filter: str) -> str:
    """`$share/<group>/<filter>` -> `<filter>`; any other filter unchanged."""
    if topic_filter.startswith(SHARE_PREFIX):
        parts = topic_filter.split("/", 2)
        return parts[2] if len(parts) == 3 else ""
    return topic_filter


def topic_matches(name: str, pattern: str) -> bool:
    """MQTT matching of a topic against a rule's filter. A subscribed filter is matched as
    a name: its `+` or `#` is covered only by a wildcard of the rule (so `xd/v1/#` covers
    `xd/v1/+/state`, while `xd/v1/store-001/orders` does not cover `xd/v1/+/orders`)."""
    words, filt = name.split("/"), pattern.split("/")
    for i, f in enumerate(filt):
        if f == "#":
            return True
        if i >= len(words) or (f != "+" and f != words[i]):
            return False
    return len(words) == len(filt)


def rule_topic(rule: Rule, cn: str) -> str:
    return rule.topic.replace(OWN, cn)


def applies(rule: Rule, cn: str, services: Sequence[str]) -> bool:
    return rule.scope is Scope.EVERYONE or cn in services


def allows(cn: str, action: Action, topic: str, services: Sequence[str],
           rules: Sequence[Rule] = RULES) -> bool:
    """Whether the client whose certificate CN is `cn` may do `action` on `topic` (a topic
    to publish to, or a filter to subscribe to). Anything no rule allows is refused."""
    if action == "subscribe":
        topic = real_topic(topic)
        if not topic:
            return False
    return any(
        rule.action == action and applies(rule, cn, services)
        and topic_matches(topic, rule_topic(rule, cn))
        for rule in rules
    )
